#!/usr/bin/env python
"""Reference points for a depth experiment: what trivial predictors score on a test set.

    python tools/depth_baselines.py --train percep_shapes_depth_train --test percep_shapes_depth_val

Prints the depth metrics (per-image averages, the evaluator's definitions and valid range) of
* "train mean": the training set's mean valid depth everywhere;
* "train median": its median everywhere;
* "per-pixel train mean": the mean training depth at each pixel position (a position prior: on
  scenes with a floor it is strong; a model that learns from the image must beat it).
The per-pixel prior needs every image of both sets at one size.
"""

import argparse
from typing import Callable, Dict, List

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

import percep_det  # noqa: F401  (registers the datasets)
from percep_det.data import read_depth
from percep_det.evaluation.depth_evaluation import DEPTH_METRICS, compute_depth_metrics


def _depths(name: str) -> List[np.ndarray]:
    scale = MetadataCatalog.get(name).get("depth_scale", 1000.0)
    return [read_depth(r["depth_file_name"], scale) for r in DatasetCatalog.get(name)]


def baselines(train: str, test: str) -> Dict[str, Dict[str, float]]:
    """{predictor: {metric: mean over the test images}}."""
    meta = MetadataCatalog.get(test)
    train_depths, test_depths = _depths(train), _depths(test)
    valid = np.concatenate([d[d > 0] for d in train_depths])
    predictors: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "train mean": lambda gt: np.full_like(gt, valid.mean()),
        "train median": lambda gt: np.full_like(gt, np.median(valid)),
    }
    shapes = {d.shape for d in train_depths + test_depths}
    if len(shapes) == 1:
        stack = np.stack(train_depths)
        counts = (stack > 0).sum(0)
        prior = np.where(counts > 0, stack.sum(0) / np.maximum(counts, 1), valid.mean())
        predictors["per-pixel train mean"] = lambda gt: prior.astype(np.float32)
    out = {}
    for name, predict in predictors.items():
        per_image = [
            compute_depth_metrics(
                predict(gt), gt, meta.min_depth, meta.max_depth, meta.get("eigen_crop", False)
            )
            for gt in test_depths
        ]
        per_image = [m for m in per_image if m is not None]
        out[name] = {k: float(np.mean([m[k] for m in per_image])) for k in DEPTH_METRICS}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", default="percep_shapes_depth_train")
    parser.add_argument("--test", default="percep_shapes_depth_val")
    args = parser.parse_args(argv)
    results = baselines(args.train, args.test)
    print(f"{'predictor':<22}" + "".join(f"{k:>9}" for k in DEPTH_METRICS))
    for name, metrics in results.items():
        print(f"{name:<22}" + "".join(f"{metrics[k]:>9.4f}" for k in DEPTH_METRICS))


if __name__ == "__main__":
    main()
