"""tools/train_net.py on a depth model: trains, evaluates with DepthEvaluator, draws, eval-only."""

import json
import os

import cv2
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from percep_det.data.shapes import ShapesSpec, camera_intrinsics, generate_split
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = "percep_test_shapes_depth_tiny"

TINY_DEPTH_YAML = f"""
_BASE_: "{ROOT}/configs/quick_schedules/depth_R18_wce_vnl_percep_shapes_cpu.yaml"
MODEL:
  RESNETS:
    STEM_OUT_CHANNELS: 8
    RES2_OUT_CHANNELS: 8
  DEPTH:
    CONVS_DIM: 8
    NUM_BINS: 8
  PERCEPTUAL_LOSS:
    BLOCKS: [1, 1]
    WIDTHS: [4, 4]
DATASETS:
  TRAIN: ("{NAME}",)
  TEST: ("{NAME}",)
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  IMS_PER_BATCH: 2
  MAX_ITER: 2
  WARMUP_ITERS: 1
TEST:
  EVAL_PERIOD: 0
PERCEP_DET:
  VIS_NUM_IMAGES: 2
"""


def _load_tool(name):
    module = load_script(os.path.join(ROOT, "tools", f"{name}.py"), name)
    return module


@pytest.fixture(scope="module")
def tiny_depth_config(tmp_path_factory):
    """Three version-2 scenes registered as a depth dataset, and a tiny config training on them."""
    data = tmp_path_factory.mktemp("depth_data")
    spec = ShapesSpec(num_images=3, version=2)
    generate_split(str(data / "split"), "val", spec, seed=0)
    with open(data / "split" / "annotations.json") as f:
        images = json.load(f)["images"]
    records = [
        {
            "file_name": str(data / "split" / "images" / im["file_name"]),
            "depth_file_name": str(data / "split" / "depth" / im["depth_file_name"]),
            "height": im["height"],
            "width": im["width"],
            "image_id": im["id"],
        }
        for im in images
    ]
    DatasetCatalog.register(NAME, lambda: records)
    MetadataCatalog.get(NAME).set(
        evaluator_type="depth",
        depth_scale=1000.0,
        intrinsics=camera_intrinsics(spec),
        min_depth=0.5,
        max_depth=12.0,
        eigen_crop=False,
    )
    path = tmp_path_factory.mktemp("depth_cfg") / "tiny_depth.yaml"
    path.write_text(TINY_DEPTH_YAML)
    yield str(path)
    DatasetCatalog.remove(NAME)
    MetadataCatalog.remove(NAME)


def test_train_evaluate_draw_and_eval_only(tiny_depth_config, tmp_path):
    from detectron2.engine import default_argument_parser

    train_net = _load_tool("train_net")
    out = str(tmp_path / "run")
    args = default_argument_parser().parse_args(
        ["--config-file", tiny_depth_config, "OUTPUT_DIR", out]
    )
    train_net.main(args)
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    trained = [row for row in rows if "total_loss" in row]
    assert [row["iteration"] for row in trained] == [1]
    assert {"loss_depth_wce", "loss_depth_vnl", "loss_depth_percep"} <= set(trained[0])
    assert trained[0]["cpu_time"] > 0  # engine.timing.CPUTimer
    final = rows[-1]
    assert (
        final["depth/num_images"] == 3
        and 0 < final["depth/AbsRel"]
        and 0 <= final["depth/delta1"] <= 1
    )
    assert os.path.isfile(os.path.join(out, "inference", NAME, "depth_metrics.json"))
    vis = sorted(os.listdir(os.path.join(out, "vis")))
    assert vis == [f"{NAME}_00000{i}.png" for i in range(2)]
    assert cv2.imread(os.path.join(out, "vis", vis[0])) is not None

    args = default_argument_parser().parse_args(
        [
            "--config-file",
            tiny_depth_config,
            "--eval-only",
            "MODEL.WEIGHTS",
            os.path.join(out, "model_final.pth"),
            "OUTPUT_DIR",
            str(tmp_path / "eval"),
        ]
    )
    results = train_net.main(args)
    assert results["depth"]["AbsRel"] == pytest.approx(final["depth/AbsRel"], rel=1e-6)
