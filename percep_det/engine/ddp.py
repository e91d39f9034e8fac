"""DistributedDataParallel on CPU (gloo) with detectron2's DefaultTrainer.

detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``, which
``DistributedDataParallel`` rejects for a module whose parameters live on the CPU. This keeps
detectron2's behaviour for CUDA models and passes ``device_ids=None`` for CPU models.
"""
import contextlib
from typing import Iterator

import detectron2.engine.defaults as d2_defaults
import torch

__all__ = ["create_ddp_model", "cpu_aware_ddp"]

_d2_create_ddp_model = d2_defaults.create_ddp_model


def create_ddp_model(model: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """Like :func:`detectron2.engine.create_ddp_model`, but valid for CPU modules too."""
    if "device_ids" not in kwargs:
        param = next(model.parameters(), None)
        if param is not None and param.device.type == "cpu":
            kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, **kwargs)


@contextlib.contextmanager
def cpu_aware_ddp() -> Iterator[None]:
    """Within this context, ``DefaultTrainer(cfg)`` wraps CPU models in DDP correctly."""
    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = _d2_create_ddp_model
