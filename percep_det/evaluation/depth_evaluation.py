"""Monocular depth metrics (NYUv2 / BTS conventions) and a detectron2 evaluator computing them.

Notation: ``d`` is the predicted depth, ``d*`` the ground truth, both in metres, (H, W). The metrics
are computed per image over its valid pixels, then averaged over images (the BTS convention; so
RMSE is the mean of per-image RMSEs, not one RMSE over all pixels of the dataset). All values are
fractions, not percent: AbsRel 0.12 is "12 %", delta1 0.85 is "85 %".
"""

import itertools
import json
import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.depth_io import read_depth

__all__ = [
    "DEPTH_METRICS",
    "DepthEvaluator",
    "compute_depth_metrics",
    "depth_valid_mask",
    "eigen_crop_box",
]

# The metrics, in the order they are reported. Lower is better for the first five.
DEPTH_METRICS = ("AbsRel", "SqRel", "RMSE", "RMSElog", "log10", "delta1", "delta2", "delta3")

# The Eigen crop of NYUv2 (rows 45:471, cols 41:601), defined on 480 x 640 images.
_EIGEN_SIZE = (480, 640)
_EIGEN_ROWS = (45, 471)
_EIGEN_COLS = (41, 601)


def eigen_crop_box(height: int, width: int) -> Tuple[int, int, int, int]:
    """The Eigen crop ``(top, bottom, left, right)`` for an image of ``height`` x ``width``.

    It is defined for 480 x 640 (rows 45:471, cols 41:601, exactly). Other sizes get the same
    crop scaled proportionally and rounded half up: rows ``round(45 * H / 480) : round(471 * H /
    480)``, cols ``round(41 * W / 640) : round(601 * W / 640)`` (240 x 320: rows 23:236, cols
    21:301).
    """
    sy, sx = height / _EIGEN_SIZE[0], width / _EIGEN_SIZE[1]

    def half_up(x: float) -> int:
        return int(math.floor(x + 0.5))

    return (
        half_up(_EIGEN_ROWS[0] * sy),
        half_up(_EIGEN_ROWS[1] * sy),
        half_up(_EIGEN_COLS[0] * sx),
        half_up(_EIGEN_COLS[1] * sx),
    )


def _check_range(min_depth: float, max_depth: float) -> None:
    if not 0 < min_depth < max_depth:
        raise ValueError(
            f"depth range needs 0 < min_depth < max_depth (the prediction is clipped into it and "
            f"its logarithm taken); got min_depth {min_depth}, max_depth {max_depth}"
        )


def depth_valid_mask(
    gt: np.ndarray, min_depth: float, max_depth: float, eigen_crop: bool = False
) -> np.ndarray:
    """The (H, W) bool mask of the ground-truth pixels that are evaluated: ``min_depth < d* <
    max_depth`` (so 0 = invalid is excluded), and, with ``eigen_crop``, inside
    :func:`eigen_crop_box`."""
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"ground-truth depth has shape {gt.shape}; expected (H, W)")
    valid = (gt > min_depth) & (gt < max_depth)  # NaN compares False: invalid
    if eigen_crop:
        top, bottom, left, right = eigen_crop_box(*gt.shape)
        crop = np.zeros_like(valid)
        crop[top:bottom, left:right] = True
        valid &= crop
    return valid


