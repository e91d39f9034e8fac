#!/usr/bin/env python
"""Generate the embedded synthetic dataset ahead of time (it is otherwise made on first use).

    python datasets/prepare_shapes.py                      # into $PERCEP_DET_CACHE/shapes
    python datasets/prepare_shapes.py --out /data/shapes --seed 3 --train 2000 --val 200 --size 256

With --out, the splits are written as plain COCO datasets that any detectron2 project can register
with ``register_coco_instances(name, {}, OUT/train/annotations.json, OUT/train/images)``.
"""
import argparse
import os
import sys

from percep_det.data import ShapesSpec, load_shapes
from percep_det.data.builtin import SHAPES_SPLITS, shapes_root
from percep_det.data.shapes import ensure_split


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", default="", help="write standalone splits here instead of the cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=500, help="number of training images")
    parser.add_argument("--val", type=int, default=100, help="number of validation images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    args = parser.parse_args(argv)
    if not args.out:
        for name in SHAPES_SPLITS:
            records = load_shapes(name)
            print(f"{name}: {len(records)} images in {shapes_root()}")
        return 0
    if args.size < 32:
        print("ERROR: --size must be at least 32", file=sys.stderr)
        return 2
    for split, num in (("train", args.train), ("val", args.val)):
        scale = args.size / 128
        spec = ShapesSpec(
            num_images=num,
            image_size=args.size,
            min_object_size=round(14 * scale),
            max_object_size=round(64 * scale),
            min_visible_area=round(40 * scale**2),
        )
        path = ensure_split(os.path.abspath(args.out), split, spec, args.seed)
        print(f"{split}: {num} images in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
