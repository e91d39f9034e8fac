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

:class:`NameFilesOnError` wraps a mapper so that a file that fails to read or decode during
training or evaluation (a truncated PNG: PIL's bare "image file is truncated") raises an error that
names the record's image id and files; :func:`build_test_mapper` is the wrapped test-set mapper.
"""

from typing import Callable, Dict, List, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T

__all__ = [
    "NameFilesOnError",
    "build_mapper",
    "build_sem_seg_train_augmentations",
    "build_test_mapper",
    "dataset_task_type",
    "name_files_on_error",
]

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


# record keys that name files, in the order an error message lists them
_FILE_KEYS = ("file_name", "sem_seg_file_name", "depth_file_name")


class NameFilesOnError:
    """Calls a dataset mapper; an exception it raises is raised again, with the same type where
    the type allows, with a message that names the record's image id and files.

    detectron2's readers report a truncated or corrupt file without its name (PIL: "image file is
    truncated"), from a data-loader worker, possibly after hours of training.
    """

    def __init__(self, mapper: Callable[[Dict], Optional[Dict]]):
        self.mapper = mapper

    def __call__(self, record: Dict) -> Optional[Dict]:
        try:
            return self.mapper(record)
        except Exception as e:  # noqa: BLE001  (any reader error; raised again with context)
            files = ", ".join(f"{k} '{record[k]}'" for k in _FILE_KEYS if k in record)
            message = (
                f"the dataset mapper failed on image id {record.get('image_id')!r} ({files}): "
                f"{type(e).__name__}: {e}. A file that does not decode: find every such file with "
                "`python tools/check_dataset.py <dataset> --deep` (or DATASETS.CHECK.DEEP True)"
            )
            try:
                error = type(e)(message)
            except Exception:  # noqa: BLE001  (an exception type with other arguments)
                error = RuntimeError(message)
            raise error from e

    def __getattr__(self, name: str):
        # the wrapped mapper's attributes (e.g. DatasetMapper.augmentations)
        if name == "mapper":
            raise AttributeError(name)
        return getattr(self.mapper, name)


def name_files_on_error(mapper: Callable[[Dict], Optional[Dict]]) -> NameFilesOnError:
    """``mapper`` wrapped in :class:`NameFilesOnError` (once)."""
    return mapper if isinstance(mapper, NameFilesOnError) else NameFilesOnError(mapper)


def build_test_mapper(cfg: CfgNode, dataset_name: str) -> NameFilesOnError:
    """The test-set mapper of :func:`build_mapper` (detectron2's ``DatasetMapper(cfg, False)``
    where that is None), wrapped in :class:`NameFilesOnError`."""
    mapper = build_mapper(cfg, is_train=False, dataset_name=dataset_name)
    return name_files_on_error(mapper if mapper is not None else DatasetMapper(cfg, False))
