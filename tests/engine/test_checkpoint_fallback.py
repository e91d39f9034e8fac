"""PercepCheckpointer: checkpoints are written atomically (a failed or killed save leaves the
previous checkpoint and ``last_checkpoint`` untouched), and ``--resume`` falls back past an empty
``last_checkpoint`` and broken files to the newest usable checkpoint, saying which and why."""
import logging
import os
import signal
import subprocess
import sys

import pytest
import torch
from detectron2.engine import default_argument_parser, hooks
from torch import nn

from percep_det.engine import CorruptFileError, PercepCheckpointer
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "configs", "quick_schedules", "condinst_R18_shapes_cpu.yaml")


@pytest.fixture
def log():
    """Messages of percep_det.engine.checkpoint (whatever handlers other tests set up)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    target = logging.getLogger("percep_det.engine.checkpoint")
    old_level = target.level
    target.setLevel(logging.INFO)
    target.addHandler(handler)
    yield records
    target.removeHandler(handler)
    target.setLevel(old_level)


def _checkpointer(folder):
    return PercepCheckpointer(nn.Linear(2, 2), str(folder))


def _save(checkpointer, iteration, mtime=None):
    """Save ``model_<iteration>.pth`` with weights filled with ``iteration``; ``mtime`` orders
    the files without waiting for the clock."""
    with torch.no_grad():
        checkpointer.model.weight.fill_(iteration)
    checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
    path = os.path.join(checkpointer.save_dir, f"model_{iteration:07d}.pth")
    t = 1_000_000 + (iteration if mtime is None else mtime)
    os.utime(path, (t, t))
    return path


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _tag(folder):
    with open(os.path.join(folder, "last_checkpoint")) as f:
        return f.read()


def _snapshot(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_save_leaves_the_previous_checkpoint_untouched(tmp_path, monkeypatch, error):
    checkpointer = _checkpointer(tmp_path)
    _save(checkpointer, 2)
    before = _snapshot(tmp_path)
    assert set(before) == {"model_0000002.pth", "last_checkpoint"}

    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise error("simulated failure while writing")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(error):
        _save(checkpointer, 5)
    assert _snapshot(tmp_path) == before  # no model_0000005.pth, no temporary file, same tag


def test_a_kill_during_save_leaves_nothing_that_resume_would_load(tmp_path, log):
    """A real SIGKILL in the middle of writing the checkpoint's bytes."""
    script = f"""
import os, signal, sys
import torch
from torch import nn
from percep_det.engine import PercepCheckpointer

checkpointer = PercepCheckpointer(nn.Linear(2, 2), {str(tmp_path)!r})
checkpointer.save("model_0000002", iteration=2)
real_save = torch.save

def killed(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    f.truncate(f.tell() // 2)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = killed
checkpointer.save("model_0000005", iteration=5)
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=300
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    files = sorted(os.listdir(tmp_path))
    assert "model_0000005.pth" not in files and "model_0000002.pth" in files
    assert _tag(tmp_path) == "model_0000002.pth"
    leftovers = [f for f in files if f not in ("model_0000002.pth", "last_checkpoint")]
    assert len(leftovers) == 1  # the killed write's temporary file: never a resume candidate
    assert leftovers[0].startswith(".model_0000005.pth.") and leftovers[0].endswith(".tmp")

    checkpointer = _checkpointer(tmp_path)
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 2
    assert checkpointer.resumed_from == os.path.join(str(tmp_path), "model_0000002.pth")
    # saving that checkpoint again (the resumed run reaches iteration 5) removes the leftovers
    _save(checkpointer, 5)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000002.pth",
        "model_0000005.pth",
    ]


def test_resume_falls_back_past_a_truncated_newest_checkpoint(tmp_path, log):
    checkpointer = _checkpointer(tmp_path)
    previous, newest = _save(checkpointer, 2), _save(checkpointer, 5)
    assert _tag(tmp_path) == "model_0000005.pth"
    _truncate(newest)

    resumed = _checkpointer(tmp_path)
    checkpoint = resumed.resume_or_load("", resume=True)
    assert checkpoint["iteration"] == 2 and resumed.resumed_from == previous
    assert torch.equal(resumed.model.weight, torch.full((2, 2), 2.0))
    assert resumed.has_checkpoint()
    assert any(f"Cannot resume from {newest}" in m and "truncated" in m for m in log), log
    assert any(m.startswith(f"Resumed from {previous}") and newest in m for m in log), log


def test_resume_uses_the_newest_checkpoint_when_last_checkpoint_is_empty(tmp_path, log):
    checkpointer = _checkpointer(tmp_path)
    _save(checkpointer, 2)
    newest = _save(checkpointer, 5)
    # a newer weights-only file (no "iteration") is not a training checkpoint: skipped
    pretrained = os.path.join(str(tmp_path), "pretrained.pth")
    torch.save({"model": checkpointer.model.state_dict()}, pretrained)
    os.utime(pretrained, (1_000_009, 1_000_009))
    with open(os.path.join(tmp_path, "last_checkpoint"), "w"):
        pass  # empty

    resumed = _checkpointer(tmp_path)
    assert resumed.resume_or_load("", resume=True)["iteration"] == 5
    assert resumed.resumed_from == newest
    message = [m for m in log if m.startswith("Resumed from")][0]
    assert "last_checkpoint is empty" in message and "pretrained.pth has no 'iteration'" in message


def test_resume_when_last_checkpoint_names_a_missing_file(tmp_path, log):
    checkpointer = _checkpointer(tmp_path)
    _save(checkpointer, 2)
    newest = _save(checkpointer, 5)
    with open(os.path.join(tmp_path, "last_checkpoint"), "w") as f:
        f.write("model_0000009.pth")

    resumed = _checkpointer(tmp_path)
    assert resumed.resume_or_load("", resume=True)["iteration"] == 5
    assert resumed.resumed_from == newest
    assert any("names 'model_0000009.pth', which does not exist" in m for m in log), log


def test_no_usable_checkpoint_starts_from_the_weights_with_a_warning(tmp_path, log):
    out = tmp_path / "out"
    out.mkdir()
    checkpointer = _checkpointer(out)
    _truncate(_save(checkpointer, 2))
    with open(_save(checkpointer, 5), "wb"):
        pass  # empty
    weights = str(tmp_path / "weights.pth")
    torch.save({"model": {"weight": torch.full((2, 2), 7.0), "bias": torch.zeros(2)}}, weights)

    resumed = _checkpointer(out)
    assert "iteration" not in resumed.resume_or_load(weights, resume=True)
    assert torch.equal(resumed.model.weight, torch.full((2, 2), 7.0))
    assert resumed.resumed_from is None and not resumed.has_checkpoint()
    warning = [m for m in log if "no usable checkpoint" in m]
    assert warning and "is empty" in warning[0] and "truncated" in warning[0]
    assert f"Starting from MODEL.WEIGHTS '{weights}'" in warning[0]
    # a new checkpoint makes it resumable again
    _save(resumed, 6)
    assert resumed.has_checkpoint()


def test_broken_weights_without_resume_are_an_error(tmp_path):
    weights = tmp_path / "model_final.pth"
    weights.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=str(weights)):
        _checkpointer(tmp_path).resume_or_load(str(weights), resume=False)


# ------------------------------------------------------------------------------------------------
# tools/train_net.py's Trainer
# ------------------------------------------------------------------------------------------------
def _train_net():
    path = os.path.join(ROOT, "tools", "train_net.py")
    module = load_script(path, "percep_train_net_checkpoint_fallback")
    return module


def _trainer(train_net, out, max_iter):
    opts = [
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.CHECKPOINT_PERIOD", "1", "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.CONDINST.MAX_PROPOSALS", "4", "PERCEP_DET.VIS_NUM_IMAGES", "0", "OUTPUT_DIR", out,
    ]  # fmt: skip
    args = default_argument_parser().parse_args(["--config-file", QUICK, *opts])
    return train_net.Trainer(train_net.build_cfg(args))


def test_trainer_saves_and_resumes_through_the_percep_checkpointer(tmp_path, log):
    train_net = _train_net()
    out = str(tmp_path / "run")
    trainer = _trainer(train_net, out, max_iter=2)
    assert isinstance(trainer.checkpointer, PercepCheckpointer)
    periodic = [h for h in trainer._hooks if isinstance(h, hooks.PeriodicCheckpointer)]
    assert periodic and periodic[0].checkpointer is trainer.checkpointer
    assert {"trainer", "training_state"} <= set(trainer.checkpointer.checkpointables)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert _tag(out) == "model_final.pth"
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]

    # the newest (model_final.pth, named by last_checkpoint) is truncated: resume from the
    # newest other one, model_0000001.pth (iteration 1), and continue at iteration 2
    os.utime(os.path.join(out, "model_0000000.pth"), (1_000_000, 1_000_000))
    os.utime(os.path.join(out, "model_0000001.pth"), (1_000_001, 1_000_001))
    _truncate(os.path.join(out, "model_final.pth"))
    trainer = _trainer(train_net, out, max_iter=3)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    assert trainer.checkpointer.resumed_from == os.path.join(out, "model_0000001.pth")

    # nothing usable: from MODEL.WEIGHTS ("" = scratch) at iteration 0, with a warning
    for name in os.listdir(out):
        if name.endswith(".pth"):
            open(os.path.join(out, name), "wb").close()
    trainer = _trainer(train_net, out, max_iter=3)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 0 and trainer.checkpointer.resumed_from is None
    assert any("no usable checkpoint" in m for m in log), log
