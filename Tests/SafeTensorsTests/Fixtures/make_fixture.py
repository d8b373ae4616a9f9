#!/usr/bin/env python3
"""Writes reference.safetensors with the reference implementation (Python safetensors + torch):
F32, F16 (with subnormal, infinite and rounding cases), BF16 and I64 tensors and metadata. The
expected Float32 values are the ones torch reads back, stored in expected.json.
Usage: python3 make_fixture.py  (needs torch and safetensors; CI never runs it)"""
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
values = [0.0, -0.0, 1.0, -2.5, 3.14159265, 65504.0, 1e-7, 6e-8, -5.96e-8, 1e-3, 123.456, 70000.0, -70000.0]
tensors = {
    "weights.f32": torch.tensor(values, dtype=torch.float32).reshape(1, 13),
    "weights.f16": torch.tensor(values, dtype=torch.float32).to(torch.float16),
    "weights.bf16": torch.tensor(values, dtype=torch.float32).to(torch.bfloat16).reshape(13, 1),
    "position_ids": torch.arange(4, dtype=torch.int64).reshape(1, 4),
}
save_file(tensors, os.path.join(HERE, "reference.safetensors"), metadata={"format": "pt", "note": "fixture"})
expected = {name: t.to(torch.float32).flatten().view(torch.int32).tolist() for name, t in tensors.items() if t.is_floating_point()}
expected = {name: [v & 0xFFFFFFFF for v in bits] for name, bits in expected.items()}
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
