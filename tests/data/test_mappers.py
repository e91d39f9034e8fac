"""Which mapper each task gets; semantic segmentation resizes before it crops."""

import pytest
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T

from percep_det.config import get_percep_cfg
from percep_det.data.mappers import build_mapper, dataset_task_type


def _semseg_cfg():
    cfg = get_percep_cfg("configs/quick_schedules/semseg_psp_R18_shapes_cpu.yaml")
    cfg.INPUT.MIN_SIZE_TRAIN = (256,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1024
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (96, 80)
    return cfg


def test_sem_seg_train_mapper_resizes_then_crops():
    cfg = _semseg_cfg()
    mapper = build_mapper(cfg, is_train=True)
    assert isinstance(mapper, DatasetMapper)
    kinds = [type(a) for a in mapper.augmentations.augs]
    assert kinds == [T.ResizeShortestEdge, T.RandomCrop_CategoryAreaConstraint, T.RandomFlip]
    record = DatasetCatalog.get("percep_shapes_sem_seg_train")[0]  # a 128 x 128 scene
    out = mapper(dict(record))
    # resized to 256 first, then a 96 x 80 crop of it (cropping first would give 256 x 256 or so)
    assert tuple(out["image"].shape) == (3, 96, 80) and tuple(out["sem_seg"].shape) == (96, 80)
    # detectron2's default order, for contrast: crop 96 x 80 of the original, then resize to 256
    default = DatasetMapper(cfg, True)(dict(record))
    assert min(default["image"].shape[1:]) == 256
    # test sets and instance datasets keep detectron2's default mapper
    assert build_mapper(cfg, is_train=False, dataset_name="percep_shapes_sem_seg_val") is None
    cfg.DATASETS.TRAIN = ("percep_shapes_train",)
    assert build_mapper(cfg, is_train=True) is None


def test_mixed_tasks_are_refused():
    name = "percep_test_mapper_depth_like"
    MetadataCatalog.get(name).set(evaluator_type="depth")
    try:
        assert dataset_task_type([name]) == "depth"
        with pytest.raises(ValueError, match="DATASETS.TRAIN mixes"):
            dataset_task_type(["percep_shapes_train", name])
    finally:
        MetadataCatalog.remove(name)
