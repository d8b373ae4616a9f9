#!/usr/bin/env python3
"""Expected LST side-block initialisations, computed independently in numpy from the checkpoint
files (not from Sidecar's code), for the LST pruning test.

Writes, next to this script:
  tiny_bert/  a random BERT (hidden 16, 2 layers, 4 heads, FFN 32, vocab 50; config.json and
      model.safetensors from save_pretrained) and lst_expected.safetensors: for r = 2 and 4 the
      pruned tensors under "r{r}/NAME" (post-LN names).
  tiny_vit/lst_expected.safetensors  the same for the committed tiny ViT (pre-LN names).

The rule (methods-reference §2.3, magnitude importance I = W, "pruning_without_residual" v2):
side width d = D/r. The embedding keeps the d channels of largest L1 norm (BERT: word-embedding
column over the vocabulary; ViT: patch-projection row over its inputs). Per block, each linear
group slices its input columns to the previous kept indices and keeps the output rows of largest
L1 norm (q, k, v jointly by |Wq|*|Wk|*|Wv|): q/k/v keep D/r rows, the attention output d, the FFN
intermediate F/r, the FFN output d. Ties go to the lower index; kept indices are ascending. LNs
take the indices of what they normalise (post-LN: attention norm <- attention output rows, output
norm <- FFN output rows; pre-LN: norm1 <- previous, norm2 <- attention output rows, final norm <-
the last FFN output rows).
Needs numpy, safetensors, torch and transformers (only to make tiny_bert); CI never runs this.
Usage: python3 make_lst_fixture.py
"""
import os

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def top(scores, k):
    order = np.lexsort((np.arange(len(scores)), -scores))  # score descending, then index ascending
    return np.sort(order[:k])


def row_l1(weights, columns):
    product = np.ones((weights[0].shape[0], len(columns)), dtype=np.float64)
    for w in weights:
        product *= np.abs(w[:, columns].astype(np.float64))
    return product.sum(axis=1)


def prune(w, layers, embedding_importance, r, pre_ln):
    """w(name) -> float32 array; names are the checkpoint's, per block through `layers`."""
    width = len(embedding_importance)
    d = width // r
    out = {}
    previous = top(embedding_importance, d)
    out["embeddings.kept"] = previous.astype(np.float32)
    for l, names in enumerate(layers, start=1):
        p = f"block.{l}."
        if pre_ln:
            out[p + "norm1.weight"], out[p + "norm1.bias"] = w(names["norm1"] + ".weight")[previous], w(names["norm1"] + ".bias")[previous]
        q, k, v = (w(names[x] + ".weight") for x in ("query", "key", "value"))
        kept = top(row_l1([q, k, v], previous), d)
        for x in ("query", "key", "value"):
            out[p + f"attention.{x}.weight"] = w(names[x] + ".weight")[kept][:, previous]
            out[p + f"attention.{x}.bias"] = w(names[x] + ".bias")[kept]
        o = w(names["attention_output"] + ".weight")
        attended = top(row_l1([o], kept), d)
        out[p + "attention.output.weight"] = o[attended][:, kept]
        out[p + "attention.output.bias"] = w(names["attention_output"] + ".bias")[attended]
        norm_name, source = ("norm2", names["norm2"]) if pre_ln else ("attention.norm", names["norm1"])
        out[p + norm_name + ".weight"], out[p + norm_name + ".bias"] = w(source + ".weight")[attended], w(source + ".bias")[attended]
        i = w(names["intermediate"] + ".weight")
        hidden = top(row_l1([i], attended), i.shape[0] // r)
        out[p + "intermediate.weight"] = i[hidden][:, attended]
        out[p + "intermediate.bias"] = w(names["intermediate"] + ".bias")[hidden]
        o2 = w(names["output"] + ".weight")
        outputs = top(row_l1([o2], hidden), d)
        out[p + "output.weight"] = o2[outputs][:, hidden]
        out[p + "output.bias"] = w(names["output"] + ".bias")[outputs]
        if not pre_ln:
            out[p + "output.norm.weight"], out[p + "output.norm.bias"] = w(names["norm2"] + ".weight")[outputs], w(names["norm2"] + ".bias")[outputs]
        previous = outputs
    return out, previous


def make_tiny_bert():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    folder = os.path.join(HERE, "tiny_bert")
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                        max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in model.parameters():  # no exact 0/1 LN parameters, no exact ties
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def bert_expected(folder):
    weights = load_file(os.path.join(folder, "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    w = lambda name: weights[prefix + name].astype(np.float32)
    count = sum(1 for k in weights if k.endswith("attention.self.query.weight"))
    layers = [{
        "query": f"encoder.layer.{l}.attention.self.query", "key": f"encoder.layer.{l}.attention.self.key",
        "value": f"encoder.layer.{l}.attention.self.value", "attention_output": f"encoder.layer.{l}.attention.output.dense",
        "norm1": f"encoder.layer.{l}.attention.output.LayerNorm", "intermediate": f"encoder.layer.{l}.intermediate.dense",
        "output": f"encoder.layer.{l}.output.dense", "norm2": f"encoder.layer.{l}.output.LayerNorm",
    } for l in range(count)]
    importance = np.abs(w("embeddings.word_embeddings.weight").astype(np.float64)).sum(axis=0)
    expected = {}
    for r in (2, 4):
        pruned, _ = prune(w, layers, importance, r, pre_ln=False)
        expected.update({f"r{r}/{k}": np.ascontiguousarray(v) for k, v in pruned.items()})
    save_file(expected, os.path.join(folder, "lst_expected.safetensors"))
    print("tiny bert: expected pruning for r = 2, 4 written to", folder)


def vit_expected():
    folder = os.path.join(HERE, "tiny_vit")
    weights = load_file(os.path.join(folder, "model.safetensors"))
    prefix = "vit." if "vit.embeddings.cls_token" in weights else ""
    w = lambda name: weights[prefix + name].astype(np.float32)
    count = sum(1 for k in weights if k.endswith("attention.attention.query.weight"))
    layers = [{
        "norm1": f"encoder.layer.{l}.layernorm_before", "query": f"encoder.layer.{l}.attention.attention.query",
        "key": f"encoder.layer.{l}.attention.attention.key", "value": f"encoder.layer.{l}.attention.attention.value",
        "attention_output": f"encoder.layer.{l}.attention.output.dense", "norm2": f"encoder.layer.{l}.layernorm_after",
        "intermediate": f"encoder.layer.{l}.intermediate.dense", "output": f"encoder.layer.{l}.output.dense",
    } for l in range(count)]
    projection = w("embeddings.patch_embeddings.projection.weight")
    importance = np.abs(projection.reshape(projection.shape[0], -1).astype(np.float64)).sum(axis=1)
    expected = {}
    for r in (2, 4):
        pruned, last = prune(w, layers, importance, r, pre_ln=True)
        pruned["final_norm.weight"], pruned["final_norm.bias"] = w("layernorm.weight")[last], w("layernorm.bias")[last]
        expected.update({f"r{r}/{k}": np.ascontiguousarray(v) for k, v in pruned.items()})
    save_file(expected, os.path.join(folder, "lst_expected.safetensors"))
    print("tiny vit: expected pruning for r = 2, 4 written to", folder)


if __name__ == "__main__":
    bert_expected(make_tiny_bert())
    vit_expected()
