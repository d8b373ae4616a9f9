#!/usr/bin/env python3
"""Writes resize_fixture.json: PIL's and Hugging Face's reference numbers for ImagePreprocessingTests.

Needs Pillow, numpy and (for the "pipelines" part) transformers with its PIL backend. Run from
anywhere; the fixture lands next to this script. Re-run only when the cases change: the Swift tests
read the committed JSON and never run Python.

Contents (pixels as hex strings of uint8, row-major [H, W, 3]):
  input        a seeded random 23x17 RGB image
  resizes      PIL's Image.resize((w, h), filter) of it: shrink, mixed, enlarge, for every filter
  jpeg         the image encoded by PIL as JPEG (quality 90, 4:2:0) and PIL's decoding of it
  pipelines    preprocessor configs and the pixel_values (float32, [3, H, W]) the Hugging Face
               image processor returns for the input image
"""
import io
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
WIDTH, HEIGHT = 23, 17
FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# (width, height): shrink both axes, enlarge one while shrinking the other, enlarge both; then two
# cases for Pillow 13's pass order (vertical first when H - h > 2 (W - w)): 23x17 -> 20x4 runs
# vertical first, 23x17 -> 16x3 is the tie (14 = 2 * 7) and runs horizontal first.
SIZES = [(9, 7), (31, 6), (40, 29), (20, 4), (16, 3)]


def hexbytes(array):
    return np.asarray(array, dtype=np.uint8).tobytes().hex()


def main():
    rng = np.random.RandomState(20240611)
    pixels = rng.randint(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    # Smooth half and noisy half: a gradient in the left columns tests the interpolation itself,
    # the noise tests the antialiasing weights.
    ramp = np.linspace(0, 255, num=HEIGHT * 11).reshape(HEIGHT, 11)
    pixels[:, :11, 0] = ramp.astype(np.uint8)
    pixels[:, :11, 1] = ramp[::-1].astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")

    resizes = []
    for name, code in FILTERS.items():
        for width, height in SIZES:
            out = np.asarray(image.resize((width, height), code))
            resizes.append({"filter": name, "resample": int(code), "width": width, "height": height,
                            "pixels": hexbytes(out)})

    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=90, subsampling=2)
    decoded = np.asarray(Image.open(io.BytesIO(encoded.getvalue())).convert("RGB"))
    jpeg = {"bytes": encoded.getvalue().hex(), "pixels": hexbytes(decoded)}

    pipelines = []
    try:
        from transformers import CLIPImageProcessor, ViTImageProcessor
        processors = {
            "vit": ViTImageProcessor(size={"height": 12, "width": 10}),
            "clip": CLIPImageProcessor(size={"shortest_edge": 11}, crop_size={"height": 9, "width": 9}),
            # A crop larger than the resized image: Hugging Face pads with zeros before normalising.
            "padded": ViTImageProcessor(size={"height": 8, "width": 6}, do_center_crop=True,
                                        crop_size={"height": 10, "width": 9}, resample=3,
                                        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
        }
        for name, processor in processors.items():
            values = processor(images=image, return_tensors="np")["pixel_values"][0]
            pipelines.append({"name": name, "config": json.loads(processor.to_json_string()),
                              "shape": list(values.shape),
                              "values": [float(v) for v in values.astype(np.float32).ravel()]})
    except ImportError:
        print("transformers missing: writing no pipeline cases")

    fixture = {"width": WIDTH, "height": HEIGHT, "input": hexbytes(pixels), "resizes": resizes,
               "jpeg": jpeg, "pipelines": pipelines,
               "versions": {"Pillow": Image.__version__}}
    path = os.path.join(HERE, "resize_fixture.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(resizes)} resizes, {len(pipelines)} pipelines")


if __name__ == "__main__":
    main()
