#!/usr/bin/env python3
"""Builds the Debian package-section task: short description -> Section.

Reads `apt-cache dumpavail` (or a saved copy with --dumpavail FILE) and writes
data/{train,val,test}.jsonl next to this script, one {"text", "label", "package"} object per line.

  text   the package's short description (the first line of its Description field)
  label  its Section, without an archive-area prefix ("contrib/", "non-free/", "non-free-firmware/")

Steps, all deterministic for a given package list:
  1. every package with a Description and a Section;
  2. duplicate texts: a text that occurs under more than one label is dropped everywhere (it
     cannot be classified); repeats under a single label are kept once;
  3. only the 10 most common labels (ties broken by name);
  4. sort by package name, shuffle with a fixed seed, split 80/10/10.
Python 3 standard library only.
"""
import argparse
import collections
import json
import os
import random
import subprocess
import sys

AREA_PREFIXES = ("contrib/", "non-free/", "non-free-firmware/")


def read_dumpavail(path):
    """The text of a saved dump, or of `apt-cache dumpavail`, updating the lists if they are empty."""
    if path == "-":
        return sys.stdin.read()
    if path:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    text = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True,
                          text=True, errors="replace").stdout
    if "\nPackage:" in "\n" + text:
        return text
    # A fresh container often has no package lists at all.
    if os.geteuid() != 0:
        sys.exit("apt-cache dumpavail is empty: the package lists were never downloaded. "
                 "Run `sudo apt-get update`, then this script again.")
    print("apt-cache dumpavail is empty: running `apt-get update` to download the package lists",
          file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    return subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True,
                          text=True, errors="replace").stdout


def parse_stanzas(text):
    """Yields each stanza's fields as a dict (first line of each field's value only)."""
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif line[0] in " \t":
            continue  # continuation of a multi-line field: only first lines matter here
        elif ":" in line:
            key, value = line.split(":", 1)
            fields.setdefault(key, value.strip())
    if fields:
        yield fields


def label_of(section):
    for prefix in AREA_PREFIXES:
        if section.startswith(prefix):
            return section[len(prefix):]
    return section


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dumpavail", metavar="FILE",
                        help="read a saved `apt-cache dumpavail` output ('-' for stdin) instead")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"),
                        help="output folder (default: data/ next to this script)")
    parser.add_argument("--labels", type=int, default=10, help="keep this many most common sections")
    parser.add_argument("--seed", type=int, default=20240611, help="shuffle seed")
    args = parser.parse_args()

    packages = {}
    for fields in parse_stanzas(read_dumpavail(args.dumpavail)):
        name, text, section = fields.get("Package"), fields.get("Description"), fields.get("Section")
        if name and text and section and name not in packages:
            packages[name] = (text, label_of(section))
    print(f"{len(packages)} packages with a description and a section")

    labels_of_text = collections.defaultdict(set)
    for text, label in packages.values():
        labels_of_text[text].add(label)
    conflicting = {text for text, labels in labels_of_text.items() if len(labels) > 1}
    seen = set()
    examples = []
    for name in sorted(packages):
        text, label = packages[name]
        if text in conflicting or text in seen:
            continue
        seen.add(text)
        examples.append({"text": text, "label": label, "package": name})
    dropped = len(packages) - len(examples)
    print(f"{len(examples)} distinct texts ({dropped} dropped: {len(conflicting)} texts under several labels, "
          "the rest repeats)")

    counts = collections.Counter(example["label"] for example in examples)
    kept = sorted(counts, key=lambda label: (-counts[label], label))[:args.labels]
    examples = [example for example in examples if example["label"] in kept]
    print(f"{len(examples)} examples in the {len(kept)} most common sections")

    random.Random(args.seed).shuffle(examples)
    train_end = len(examples) * 8 // 10
    val_end = train_end + len(examples) // 10
    splits = {"train": examples[:train_end], "val": examples[train_end:val_end], "test": examples[val_end:]}

    os.makedirs(args.output, exist_ok=True)
    for split, rows in splits.items():
        with open(os.path.join(args.output, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    print(f"\nwrote {args.output}/{{train,val,test}}.jsonl (seed {args.seed})\n")
    per_split = {split: collections.Counter(row["label"] for row in rows) for split, rows in splits.items()}
    width = max(len(label) for label in kept)
    print(f"{'label':<{width}}  {'train':>6}  {'val':>6}  {'test':>6}  {'all':>6}")
    for label in kept:
        row = [per_split[split][label] for split in splits]
        print(f"{label:<{width}}  {row[0]:>6}  {row[1]:>6}  {row[2]:>6}  {sum(row):>6}")
    totals = [len(rows) for rows in splits.values()]
    print(f"{'total':<{width}}  {totals[0]:>6}  {totals[1]:>6}  {totals[2]:>6}  {sum(totals):>6}")


if __name__ == "__main__":
    main()
