#!/usr/bin/env python3
"""How small can an int8 cache be? The empirical entropy of the int8 codes sidecar would store
(symmetric, one scale per layer and channel from the absolute maximum, as `--dtype int8`
calibrates) is a lower bound, in bits per value, on what any lossless coder of those codes
(zstd included) needs: stored / raw fp32 >= H / 32. Also the entropy given the channel, and of
two predictors (the example's per-channel mean, the previous token), to show whether a
transform before zstd could help. Reads examples from an f32 cache through `sidecar inspect
--example ... --npy`; needs numpy.
Usage: int8_entropy.py SIDECAR F32_CACHE [EXAMPLES]"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sidecar, cache = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 150


def entropy(values):
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


with tempfile.TemporaryDirectory() as folder:
    examples = []
    for i in range(count):
        path = os.path.join(folder, f"{i}.npy")
        # Every third example, so short and long texts of the shuffled split both appear.
        subprocess.run([sidecar, "inspect", cache, "--example", f"train:{3 * i}", "--npy", path],
                       check=True, stdout=subprocess.DEVNULL)
        examples.append(np.load(path))  # [layers, tokens, width]

rows = sum(e.shape[1] for e in examples)
print(f"{count} examples, {rows} tokens of {cache}")
print("layer  H(code)  H(code|channel)  H(code - example mean)  H(code - previous token)  bound stored/raw fp32")
bounds = []
for layer in range(examples[0].shape[0]):
    x = np.concatenate([e[layer] for e in examples])
    scale = np.abs(x).max(axis=0) / 127
    scale[scale == 0] = 1
    codes = [np.clip(np.rint(e[layer] / scale), -127, 127).astype(np.int32) for e in examples]
    flat = np.concatenate(codes)
    h = entropy(flat)
    per_channel = np.mean([entropy(flat[:, c]) for c in range(flat.shape[1])])
    minus_mean = entropy(np.concatenate([c - np.rint(c.mean(axis=0)) for c in codes]))
    delta = entropy(np.concatenate([np.diff(c, axis=0) for c in codes]))
    bounds.append(h / 32)
    print(f"{layer:5d} {h:8.2f} {per_channel:16.2f} {minus_mean:23.2f} {delta:25.2f} {h / 32:21.3f}")
print(f"all layers: stored / raw fp32 >= {np.mean(bounds):.3f} for int8 codes coded one byte-value at a time")
