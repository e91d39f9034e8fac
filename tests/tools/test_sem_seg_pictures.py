"""Pictures of semantic models: ground-truth and predicted class maps (draw_dataset_predictions,
tools/visualize.py), and a tiny semantic run of tools/train_net.py that trains, evaluates (mIoU) and
draws (CPU, R18 SemanticSegmentor with 32 channels)."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

import percep_det  # noqa: F401
from percep_det.config import get_percep_cfg
from percep_det.data import load_shapes_sem_seg
from percep_det.utils.visualize import draw_dataset_predictions, draw_prediction
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 5
TINY_SEMANTIC_YAML = """
MODEL:
  META_ARCHITECTURE: SemanticSegmentor
  DEVICE: cpu
  WEIGHTS: ""
  BACKBONE: {NAME: build_resnet_fpn_backbone, FREEZE_AT: 0}
  RESNETS: {DEPTH: 18, RES2_OUT_CHANNELS: 64, NORM: BN, OUT_FEATURES: [res2, res3, res4, res5]}
  FPN: {IN_FEATURES: [res2, res3, res4, res5], OUT_CHANNELS: 32}
  SEM_SEG_HEAD: {NUM_CLASSES: 5, CONVS_DIM: 32}
DATASETS: {TRAIN: [percep_shapes_sem_seg_val], TEST: [percep_test_shapes_sem_seg_tiny]}
INPUT: {MIN_SIZE_TRAIN: [128], MAX_SIZE_TRAIN: 213, MIN_SIZE_TEST: 128, MAX_SIZE_TEST: 213}
SOLVER: {IMS_PER_BATCH: 2, BASE_LR: 0.01, MAX_ITER: 2, STEPS: [], WARMUP_ITERS: 0}
DATALOADER: {NUM_WORKERS: 0}
TEST: {EVAL_PERIOD: 0}
PERCEP_DET: {VIS_NUM_IMAGES: 2}
"""


def _load_tool(name):
    module = load_script(os.path.join(ROOT, "tools", f"{name}.py"), f"percep_tool_{name}")
    return module


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """A tiny SemanticSegmentor config testing on 3 scenes of percep_shapes_sem_seg_val."""
    name = "percep_test_shapes_sem_seg_tiny"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: load_shapes_sem_seg("percep_shapes_sem_seg_val")[:3])
        source = MetadataCatalog.get("percep_shapes_sem_seg_val")
        MetadataCatalog.get(name).set(
            stuff_classes=source.stuff_classes, ignore_label=255, evaluator_type="sem_seg"
        )
    path = tmp_path_factory.mktemp("semantic_cfg") / "tiny_semantic.yaml"
    path.write_text(TINY_SEMANTIC_YAML)
    return str(path)


class _StripesModel(torch.nn.Module):
    """A stand-in semantic model: class k on the k-th vertical stripe, as (C, H, W) scores."""

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            h, w = x["height"], x["width"]
            classes = (torch.arange(w) * NUM_CLASSES // w).expand(h, w)  # (H, W)
            outputs.append(
                {
                    "sem_seg": torch.nn.functional.one_hot(classes, NUM_CLASSES)
                    .permute(2, 0, 1)
                    .float()
                }
            )
        return outputs


def test_draw_dataset_predictions_semantic(tmp_path):
    cfg = get_percep_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 128, 213
    paths = draw_dataset_predictions(
        cfg, _StripesModel(), "percep_shapes_sem_seg_val", str(tmp_path), 2, scale=2
    )
    assert [os.path.basename(p) for p in paths] == [
        "percep_shapes_sem_seg_val_000000.png",
        "percep_shapes_sem_seg_val_000001.png",
    ]
    img = cv2.imread(paths[0])[:, :, ::-1]  # RGB
    assert img.shape == (256, 512, 3)  # ground truth | prediction, drawn at scale 2
    truth, prediction = img[:, :256].astype(int), img[:, 256:].astype(int)
    assert np.abs(truth - prediction).mean() > 5
    # the stripes have the dataset's colours: class 1 (circle, (128, 0, 0)) is reddish
    stripe = prediction[100:150, 60:90].reshape(-1, 3).mean(0)
    assert stripe[0] > stripe[1] + 30 and stripe[0] > stripe[2] + 30


def test_draw_prediction_checks_classes_and_keys():
    image = np.zeros((16, 16, 3), np.uint8)
    scores = torch.zeros(3, 16, 16)
    with pytest.raises(ValueError, match="predicts 3 classes.*5 stuff_classes.*NUM_CLASSES"):
        draw_prediction(
            image, MetadataCatalog.get("percep_shapes_sem_seg_val"), {"sem_seg": scores}
        )
    # no metadata classes (tools/visualize.py without a test set): generic names
    picture = draw_prediction(
        image, MetadataCatalog.get("percep_test_no_classes"), {"sem_seg": scores}
    )
    assert picture.shape == (16, 16, 3)
    with pytest.raises(KeyError, match="'instances'.*'sem_seg'.*'depth'"):
        draw_prediction(image, MetadataCatalog.get("percep_shapes_sem_seg_val"), {"flow": scores})


def test_train_net_semantic_run_evaluates_and_draws(tiny_config, tmp_path):
    from detectron2.engine import default_argument_parser

    train_net = _load_tool("train_net")
    out = str(tmp_path / "run")
    args = default_argument_parser().parse_args(["--config-file", tiny_config, "OUTPUT_DIR", out])
    train_net.main(args)
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # trained (SemanticSegmentor needs the loader's "sem_seg"; one loss is logged as total_loss)
    assert [row["iteration"] for row in rows if "total_loss" in row] == [1]
    assert 0 <= rows[-1]["sem_seg/mIoU"] <= 100 and "sem_seg/pACC" in rows[-1]  # SemSegEvaluator
    inference = os.path.join(out, "inference", "percep_test_shapes_sem_seg_tiny")
    assert os.path.isfile(os.path.join(inference, "sem_seg_evaluation.pth"))
    vis = sorted(os.listdir(os.path.join(out, "vis")))
    assert vis == [f"percep_test_shapes_sem_seg_tiny_00000{i}.png" for i in range(2)]
    assert cv2.imread(os.path.join(out, "vis", vis[0])).shape == (384, 768, 3)  # scale 384 / 128


def test_visualize_tool_semantic(tiny_config, tmp_path, capsys):
    visualize = _load_tool("visualize")
    image = load_shapes_sem_seg("percep_shapes_sem_seg_val")[0]["file_name"]
    out = tmp_path / "vis"
    assert (
        visualize.main(["--config-file", tiny_config, "--input", image, "--output", str(out)]) == 0
    )
    picture = cv2.imread(str(out / "000000_pred.png"))
    assert picture.shape == (128, 128, 3)  # prediction only
    args = ["--config-file", tiny_config, "--dataset", "percep_shapes_sem_seg_val", "--num", "1"]
    assert visualize.main(args + ["--output", str(out), "--scale", "2"]) == 0
    assert cv2.imread(str(out / "percep_shapes_sem_seg_val_000000.png")).shape == (256, 512, 3)
    assert "wrote 1 overlays" in capsys.readouterr().out
