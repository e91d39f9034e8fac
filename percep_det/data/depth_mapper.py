"""``DepthDatasetMapper``: detectron2's DatasetMapper for monocular depth, with the camera geometry
kept consistent through resizing, cropping and flipping.

Pixel convention (detectron2's transforms use it too): the image spans ``[0, W] x [0, H]``, pixel
``(row i, column j)`` has its centre at ``(u, v) = (j + 0.5, i + 0.5)``, and the intrinsics
``(fx, fy, cx, cy)`` map a camera point ``(X, Y, Z)`` to ``u = fx X / Z + cx``,
``v = fy Y / Z + cy``. In these coordinates every geometric transform is exact:

=====================  ==========================================================================
resize by (sx, sy)     RESIZE_MODE "intrinsics": fx, cx *= sx and fy, cy *= sy; metric depth kept.
                       RESIZE_MODE "depth": depth /= s with s = sqrt(sx * sy) (VNL's way: the
                       network keeps seeing the dataset's focal length, so apparent size stays a
                       depth cue); fx *= sx / s, fy *= sy / s (both 1 when the aspect ratio is
                       kept); the principal point is a position in the image, so cx *= sx,
                       cy *= sy as in the other mode.
crop at (x0, y0)       cx -= x0, cy -= y0
horizontal flip        cx = W - cx, fx kept: the flipped image is the image of the mirrored scene
                       (a point (X, Y, Z) is seen at (-X, Y, Z)), so focal lengths stay positive
vertical flip          cy = H - cy (the scene mirrored in Y)
=====================  ==========================================================================

Depth is resized with exact nearest-neighbour sampling (source pixel ``floor((j + 0.5) / s)``,
OpenCV's ``INTER_NEAREST_EXACT``, the same pixel centres as PIL's image resize), so invalid zeros
never blend with valid depth.
"""

import copy
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .depth_io import read_depth

__all__ = ["DepthDatasetMapper", "RESIZE_MODES", "apply_depth_transforms"]

logger = logging.getLogger(__name__)

RESIZE_MODES = ("depth", "intrinsics")


def apply_depth_transforms(
    transforms: Union[T.TransformList, Sequence[T.Transform]],
    depth: Optional[np.ndarray],
    intrinsics: Sequence[float],
    resize_mode: str = "depth",
) -> Tuple[Optional[np.ndarray], np.ndarray, float]:
    """Apply the geometric ``transforms`` of an image to its depth map and camera.

    Args:
        transforms: what the augmentations did to the image: ``ResizeTransform``,
            ``CropTransform``, ``HFlipTransform``, ``VFlipTransform``, ``NoOpTransform`` (any other
            kind raises NotImplementedError: its effect on the camera is unknown).
        depth: (H, W) float32 metres, 0 = invalid; or None (only the intrinsics are transformed).
        intrinsics: ``(fx, fy, cx, cy)`` of the untransformed image.
        resize_mode: "depth" or "intrinsics" (INPUT.DEPTH.RESIZE_MODE; module docstring).

    Returns:
        depth: (H', W') float32 or None; intrinsics: (4,) float64 of the transformed image;
        depth_factor: the returned depth is metric depth / depth_factor (1 in "intrinsics" mode).
    """
    if resize_mode not in RESIZE_MODES:
        raise ValueError(
            f"INPUT.DEPTH.RESIZE_MODE is '{resize_mode}'; expected one of {RESIZE_MODES}"
        )
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    factor = 1.0
    if isinstance(transforms, T.TransformList):
        transforms = transforms.transforms
    for t in transforms:
        if isinstance(t, T.NoOpTransform):
            continue
        if isinstance(t, T.ResizeTransform):
            sx, sy = t.new_w / t.w, t.new_h / t.h
            if depth is not None:
                if depth.shape != (t.h, t.w):
                    raise ValueError(f"depth map is {depth.shape} but {t} expects ({t.h}, {t.w})")
                depth = cv2.resize(depth, (t.new_w, t.new_h), interpolation=cv2.INTER_NEAREST_EXACT)
            cx, cy = cx * sx, cy * sy
            if resize_mode == "intrinsics":
                fx, fy = fx * sx, fy * sy
            else:
                s = math.sqrt(sx * sy)
                fx, fy = fx * sx / s, fy * sy / s
                factor *= s
                if depth is not None:
                    depth = depth / np.float32(s)  # zeros stay zero
        elif isinstance(t, T.CropTransform):
            if depth is not None:
                depth = t.apply_image(depth)
            cx, cy = cx - t.x0, cy - t.y0
        elif isinstance(t, T.HFlipTransform):
            if depth is not None:
                depth = t.apply_image(depth)
            cx = t.width - cx
        elif isinstance(t, T.VFlipTransform):
            if depth is not None:
                depth = t.apply_image(depth)
            cy = t.height - cy
        else:
            raise NotImplementedError(
                f"{type(t).__name__} is not supported for depth: its effect on the camera "
                "intrinsics is unknown (supported: resize, crop, horizontal/vertical flip)"
            )
    if depth is not None:
        depth = np.ascontiguousarray(depth, dtype=np.float32)
    return depth, np.array([fx, fy, cx, cy]), factor


