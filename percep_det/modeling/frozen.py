"""Frozen models held outside a module tree: loss networks and teachers.

Policy (one for every task): a frozen helper model of a trainable model (the perceptual loss
network, a teacher) is held by a :class:`FrozenModule`, a plain object, not an ``nn.Module``
attribute. Therefore it is

* not in the owner's ``state_dict``: a model trained with a perceptual term or a teacher saves
  exactly the plain model's keys and loads strictly into it;
* not in ``parameters()`` (no optimizer sees it), not moved by ``model.to()`` (it follows its input's
  device on use), not switched by ``model.train()`` (always eval mode) and invisible to DDP;
* built lazily on the first :meth:`FrozenModule.get`, so nothing is built in inference.

The checkpoint still pins a loss network: its fingerprint (spec and weight hash) is recorded by the
trainer, see :mod:`percep_det.modeling.perceptual.fingerprint`.

Teachers of every task are built the same way: :func:`load_frozen_config` (their own config file),
:func:`check_matching_keys` (what teacher and student must share), :func:`build_frozen_model`
(strict load, frozen), held by a :class:`FrozenModule`. This module knows no task.
"""

import logging
import os
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from ..engine.checkpoint import PercepCheckpointer
from ..engine.safe_load import CorruptFileError, UnsafeFileError

__all__ = [
    "FrozenModelHolder",
    "FrozenModule",
    "build_frozen_model",
    "check_matching_keys",
    "freeze_",
    "get_key",
    "load_frozen_config",
    "load_weights_strict",
]

logger = logging.getLogger(__name__)


def freeze_(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter, in place; returns ``module``."""
    module.eval()
    module.requires_grad_(False)
    return module


class FrozenModule:
    """
    Holds a frozen module outside its owner's module tree (see the module docstring).

    Args:
        module: the module, or a function building it (called on the first :meth:`get`).
    """

    def __init__(self, module: Union[nn.Module, Callable[[], nn.Module]]):
        self._module: Optional[nn.Module] = None
        self._factory: Optional[Callable[[], nn.Module]] = None
        if isinstance(module, nn.Module):
            self._module = freeze_(module)
        elif callable(module):
            self._factory = module
        else:
            raise TypeError(f"FrozenModule needs an nn.Module or a factory, got {type(module)}")

    @property
    def is_built(self) -> bool:
        return self._module is not None

    def get(self, device: Optional[Union[str, torch.device]] = None) -> nn.Module:
        """The module (built on the first call), frozen, on ``device`` if given."""
        if self._module is None:
            self._module = freeze_(self._factory())
        if device is not None:
            tensor = next(iter(list(self._module.parameters()) + list(self._module.buffers())), None)
            if tensor is not None and tensor.device != torch.device(device):
                self._module.to(device)
        return self._module


def load_weights_strict(model: nn.Module, weights: str, key: str = "MODEL.WEIGHTS") -> dict:
    """
    Load a detectron2 / AdelaiDet checkpoint into ``model``; any missing, unexpected or wrongly
    shaped key is an error naming ``weights`` and the config ``key`` that gave it.

    The file is read by :class:`percep_det.engine.PercepCheckpointer`, like the trained model's own
    weights: ``.pkl`` through a restricted unpickler, ``.pth`` with ``weights_only=True``; an
    empty, corrupt or unsafe file is an error naming it (see :mod:`percep_det.engine.safe_load`).

    Returns:
        the checkpoint's other entries (e.g. ``perceptual_loss_networks``), without the model.
    """
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"Weights file {weights!r} ({key}) does not exist.")
    checkpointer = PercepCheckpointer(model)
    try:
        extra = checkpointer.load(weights, checkpointables=[])
    except (CorruptFileError, UnsafeFileError) as e:
        raise type(e)(f"{key}: {e}") from None
    incompatible = checkpointer.incompatible
    problems = []
    if incompatible.missing_keys:
        problems.append(f"missing keys {incompatible.missing_keys[:10]}")
    if incompatible.unexpected_keys:
        problems.append(f"unexpected keys {incompatible.unexpected_keys[:10]}")
    if incompatible.incorrect_shapes:
        problems.append(f"keys of wrong shape {incompatible.incorrect_shapes[:10]}")
    if problems:
        raise RuntimeError(
            f"Weights {weights!r} ({key}) do not match the model of the config: "
            + "; ".join(problems)
        )
    return extra


def load_frozen_config(config_file: str, key: str) -> CfgNode:
    """The config of a frozen model (e.g. a teacher): detectron2 + percep_det defaults merged
    with ``config_file`` by :func:`percep_det.config.get_percep_cfg` (safe YAML); errors name the
    config ``key`` that gave the file."""
    from percep_det.config import get_percep_cfg

    if not config_file:
        raise ValueError(f"{key} (the config file of the frozen model) must be set.")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(
            f"Config file {config_file!r} ({key}) does not exist (relative paths are resolved "
            f"from {os.getcwd()!r})."
        )
    try:
        cfg = get_percep_cfg(config_file)  # YAML read safely; errors name the file
    except (ValueError, KeyError, FileNotFoundError, UnsafeFileError) as e:
        raise type(e)(f"{key}: {e.args[0] if e.args else e}") from None
    cfg.MODEL.WEIGHTS = ""
    return cfg


def check_matching_keys(
    student_cfg: CfgNode, teacher_cfg: CfgNode, keys: Sequence[str], source: str
) -> None:
    """Raise ``ValueError`` naming the first of ``keys`` (e.g. ``"INPUT.FORMAT"``) whose value
    differs between the student's and the frozen model's (``source``) configs."""
    for key in keys:
        s, t = get_key(student_cfg, key), get_key(teacher_cfg, key)
        if s != t:
            raise ValueError(
                f"Teacher and student must agree on {key}: teacher ({source}) has {t}, student "
                f"has {s}."
            )


def get_key(cfg: CfgNode, key: str):
    """``cfg`` value of a dotted ``key``; sequences as lists (so tuples and lists compare)."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


def build_frozen_model(cfg: CfgNode, weights: str, key: str) -> Tuple[nn.Module, dict]:
    """
    Build ``cfg``'s meta-architecture on CPU, load ``weights`` strictly (errors name ``key``),
    freeze it.

    Returns:
        the model and the checkpoint's other entries (see :func:`load_weights_strict`).
    """
    if not weights:
        raise ValueError(f"{key} (the weights of the frozen model) must be set.")
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"Weights {weights!r} ({key}) do not exist.")
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    extra = load_weights_strict(model, weights, key)
    logger.info(f"Built a frozen {type(model).__name__} from {weights}")
    return freeze_(model), extra


class FrozenModelHolder(nn.Module):
    """
    Base of the parameter-free modules that wrap a frozen model (every task's teacher): the model
    is held by a :class:`FrozenModule`, so the wrapper can be a child of a meta-architecture
    without adding ``state_dict`` keys, parameters or a train/eval switch to it.

    Args:
        model: the frozen model, or a function building it (called on first use).
    """

    def __init__(self, model: Union[nn.Module, Callable[[], nn.Module]]):
        super().__init__()
        self._model = FrozenModule(model)

    @property
    def is_built(self) -> bool:
        return self._model.is_built

    def model(self, device: Optional[Union[str, torch.device]] = None) -> nn.Module:
        """The frozen model (built on the first call), on ``device`` if given."""
        return self._model.get(device)
