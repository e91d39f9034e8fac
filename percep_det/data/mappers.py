"""Which dataset mapper a task's loader uses, chosen by the dataset's ``evaluator_type``.

* ``"depth"``: :class:`~percep_det.data.depth_mapper.DepthDatasetMapper` (image and depth map
  augmented together, intrinsics kept consistent);
* ``"sem_seg"`` / ``"cityscapes_sem_seg"`` in training: detectron2's ``DatasetMapper`` with the
  semantic-segmentation augmentations of :func:`build_sem_seg_train_augmentations` (resize, *then*
  crop, then flip). detectron2's own ``DatasetMapper(cfg, True)`` inserts the crop *before* the
  resize, so with the paper's recipes (random scale, 769 crop) it would crop 769 px of the original
  and then rescale that crop to 512..2048 px: neither the scale jitter nor the crop size the
  recipe asks for;
* anything else: ``None`` (detectron2's default mapper).
"""

from typing import Callable, List, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T

__all__ = ["build_sem_seg_train_augmentations", "build_mapper", "dataset_task_type"]

SEM_SEG_TYPES = ("sem_seg", "cityscapes_sem_seg")


def build_sem_seg_train_augmentations(cfg: CfgNode) -> List[T.Augmentation]:
    """ResizeShortestEdge(``INPUT.MIN_SIZE_TRAIN``, ``MAX_SIZE_TRAIN``, ``MIN_SIZE_TRAIN_SAMPLING``),
    then (``INPUT.CROP.ENABLED``) a crop of ``INPUT.CROP.TYPE`` / ``SIZE`` in which no single class
    covers more than ``INPUT.CROP.SINGLE_CATEGORY_MAX_AREA`` (the ignore value
    ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE`` not counted), then the flip of ``INPUT.RANDOM_FLIP``."""
    augs: List[T.Augmentation] = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            )
        )
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augs


def dataset_task_type(dataset_names: Sequence[str], key: str = "DATASETS.TRAIN") -> str:
    """The common ``evaluator_type`` of ``dataset_names`` ("coco" when unset); an error naming
    ``key`` when they differ (one loader cannot mix, e.g., depth and instance records)."""
    types = {n: MetadataCatalog.get(n).get("evaluator_type", "coco") for n in dataset_names}
    if len(set(types.values())) > 1:
        raise ValueError(
            f"{key} mixes datasets of different tasks (evaluator_type): {types}; train one task "
            "per run"
        )
    return next(iter(types.values()), "coco")


def build_mapper(
    cfg: CfgNode, is_train: bool, dataset_name: Optional[str] = None
) -> Optional[Callable]:
    """The mapper for ``DATASETS.TRAIN`` (``is_train``) or the test set ``dataset_name``, or None
    for detectron2's default ``DatasetMapper``."""
    if is_train:
        task = dataset_task_type(cfg.DATASETS.TRAIN)
    else:
        task = dataset_task_type([dataset_name], "DATASETS.TEST")
    if task == "depth":
        from .depth_mapper import DepthDatasetMapper

        return DepthDatasetMapper(cfg, is_train)
    if is_train and task in SEM_SEG_TYPES:
        return DatasetMapper(cfg, True, augmentations=build_sem_seg_train_augmentations(cfg))
    return None
