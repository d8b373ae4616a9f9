#!/usr/bin/env python3
"""PyTorch + transformers peer for `sidecar-bench extract`: tokens/s of all-MiniLM-L6-v2 keeping
every hidden state, fp32 with length-sorted and unsorted batches, and bf16 autocast (sorted), on
the same texts and thread count. Prints one JSON line. Run only when torch is installed.
Usage: torch_extract.py MODEL_DIR TEXTS.jsonl THREADS [MAX_EXAMPLES]"""
import json
import sys
import time

import torch
from transformers import BertModel, BertTokenizer

model_dir, texts_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
limit = int(sys.argv[4]) if len(sys.argv) > 4 else 4000
torch.set_num_threads(threads)
texts = [json.loads(line)["text"] for line in open(texts_path, encoding="utf-8")][:limit]
tokenizer = BertTokenizer.from_pretrained(model_dir)
model = BertModel.from_pretrained(model_dir).eval()
encoded = [tokenizer(t, truncation=True, max_length=128)["input_ids"] for t in texts]
tokens = sum(len(e) for e in encoded)


def run(order, batch=64, autocast=False):
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for i in range(0, len(order), batch):
            chunk = [encoded[j] for j in order[i:i + batch]]
            width = max(len(c) for c in chunk)
            ids = torch.tensor([c + [0] * (width - len(c)) for c in chunk])
            mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in chunk])
            model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return tokens / (time.perf_counter() - start)


unsorted = list(range(len(encoded)))
by_length = sorted(unsorted, key=lambda j: len(encoded[j]))
run(by_length[:256])  # warm-up
print(json.dumps({"examples": len(encoded), "tokens": tokens, "threads": threads,
                  "fp32_sorted": run(by_length), "fp32_unsorted": run(unsorted),
                  "bf16_autocast_sorted": run(by_length, autocast=True), "torch": torch.__version__}))
