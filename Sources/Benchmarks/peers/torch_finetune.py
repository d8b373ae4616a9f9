#!/usr/bin/env python3
"""PyTorch peer for the side-network training benchmark: the cost of full fine-tuning, the
alternative side networks are meant to undercut. all-MiniLM-L6-v2 (AutoModel + masked mean
pooling + a linear classifier) is trained with AdamW at lr 2e-5, dropout on, max_length 128 and
each batch padded to its own longest text. One warm-up step comes first; then the steps over the
first --examples training texts are timed and extrapolated to the whole train split.

The bench calls
    torch_finetune.py --data DATASET_DIR --model MODEL_DIR --threads 2 --batch-size 32 [--examples 640]
with DATASET_DIR holding train.jsonl ({"text", "label"} per line) and MODEL_DIR the local model
folder (config.json, model.safetensors, vocab.txt); nothing is downloaded. It prints one JSON line:
texts_per_s, seconds_per_epoch, peak_rss_bytes, peak_anonymous_bytes (RssAnon, sampled after
each step, as `sidecar fit` samples its own between batches), train_examples.
"""
import argparse
import json
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer


class Classifier(nn.Module):
    def __init__(self, model_dir, classes):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_dir, local_files_only=True)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, classes)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask[..., None].to(hidden.dtype)
        # Mean over real tokens, the pooling all-MiniLM-L6-v2 was trained with.
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
        return self.classifier(pooled)


def anonymous_bytes():
    """Resident memory that is not a file mapping (RssAnon in /proc/self/status): without the
    pages of torch's shared libraries, as Sidecar's figure is without its cache's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder with train.jsonl")
    parser.add_argument("--model", default=os.environ.get("SIDECAR_MINILM_DIR"), help="local model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--examples", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.model:
        parser.error("give --model DIR or set SIDECAR_MINILM_DIR")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train_path = os.path.join(args.data, "train.jsonl") if os.path.isdir(args.data) else args.data
    with open(train_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # Classes come from the whole split so the classifier has the real width even when the
    # timed prefix misses some labels.
    classes = sorted({r["label"] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    subset = rows[:args.examples]

    tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    model = Classifier(args.model, len(classes))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)

    # Tokenised once up front, as a datasets.map pass would; only padding happens per batch.
    encoded = [tokenizer(r["text"], truncation=True, max_length=128)["input_ids"] for r in subset]
    labels = torch.tensor([index[r["label"]] for r in subset])
    batches = []
    for i in range(0, len(subset), args.batch_size):
        batches.append((encoded[i:i + args.batch_size], labels[i:i + args.batch_size]))

    peak_anonymous = 0

    def step(ids, y):
        nonlocal peak_anonymous
        padded = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        loss = F.cross_entropy(model(padded["input_ids"], padded["attention_mask"]), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        peak_anonymous = max(peak_anonymous, anonymous_bytes())

    # The first step allocates the optimiser state and warms the kernels; it is not timed.
    step(*batches[0])
    start = time.perf_counter()
    for ids, y in batches:
        step(ids, y)
    seconds = time.perf_counter() - start

    texts_per_s = len(subset) / seconds
    print(json.dumps({
        "texts_per_s": round(texts_per_s, 2),
        "seconds_per_epoch": round(len(rows) / texts_per_s, 1),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anonymous_bytes": peak_anonymous,
        "train_examples": len(rows),
    }))


if __name__ == "__main__":
    main()
