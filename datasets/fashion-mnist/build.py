#!/usr/bin/env python3
"""Builds datasets/fashion-mnist/data/ from Debian's dataset-fashion-mnist package.

The package ships the original gzip-compressed IDX files in /usr/share/datasets/fashion-mnist/
(train: 60,000 images, t10k: 10,000). Sidecar's IDX reader takes that folder as it is (t10k is
read as the test split), but it has no validation split; this script adds one. It writes:

  train-{images-idx3,labels-idx1}-ubyte.gz   54,000 training images, original order
  val-{images-idx3,labels-idx1}-ubyte.gz      6,000 training images chosen with a fixed seed
  test-{images-idx3,labels-idx1}-ubyte.gz    the 10,000 t10k images, unchanged
  classes.txt                                the ten class names, line i naming label i

Deterministic: same package, same seed, same bytes (gzip headers carry no timestamp).
Python 3 standard library only.
"""
import argparse
import gzip
import os
import random
import shutil
import struct
import sys

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path, rank):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, type_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code != 0x08 or dims != rank:
        sys.exit(f"{path}: not an unsigned-byte IDX file of rank {rank}")
    shape = struct.unpack(f">{rank}I", data[4:4 + 4 * rank])
    return shape, data[4 + 4 * rank:]


def write_idx(path, shape, payload):
    header = struct.pack(">HBB", 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header)
        f.write(payload)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    parser.add_argument("--validation", type=int, default=6000, help="training images moved to val")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()

    (count, height, width), images = read_idx(os.path.join(args.source, "train-images-idx3-ubyte.gz"), 3)
    (label_count,), labels = read_idx(os.path.join(args.source, "train-labels-idx1-ubyte.gz"), 1)
    if label_count != count:
        sys.exit(f"{count} training images but {label_count} labels")
    size = height * width
    chosen = list(range(count))
    random.Random(args.seed).shuffle(chosen)
    validation = sorted(chosen[:args.validation])
    validation_set = set(validation)
    train = [index for index in range(count) if index not in validation_set]

    os.makedirs(args.output, exist_ok=True)
    for split, indices in (("train", train), ("val", validation)):
        write_idx(os.path.join(args.output, f"{split}-images-idx3-ubyte.gz"), (len(indices), height, width),
                  b"".join(images[i * size:(i + 1) * size] for i in indices))
        write_idx(os.path.join(args.output, f"{split}-labels-idx1-ubyte.gz"), (len(indices),),
                  bytes(labels[i] for i in indices))
        print(f"{split}: {len(indices)} images")
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copyfile(os.path.join(args.source, f"t10k-{kind}-ubyte.gz"),
                        os.path.join(args.output, f"test-{kind}-ubyte.gz"))
    print("test: 10000 images (t10k, unchanged)")
    with open(os.path.join(args.output, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(CLASSES) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
