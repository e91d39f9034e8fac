"""--resume continues exactly: an interrupted and resumed run ends with the weights of an
uninterrupted one (CPU, one process)."""
import os

import pytest
import torch
from detectron2.engine import HookBase, default_argument_parser
from detectron2.utils.env import seed_all_rng
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "configs", "quick_schedules", "condinst_R18_shapes_cpu.yaml")


def _train_net():
    module = load_script(os.path.join(ROOT, "tools", "train_net.py"), "percep_train_net_resume")
    return module


class _Interrupt(HookBase):
    def __init__(self, at):
        self.at = at

    def before_step(self):
        if self.trainer.iter == self.at:
            raise KeyboardInterrupt(f"simulated interruption at iteration {self.at}")


def _cfg(train_net, out, workers):
    opts = [
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "6", "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.STEPS", "(4,)", "SOLVER.CHECKPOINT_PERIOD", "3", "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", str(workers), "SEED", "5", "OUTPUT_DIR", str(out),
        "MODEL.CONDINST.MAX_PROPOSALS", "5",  # random instance sampling: the RNG state matters
    ]  # fmt: skip
    return train_net.build_cfg(default_argument_parser().parse_args(["--config-file", QUICK, *opts]))


def _run(train_net, cfg, resume, interrupt_at=None):
    seed_all_rng(cfg.SEED)  # what default_setup does in a fresh process
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    if interrupt_at is not None:
        trainer.register_hooks([_Interrupt(interrupt_at)])
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
    else:
        trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_is_exact(tmp_path, workers):
    train_net = _train_net()
    full = _run(train_net, _cfg(train_net, tmp_path / "full", workers), resume=False)

    cfg = _cfg(train_net, tmp_path / "interrupted", workers)
    first = _run(train_net, cfg, resume=False, interrupt_at=3)  # checkpoint of iteration 2 exists
    assert os.path.isfile(tmp_path / "interrupted" / "model_0000002.pth")
    resumed = _run(train_net, cfg, resume=True)

    assert full.keys() == resumed.keys()
    changed = [k for k in full if not torch.equal(full[k], first[k])]
    assert changed, "the interrupted run should differ from the finished one"
    different = [k for k in full if not torch.equal(full[k], resumed[k])]
    assert different == [], f"resumed run differs from the uninterrupted one in {different[:5]}"