class DepthDatasetMapper:
    """Map a depth dataset record (:mod:`percep_det.data.depth_io`) to a model input.

    Training: ResizeShortestEdge (INPUT.MIN_SIZE_TRAIN, ...), then RandomCrop (INPUT.CROP.*, after
    the resize, unlike detectron2's DatasetMapper, so the crop size is in network pixels), then
    RandomFlip (INPUT.RANDOM_FLIP). Test: ResizeShortestEdge (INPUT.MIN_SIZE_TEST) only.

    Returns a dict with:

    * "image": (C, H, W) uint8 tensor in ``image_format`` (as detectron2's DatasetMapper),
    * "depth": (H, W) float32 tensor in metres, 0 = invalid, aligned with "image" (divided by
      "depth_factor", see below); absent when the record has no ``depth_file_name`` (test only),
    * "intrinsics": (4,) float32 tensor ``[fx, fy, cx, cy]`` of the returned image,
    * "depth_factor": float, metric depth = returned depth * depth_factor (1 unless RESIZE_MODE is
      "depth" and the image was resized): a prediction on this image times it is in metres,
    * "height", "width": the ORIGINAL image size, "file_name", "image_id", and the record's
      "depth_file_name" when it has one.

    A record may carry its own "intrinsics" (fx, fy, cx, cy), which replace the dataset's.
    See the module docstring for the geometry.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str,
        depth_scale: float,
        intrinsics: Sequence[float],
        resize_mode: str = "depth",
    ):
        """
        Args:
            is_train: training (a depth map is required) or inference.
            augmentations: applied in order to the image; each must produce transforms that
                :func:`apply_depth_transforms` knows (resize, crop, flips).
            image_format: detectron2's image format ("BGR", "RGB", ...).
            depth_scale: depth PNG value per metre (the dataset metadata's ``depth_scale``).
            intrinsics: ``(fx, fy, cx, cy)`` of the dataset's images (metadata ``intrinsics``).
            resize_mode: "depth" or "intrinsics", how a resize changes the geometry.
        """
        if resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"INPUT.DEPTH.RESIZE_MODE is '{resize_mode}'; expected one of {RESIZE_MODES}"
            )
        if len(intrinsics) != 4:
            raise ValueError(f"intrinsics {intrinsics}; expected (fx, fy, cx, cy)")
        if depth_scale <= 0:
            raise ValueError(f"depth_scale is {depth_scale}; expected > 0 (PNG value per metre)")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.depth_scale = float(depth_scale)
        self.intrinsics = tuple(float(v) for v in intrinsics)
        self.resize_mode = resize_mode
        mode = "training" if is_train else "inference"
        logger.info(f"[DepthDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict:
        augs = utils.build_augmentation(cfg, is_train)  # ResizeShortestEdge (+ RandomFlip)
        if is_train and cfg.INPUT.CROP.ENABLED:
            augs.insert(1, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        key = "DATASETS.TRAIN" if is_train else "DATASETS.TEST"
        names = list(cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST)
        if not names:
            raise ValueError(f"{key} is empty: DepthDatasetMapper takes its camera from it")
        values = {}
        for field in ("depth_scale", "intrinsics"):
            found = {}
            for name in names:
                meta = MetadataCatalog.get(name)
                if field not in meta.as_dict():
                    raise KeyError(
                        f"dataset '{name}' (in {key}) has no metadata '{field}'; a depth dataset "
                        "needs depth_scale and intrinsics (see percep_det/data/depth_io.py)"
                    )
                found[name] = meta.get(field)
            distinct = {tuple(v) if isinstance(v, (list, tuple)) else v for v in found.values()}
            if len(distinct) > 1:
                raise ValueError(
                    f"the datasets of {key} differ in metadata '{field}': {found}; one mapper "
                    "serves one camera (give the records their own 'intrinsics' instead)"
                )
            values[field] = found[names[0]]
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "depth_scale": values["depth_scale"],
            "intrinsics": values["intrinsics"],
            "resize_mode": cfg.INPUT.DEPTH.RESIZE_MODE,
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        """
        Args:
            dataset_dict: one record: ``file_name``, ``depth_file_name`` (required in training),
                optional ``height``, ``width``, ``image_id``, ``intrinsics``.

        Returns:
            dict: see the class docstring.
        """
        record = copy.deepcopy(dataset_dict)
        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        h, w = image.shape[:2]
        depth = None
        if "depth_file_name" in record:
            depth = read_depth(record["depth_file_name"], self.depth_scale)
            if depth.shape != (h, w):
                raise ValueError(
                    f"depth map '{record['depth_file_name']}' is {depth.shape[1]} x "
                    f"{depth.shape[0]} (W x H) but its image '{record['file_name']}' is {w} x {h}"
                    "; a depth map must be aligned with its image pixel for pixel"
                )
        elif self.is_train:
            raise KeyError(
                f"record of '{record['file_name']}' has no 'depth_file_name'; every training "
                "image of a depth dataset needs its depth map"
            )
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        depth, intrinsics, factor = apply_depth_transforms(
            transforms, depth, record.get("intrinsics", self.intrinsics), self.resize_mode
        )
        out = {
            "file_name": record["file_name"],
            "image_id": record.get("image_id"),
            "height": record.get("height", h),
            "width": record.get("width", w),
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "intrinsics": torch.as_tensor(intrinsics, dtype=torch.float32),
            "depth_factor": factor,
        }
        if depth is not None:
            out["depth"] = torch.as_tensor(depth)
            out["depth_file_name"] = record["depth_file_name"]
        return out
