"""A user's COCO-format dataset through tools/train_net.py without code: DATASETS.CUSTOM, the
dataset check before training (POLICY skip drops a bad image) and before evaluation (POLICY stop
names the bad entry), as docs/custom_datasets.md shows it."""

import json
import os
import subprocess
import sys

from percep_det.data import ShapesSpec, generate_split

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
QUICK = os.path.join(ROOT, "configs", "quick_schedules", "condinst_R18_shapes_cpu.yaml")
TINY = [
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "0",
    "PERCEP_DET.VIS_NUM_IMAGES", "0", "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip


def _run(*argv):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, TRAIN_NET, *argv], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=600,
    )  # fmt: skip


def _custom(name, root):
    return f"{name}:coco:{root}/annotations.json:{root}/images"


def test_custom_coco_dataset_trains_and_evaluates(tmp_path):
    mine = tmp_path / "mine"
    generate_split(str(mine / "train"), "train", ShapesSpec(num_images=4), seed=0)
    generate_split(str(mine / "val"), "val", ShapesSpec(num_images=2), seed=0)
    with open(mine / "train" / "annotations.json") as f:
        data = json.load(f)
    data["annotations"][0]["bbox"] = [0, 0, 0, 0]  # image 1 has a bad box
    with open(mine / "train" / "annotations.json", "w") as f:
        json.dump(data, f)
    custom = f"('{_custom('mine_train', mine / 'train')}', '{_custom('mine_val', mine / 'val')}')"
    out = tmp_path / "run"
    result = _run(
        "--config-file", QUICK, "DATASETS.CUSTOM", custom, "DATASETS.TRAIN", "('mine_train',)",
        "DATASETS.TEST", "('mine_val',)", "DATASETS.CHECK.POLICY", "skip", *TINY,
        "OUTPUT_DIR", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # logged while the config is built, before log.txt exists
    assert "dataset 'mine_train': skipped 1 of 4 images with problems" in result.stderr
    log = open(out / "log.txt").read()
    assert "Evaluation results for mine_val" in log
    assert os.path.isfile(out / "inference" / "mine_val" / "coco_instances_results.json")
    with open(out / "bad_entries_mine_train.json") as f:
        assert json.load(f)["problems"][0]["image_id"] == 1

    # --eval-only under the default policy "stop": the bad entry is named, no traceback
    result = _run(
        "--config-file", QUICK, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
        "DATASETS.CUSTOM", f"('{_custom('mine_bad_val', mine / 'train')}',)",
        "DATASETS.TEST", "('mine_bad_val',)", "OUTPUT_DIR", str(tmp_path / "eval"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "annotation id 1 (image id 1, '000000.png')" in result.stderr
    assert "zero or negative size" in result.stderr and "Traceback" not in result.stderr