def compute_depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float,
    max_depth: float,
    eigen_crop: bool = False,
) -> Optional[Dict[str, float]]:
    """The depth metrics of one image.

    Args:
        pred: (H, W) predicted depth in metres. It is clipped into [min_depth, max_depth] first
            (+-inf become the bounds; NaN stays NaN and makes the metrics NaN, so a diverged
            model is not hidden).
        gt: (H, W) ground-truth depth in metres; pixels outside (min_depth, max_depth) are
            ignored (0 = invalid in the depth files).
        min_depth, max_depth: the evaluation range in metres (BTS on NYUv2: 1e-3 and 10).
        eigen_crop: evaluate only inside the Eigen crop (see :func:`eigen_crop_box`).

    Returns:
        {name: value} for the names in :data:`DEPTH_METRICS`, as fractions (not percent):
        AbsRel = mean |d - d*| / d*, SqRel = mean (d - d*)^2 / d*, RMSE = sqrt mean (d - d*)^2,
        RMSElog = sqrt mean (ln d - ln d*)^2, log10 = mean |log10 d - log10 d*|, deltaK =
        fraction of pixels with max(d / d*, d* / d) < 1.25^K. ``None`` when the image has no
        valid pixel.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(
            f"predicted depth has shape {pred.shape} but the ground truth has shape {gt.shape}; "
            "both must be (H, W) at the same size"
        )
    _check_range(min_depth, max_depth)
    valid = depth_valid_mask(gt, min_depth, max_depth, eigen_crop)
    if not valid.any():
        return None
    d = np.clip(pred[valid].astype(np.float64), min_depth, max_depth)  # (P,) valid pixels
    d_gt = gt[valid].astype(np.float64)  # (P,)
    diff = d - d_gt
    log_diff = np.log(d) - np.log(d_gt)
    ratio = np.maximum(d / d_gt, d_gt / d)
    metrics = {
        "AbsRel": np.mean(np.abs(diff) / d_gt),
        "SqRel": np.mean(diff**2 / d_gt),
        "RMSE": np.sqrt(np.mean(diff**2)),
        "RMSElog": np.sqrt(np.mean(log_diff**2)),
        "log10": np.mean(np.abs(np.log10(d) - np.log10(d_gt))),
    }
    for k in (1, 2, 3):
        # NaN predictions: comparisons are False, so make the fraction NaN explicitly
        hit = np.mean(ratio < 1.25**k)
        metrics[f"delta{k}"] = float("nan") if np.isnan(ratio).any() else hit
    return {name: float(metrics[name]) for name in DEPTH_METRICS}


class DepthEvaluator(DatasetEvaluator):
    """Evaluates monocular depth predictions with :func:`compute_depth_metrics`.

    The dataset's metadata must have ``depth_scale``, ``min_depth``, ``max_depth`` and
    ``eigen_crop`` (see :mod:`percep_det.data.depth_io`). Each model output is
    ``{"depth": (H, W) tensor}`` in metres at the original image size; the ground truth is the
    record's ``depth_file_name`` read at its stored size. Metrics are computed per image on each
    process, gathered to the main process and averaged over images.

    ``evaluate()`` returns ``{"depth": {"AbsRel", "SqRel", "RMSE", "RMSElog", "log10", "delta1",
    "delta2", "delta3", "num_images"}}`` (fractions, not percent; ``num_images`` counts the images
    with at least one valid pixel, the others are skipped and logged). With ``output_dir`` the
    per-image metrics are also written to ``output_dir/depth_metrics.json``.
    """

    def __init__(
        self, dataset_name: str, distributed: bool = True, output_dir: Optional[str] = None
    ):
        """
        Args:
            dataset_name: a registered depth dataset.
            distributed: gather the per-image metrics of all processes in ``evaluate()``;
                otherwise evaluate only this process's images.
            output_dir: where ``depth_metrics.json`` is written (nothing is written if None).
        """
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        meta = MetadataCatalog.get(dataset_name)
        values = {}
        for key in ("depth_scale", "min_depth", "max_depth", "eigen_crop"):
            value = meta.get(key, None)
            if value is None:
                raise KeyError(
                    f"dataset '{dataset_name}' has no metadata '{key}', which DepthEvaluator "
                    "needs (a depth dataset's metadata has depth_scale, min_depth, max_depth and "
                    "eigen_crop; see percep_det/data/depth_io.py)"
                )
            values[key] = value
        self._depth_scale = float(values["depth_scale"])
        self._min_depth = float(values["min_depth"])
        self._max_depth = float(values["max_depth"])
        self._eigen_crop = bool(values["eigen_crop"])
        try:
            _check_range(self._min_depth, self._max_depth)
        except ValueError as e:
            raise ValueError(f"metadata of dataset '{dataset_name}': {e}") from None
        self._gt_files: Optional[Dict[str, str]] = None  # file_name -> depth_file_name, if needed
        self.reset()

    def reset(self):
        self._images: List[Dict] = []  # per-image metrics with file_name and image_id
        self._skipped: List[str] = []  # depth files of images without a valid pixel

    def _depth_file(self, input: Dict) -> str:
        """The ground-truth file of a model input: its ``depth_file_name`` or, when the mapper
        dropped it, the one of the dataset record with the same ``file_name``."""
        if "depth_file_name" in input:
            return input["depth_file_name"]
        if self._gt_files is None:
            self._gt_files = {
                r["file_name"]: r["depth_file_name"]
                for r in DatasetCatalog.get(self._dataset_name)
                if "depth_file_name" in r
            }
        file_name = input.get("file_name")
        if file_name not in self._gt_files:
            raise KeyError(
                f"model input for image '{file_name}' has no 'depth_file_name', and dataset "
                f"'{self._dataset_name}' has no record with that file_name and a depth_file_name"
            )
        return self._gt_files[file_name]

    def process(self, inputs, outputs):
        """
        Args:
            inputs: the model's inputs, dicts with "file_name", "image_id" and "depth_file_name"
                (or a "file_name" found in the dataset's records).
            outputs: the model's outputs, dicts with "depth": (H, W) predicted depth in metres at
                the original image size.
        """
        for input, output in zip(inputs, outputs):
            depth_file = self._depth_file(input)
            pred = output["depth"]
            if isinstance(pred, torch.Tensor):
                pred = pred.detach().to("cpu", torch.float32).numpy()
            pred = np.asarray(pred)
            gt = read_depth(depth_file, self._depth_scale)  # (H, W) metres, 0 = invalid
            if pred.shape != gt.shape:
                raise ValueError(
                    f"predicted depth for '{input.get('file_name', depth_file)}' has shape "
                    f"{pred.shape} but its ground truth '{depth_file}' has shape {gt.shape}; the "
                    "model must return depth at the original image size (H, W)"
                )
            metrics = compute_depth_metrics(
                pred, gt, self._min_depth, self._max_depth, self._eigen_crop
            )
            if metrics is None:
                self._skipped.append(depth_file)
                continue
            image_id = input.get("image_id")
            if isinstance(image_id, (np.integer, torch.Tensor)):
                image_id = image_id.item()
            self._images.append(
                {"file_name": input.get("file_name"), "image_id": image_id, **metrics}
            )

    def evaluate(self):
        """Per-image averages of the metrics (main process; {} on the others)."""
        images, skipped = self._images, self._skipped
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather((images, skipped), dst=0)
            if not comm.is_main_process():
                return {}
            images = list(itertools.chain(*(g[0] for g in gathered)))
            skipped = list(itertools.chain(*(g[1] for g in gathered)))
        if skipped:
            self._logger.warning(
                f"{len(skipped)} image(s) of '{self._dataset_name}' have no ground-truth pixel in "
                f"({self._min_depth}, {self._max_depth}) m"
                + (" inside the Eigen crop" if self._eigen_crop else "")
                + f" and were skipped, e.g. '{skipped[0]}'"
            )
        if not images:
            self._logger.warning(
                f"DepthEvaluator on '{self._dataset_name}': no image to evaluate "
                f"({len(skipped)} skipped)"
            )
            return {}
        summary = {
            name: float(np.mean([image[name] for image in images])) for name in DEPTH_METRICS
        }
        summary["num_images"] = len(images)
        if self._output_dir:
            self._write_json(summary, images, skipped)
        results = OrderedDict({"depth": summary})
        self._logger.info(results)
        return results

    def _write_json(self, summary: Dict, images: List[Dict], skipped: List[str]) -> None:
        """``output_dir/depth_metrics.json``, completely or not at all (a temporary file renamed
        into place)."""
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, "depth_metrics.json")
        content = {
            "dataset": self._dataset_name,
            "min_depth": self._min_depth,
            "max_depth": self._max_depth,
            "eigen_crop": self._eigen_crop,
            "summary": summary,
            "skipped": skipped,
            "images": images,
        }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(content, f, indent=1)
        os.replace(tmp, path)
