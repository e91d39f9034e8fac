#!/usr/bin/env python
"""Time the dataset check (percep_det/data/checks.py) on a synthetic COCO-format dataset.

    python tools/benchmark_dataset_check.py --num-images 10000 --out /tmp/bench_check

Writes ``--num-images`` PNG images (``--size`` px, random pixels) and a COCO json with
``--annotations`` instances per image (polygons of 16 points; every tenth image also has a crowd
RLE), registers it, and prints the time of a first check, of a second one (from the cache) and,
with ``--deep``, of a check that decodes every image, each also per 10k images. The files stay in
``--out`` (reused by a later run with the same numbers), so the first check usually reads them
from the OS page cache; a cold disk is slower.
"""
import argparse
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data.datasets import register_coco_instances
from PIL import Image

import percep_det  # noqa: F401
from percep_det.data import CheckSettings, check_dataset


def write_dataset(out: str, num_images: int, size: int, per_image: int) -> str:
    """The images and annotations.json of the synthetic dataset in ``out``; returns the json."""
    json_file = os.path.join(out, "annotations.json")
    if os.path.isfile(json_file):
        with open(json_file) as f:
            info = json.load(f).get("info", {})
        if info.get("num_images") == num_images and info.get("size") == size:
            if info.get("per_image") == per_image:
                return json_file
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "images"))
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(num_images):
        name = f"{i:07d}.png"
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(out, "images", name), compress_level=1)
        images.append(dict(id=i + 1, file_name=name, height=size, width=size))
        for k in range(per_image):
            cx, cy, r = rng.uniform(0.3 * size, 0.7 * size, 2).tolist() + [size * 0.1]
            angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
            poly = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).ravel()
            x0, y0 = poly[0::2].min(), poly[1::2].min()
            w, h = poly[0::2].max() - x0, poly[1::2].max() - y0
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=k % 4 + 1,
                    bbox=[x0, y0, w, h],
                    segmentation=[poly.round(2).tolist()],
                    area=float(w * h * 0.8),
                    iscrowd=0,
                )
            )
        if i % 10 == 0:  # a crowd region as an RLE
            mask = np.zeros((size, size), np.uint8, order="F")
            mask[: size // 4, : size // 4] = 1
            rle = mask_util.encode(mask)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=1,
                    bbox=mask_util.toBbox(rle).tolist(),
                    segmentation={"size": [size, size], "counts": rle["counts"].decode()},
                    area=float(mask.sum()),
                    iscrowd=1,
                )
            )
    categories = [dict(id=k + 1, name=f"class{k}") for k in range(4)]
    info = dict(num_images=num_images, size=size, per_image=per_image)
    with open(json_file, "w") as f:
        json.dump(dict(info=info, images=images, annotations=annotations, categories=categories), f)
    return json_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=10000)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--annotations", type=int, default=7, help="instances per image")
    parser.add_argument("--deep", action="store_true", help="also time a check that decodes all")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "bench_check"))
    args = parser.parse_args()

    start = time.perf_counter()
    json_file = write_dataset(args.out, args.num_images, args.size, args.annotations)
    print(f"dataset in {args.out} ready in {time.perf_counter() - start:.1f} s")
    name = "bench_dataset_check"
    register_coco_instances(name, {}, json_file, os.path.join(args.out, "images"))
    cache = os.path.join(args.out, "check_cache")
    shutil.rmtree(cache, ignore_errors=True)
    per_10k = 10000 / args.num_images
    runs = [("first check", CheckSettings()), ("second check (cache)", CheckSettings())]
    if args.deep:
        runs.append(("deep check (decodes every image)", CheckSettings(deep=True)))
    for label, settings in runs:
        start = time.perf_counter()
        report = check_dataset(name, settings, cache_dir=cache)
        seconds = time.perf_counter() - start
        print(
            f"{label}: {seconds:.2f} s for {report.num_images} images and "
            f"{report.num_annotations} annotations ({seconds * per_10k:.2f} s per 10k images; "
            f"{len(report.problems)} problems; from cache: {report.from_cache})"
        )


if __name__ == "__main__":
    main()
