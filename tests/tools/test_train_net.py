"""tools/train_net.py end to end on CPU: bad input, a tiny training run, 2-process gloo, resume."""
import json
import os
import subprocess
import sys

import pytest
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
QUICK = os.path.join(ROOT, "configs", "quick_schedules", "condinst_R18_shapes_cpu.yaml")
if not os.path.isfile(QUICK):  # until the CondInst quick config exists
    QUICK = os.path.join(ROOT, "configs", "quick_schedules", "mask_rcnn_R18_shapes_cpu.yaml")
TINY = [
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "2",
    "SOLVER.STEPS", "(3,)", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "0",
    "PERCEP_DET.VIS_NUM_IMAGES", "2", "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip


def _load_train_net():
    module = load_script(TRAIN_NET, "percep_train_net")
    return module


def _args(*argv):
    from detectron2.engine import default_argument_parser

    return default_argument_parser().parse_args(list(argv))


def _run(*argv, env=None, timeout=600):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, TRAIN_NET, *argv], capture_output=True, text=True, env=full_env,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_missing_config_file_is_named():
    train_net = _load_train_net()
    with pytest.raises(FileNotFoundError, match="configs/nope.yaml"):
        train_net.build_cfg(_args("--config-file", "configs/nope.yaml"))


def test_unknown_key_is_named(tmp_path):
    train_net = _load_train_net()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_BASE_: {QUICK}\nMODEL:\n  CONDINST_TYPO: 3\n")
    with pytest.raises(KeyError, match="CONDINST_TYPO"):
        train_net.build_cfg(_args("--config-file", str(bad)))
    with pytest.raises(KeyError, match="SOLVER.NOT_A_KEY"):
        train_net.build_cfg(_args("--config-file", QUICK, "SOLVER.NOT_A_KEY", "1"))


def test_missing_coco_directory_says_which_env_var(tmp_path):
    result = _run(
        "--config-file", QUICK, "DATASETS.TRAIN", "('coco_2017_train',)",
        env={"DETECTRON2_DATASETS": str(tmp_path / "nowhere")}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "DETECTRON2_DATASETS" in result.stderr and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_unregistered_dataset_is_named():
    train_net = _load_train_net()
    with pytest.raises(KeyError, match="my_dataset"):
        train_net.build_cfg(_args("--config-file", QUICK, "DATASETS.TEST", "('my_dataset',)"))


def _iterations(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["iteration"] for r in rows if "total_loss" in r]  # training rows, not eval rows


def test_train_evaluate_draw_and_resume(tmp_path):
    out = str(tmp_path / "run")
    result = _run("--config-file", QUICK, *TINY, "OUTPUT_DIR", out)
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(os.path.join(out, "log.txt")).read()
    # 4 iterations may give no detection above threshold: check that COCO evaluation ran
    assert "Evaluation results for percep_shapes_val" in log
    assert os.path.isfile(os.path.join(out, "inference", "percep_shapes_val", "coco_instances_results.json"))
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert len([f for f in os.listdir(os.path.join(out, "vis")) if f.endswith(".png")]) == 2
    assert os.path.getsize(os.path.join(out, "curves.png")) > 10_000
    assert _iterations(out) == [3]

    # --resume with a longer schedule continues from the last checkpoint, not from scratch
    result = _run("--config-file", QUICK, "--resume", *TINY, "SOLVER.MAX_ITER", "6", "OUTPUT_DIR", out)
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(os.path.join(out, "log.txt")).read()
    assert "Starting training from iteration 4" in log
    assert _iterations(out)[-1] == 5

    # --eval-only with the trained weights
    result = _run(
        "--config-file", QUICK, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
        "OUTPUT_DIR", str(tmp_path / "eval"), "PERCEP_DET.VIS_NUM_IMAGES", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Evaluation results for percep_shapes_val" in open(os.path.join(tmp_path, "eval", "log.txt")).read()


def test_two_processes_on_cpu(tmp_path):
    out = str(tmp_path / "ddp")
    result = _run("--config-file", QUICK, "--num-gpus", "2", *TINY, "OUTPUT_DIR", out)
    assert result.returncode == 0, result.stderr[-3000:]
    log = open(os.path.join(out, "log.txt")).read()
    assert "World size: 2" in log
    assert "Evaluation results for percep_shapes_val" in log
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
