#!/usr/bin/env python
"""Draw a model's predictions as PNG overlays, on image files or on a registered dataset.

Instance models are drawn as masks and boxes, semantic models (output "sem_seg") as class maps
with the class names and colours of the first test set's metadata (generic names without one).
Depth models (output "depth") are drawn as image | ground truth | prediction | relative error with
the depth colour-mapped over [0, max_depth] (the test set's metadata max_depth, or
MODEL.DEPTH.MAX_DEPTH without one); image files have no ground truth: image | prediction.

Examples:
    # images in, overlays out
    python tools/visualize.py --config-file CFG --weights W --input a.jpg b.png --output vis/
    # a dataset: ground truth (left) next to predictions (right) for the first 16 images
    python tools/visualize.py --config-file CFG --weights W --dataset percep_shapes_val --num 16
    # a depth model on a registered depth dataset (image | truth | prediction | error)
    python tools/visualize.py --config-file CFG --weights W --dataset DEPTH_DATASET --num 8
"""

import argparse
import glob
import os
import sys

from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data.catalog import Metadata
from detectron2.modeling import build_model

import percep_det  # noqa: F401
from percep_det.config import get_percep_cfg
from percep_det.engine import check_config_file, check_device
from percep_det.engine.checkpoint import PercepCheckpointer  # safe loading of .pkl / .pth
from percep_det.utils.visualize import (
    Predictor,
    draw_dataset_predictions,
    draw_prediction,
    write_png,
)


def image_metadata(cfg):
    """The metadata used to draw predictions on image files: the first test set's, and for a
    depth model without one (no max_depth) the range of MODEL.DEPTH."""
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused")
    if metadata.get("max_depth", None) is None and "DEPTH" in cfg.MODEL:
        # a copy: the catalog's entry is shared and must not change
        metadata = Metadata(**metadata.as_dict())
        metadata.max_depth = cfg.MODEL.DEPTH.MAX_DEPTH
        if metadata.get("min_depth", None) is None:
            metadata.min_depth = cfg.MODEL.DEPTH.MIN_DEPTH
    return metadata


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", default="", help="checkpoint (default: MODEL.WEIGHTS)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="image files or glob patterns")
    src.add_argument("--dataset", help="a registered dataset name, e.g. percep_shapes_val")
    parser.add_argument("--output", default="vis", help="output directory")
    parser.add_argument("--num", type=int, default=8, help="number of dataset images")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="instance models only")
    parser.add_argument("--scale", type=float, default=1.0, help="drawing scale")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)

    try:
        check_config_file(args.config_file)
        cfg = get_percep_cfg(args.config_file, args.opts)
        cfg.freeze()
        check_device(cfg)
        weights = args.weights or cfg.MODEL.WEIGHTS
        remote = weights.startswith(("detectron2://", "http"))
        if weights and not remote and not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file '{weights}' does not exist")
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    model = build_model(cfg)
    PercepCheckpointer(model).load(weights)
    model.eval()

    if args.dataset:
        paths = draw_dataset_predictions(
            cfg, model, args.dataset, args.output, args.num, args.score_thresh, args.scale
        )
    else:
        files = sorted({f for pattern in args.input for f in (glob.glob(pattern) or [pattern])})
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            print(f"ERROR: input image(s) not found: {missing}", file=sys.stderr)
            return 2
        metadata = image_metadata(cfg)
        predictor = Predictor(cfg, model)
        os.makedirs(args.output, exist_ok=True)
        paths = []
        for f in files:
            image = utils.read_image(f, format=cfg.INPUT.FORMAT)
            out = predictor(image)
            rgb = utils.convert_image_to_rgb(image, cfg.INPUT.FORMAT)
            picture = draw_prediction(rgb, metadata, out, None, args.score_thresh, args.scale)
            path = os.path.join(args.output, os.path.splitext(os.path.basename(f))[0] + "_pred.png")
            write_png(path, picture)
            paths.append(path)
    print(f"wrote {len(paths)} overlays to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
