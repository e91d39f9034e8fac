"""tools/train_net.py builds the poly schedule of the PSPNet / DeepLab recipes (WarmupPolyLR)."""
import os

import torch

from percep_det.config import get_percep_cfg
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_poly_and_core_schedules():
    path = os.path.join(ROOT, "tools", "train_net.py")
    train_net = load_script(path, "percep_train_net_poly")
    cfg = get_percep_cfg(
        os.path.join(ROOT, "configs", "SemanticSegmentation", "Base-PSPNet-OS8.yaml"),
        ["SOLVER.MAX_ITER", "10"],
    )
    assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupPolyLR"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = train_net.Trainer.build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # lr_i = 0.01 * (1 - i / 10) ** 0.9 (no warm-up in the recipe)
    expected = [0.01 * (1 - i / 10) ** 0.9 for i in range(10)]
    assert all(abs(a - b) < 1e-9 for a, b in zip(lrs, expected)), lrs
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"  # every other name: detectron2's builder
    assert type(train_net.Trainer.build_lr_scheduler(cfg, optimizer)).__name__ != "WarmupPolyLR"
