"""tools/train_net.py for semantic segmentation: the evaluator follows ``evaluator_type``, and the
training loader stops on palette label PNGs (CPU, no model)."""

import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, SemSegEvaluator
from PIL import Image

import percep_det  # noqa: F401
from percep_det.config import get_percep_cfg
from percep_det.data import LabelFormatError, label_palette, load_shapes_sem_seg
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
NUM_CLASSES = 5


def _load_train_net():
    module = load_script(TRAIN_NET, "percep_train_net_sem_seg")
    return module


@pytest.fixture(scope="module")
def train_net():
    return _load_train_net()


def _register_subset(name, evaluator_type, count=4):
    """The first ``count`` scenes of percep_shapes_sem_seg_val under another name/type."""
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(
            name, lambda: load_shapes_sem_seg("percep_shapes_sem_seg_val")[:count]
        )
        source = MetadataCatalog.get("percep_shapes_sem_seg_val")
        MetadataCatalog.get(name).set(
            stuff_classes=source.stuff_classes,
            ignore_label=255,
            evaluator_type=evaluator_type,
        )
    return DatasetCatalog.get(name)


def _run(evaluator, records, predict):
    """Feed ``predict(label)`` -> (C, H, W) scores for every record; return the sem_seg metrics."""
    evaluator.reset()
    for r in records:
        label = torch.from_numpy(np.asarray(Image.open(r["sem_seg_file_name"])).astype(np.int64))
        evaluator.process([{"file_name": r["file_name"]}], [{"sem_seg": predict(label)}])
    return evaluator.evaluate()["sem_seg"]


def _one_hot(label):  # (H, W) -> (C, H, W)
    return torch.nn.functional.one_hot(label, NUM_CLASSES).permute(2, 0, 1).float()


@pytest.mark.parametrize("evaluator_type", ["sem_seg", "cityscapes_sem_seg"])
def test_sem_seg_evaluator_from_evaluator_type(train_net, tmp_path, evaluator_type):
    name = f"percep_test_shapes_subset_{evaluator_type}"
    records = _register_subset(name, evaluator_type)
    cfg = get_percep_cfg()
    evaluators = train_net.Trainer.build_evaluator(cfg, name, output_folder=str(tmp_path))
    (evaluator,) = evaluators._evaluators
    assert isinstance(evaluator, SemSegEvaluator)
    perfect = _run(evaluators, records, _one_hot)
    assert perfect["mIoU"] == pytest.approx(100) and perfect["pACC"] == pytest.approx(100)
    background = _run(evaluators, records, lambda label: _one_hot(torch.zeros_like(label)))
    assert background["mIoU"] < 50 and 50 < background["pACC"] < 100
    assert os.path.isfile(tmp_path / "sem_seg_evaluation.pth")


def test_builtin_evaluators(train_net, tmp_path):
    cfg = get_percep_cfg()
    sem = train_net.Trainer.build_evaluator(cfg, "percep_shapes_sem_seg_val", str(tmp_path / "s"))
    assert isinstance(sem._evaluators[0], SemSegEvaluator)
    coco = train_net.Trainer.build_evaluator(cfg, "percep_shapes_val", str(tmp_path / "c"))
    assert isinstance(coco._evaluators[0], COCOEvaluator)


def test_unknown_evaluator_type_is_named(train_net):
    name = "percep_test_shapes_subset_depth"
    _register_subset(name, "percep_depth_unknown")
    with pytest.raises(NotImplementedError, match=f"'{name}'.*'percep_depth_unknown'"):
        train_net.Trainer.build_evaluator(get_percep_cfg(), name)


def _palette_dataset(tmp_path, name):
    """Two shapes scenes whose labels are saved as palette PNGs (indices unchanged)."""
    records = load_shapes_sem_seg("percep_shapes_sem_seg_val")[:2]
    os.makedirs(tmp_path / "palette")
    for r in records:
        indices = np.asarray(Image.open(r["sem_seg_file_name"]))
        img = Image.frombytes("P", indices.shape[::-1], np.ascontiguousarray(indices).tobytes())
        img.putpalette([c for rgb in label_palette(256) for c in rgb])
        r["sem_seg_file_name"] = str(tmp_path / "palette" / os.path.basename(r["file_name"]))
        img.save(r["sem_seg_file_name"])
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(
        stuff_classes=MetadataCatalog.get("percep_shapes_sem_seg_val").stuff_classes,
        ignore_label=255,
        evaluator_type="sem_seg",
    )
    return records


def test_training_loader_stops_on_palette_labels(train_net, tmp_path):
    name = "percep_test_palette_sem_seg"
    records = _palette_dataset(tmp_path, name)
    cfg = get_percep_cfg()
    cfg.DATASETS.TRAIN = (name,)
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS = 2, 0
    with pytest.raises(LabelFormatError, match="palette.*convert_palette_labels.py") as err:
        train_net.Trainer.build_train_loader(cfg)
    assert records[0]["sem_seg_file_name"] in str(err.value)
    # evaluation reads the indices of a palette PNG correctly: allowed, and perfect is perfect
    evaluators = train_net.Trainer.build_evaluator(cfg, name, str(tmp_path / "eval"))
    assert _run(evaluators, records, _one_hot)["mIoU"] == pytest.approx(100)
