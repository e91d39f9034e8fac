"""Fingerprints that pin a model's loss networks in its checkpoints.

Loss networks are held outside the model's ``state_dict`` (:mod:`percep_det.modeling.frozen`) and
regenerated from their settings and seed. A checkpoint must still say which network it was trained
with: the trainer stores ``{module name: fingerprint}`` of every :class:`PerceptualLoss` of the
model under :data:`CHECKPOINT_KEY`, and ``--resume``, ``--eval-only`` and a teacher load compare the
regenerated networks with it (:func:`check_fingerprints`). A difference is an error that names the
``MODEL.PERCEPTUAL_LOSS`` setting that changed, or, if every setting is equal, says that the same
settings now give other weights (e.g. another torch version's random generator).
"""

from typing import Dict, Mapping

from torch import nn

from .loss import PerceptualLoss

__all__ = ["CHECKPOINT_KEY", "LossNetworkRecord", "check_fingerprints", "loss_network_fingerprints"]

CHECKPOINT_KEY = "perceptual_loss_networks"
"""The checkpoint entry holding ``{module name: {"spec": ..., "sha256": ...}}``."""


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # DDP


def perceptual_losses(model: nn.Module) -> Dict[str, PerceptualLoss]:
    """Every :class:`PerceptualLoss` of ``model`` by module name (e.g. ``mask_head.perceptual_loss``)."""
    return {n: m for n, m in _unwrap(model).named_modules() if isinstance(m, PerceptualLoss)}


def loss_network_fingerprints(model: nn.Module) -> Dict[str, Dict[str, object]]:
    """``{module name: fingerprint}`` of the loss networks of ``model`` (builds them if needed)."""
    return {name: loss.fingerprint() for name, loss in perceptual_losses(model).items()}


def check_fingerprints(
    recorded: Mapping[str, Mapping[str, object]],
    current: Mapping[str, Mapping[str, object]],
    source: str,
) -> None:
    """
    Raise ``ValueError`` if a loss network present in both ``recorded`` (from the checkpoint
    ``source``) and ``current`` (regenerated from the config) differs; the message names the
    ``MODEL.PERCEPTUAL_LOSS`` key. Networks in only one of them are not compared (a model may add
    or drop the perceptual term between runs).
    """
    for name in sorted(set(recorded) & set(current)):
        rec, cur = recorded[name], current[name]
        if rec["sha256"] == cur["sha256"]:
            continue
        rec_spec, cur_spec = dict(rec["spec"]), dict(cur["spec"])
        changed = [k for k in sorted(set(rec_spec) | set(cur_spec)) if rec_spec.get(k) != cur_spec.get(k)]
        if changed:
            detail = "; ".join(
                f"MODEL.PERCEPTUAL_LOSS.{k}: checkpoint {rec_spec.get(k)!r}, config "
                f"{cur_spec.get(k)!r}"
                for k in changed
            )
        else:
            detail = (
                f"every setting is equal ({cur_spec}) but the weights differ (sha256 "
                f"{rec['sha256'][:12]} vs {cur['sha256'][:12]}): the random generator or the "
                "pretrained file changed (another torch version?)"
            )
        raise ValueError(
            f"The loss network of {name!r} is not the one {source!r} was trained with: {detail}. "
            "Use the checkpoint's settings, or start a new run (a different loss network is a "
            "different experiment)."
        )


class LossNetworkRecord:
    """A checkpointable (for detectron2's ``Checkpointer``) that writes the fingerprints of a
    model's loss networks and, on load, checks them against the regenerated networks."""

    def __init__(self, model: nn.Module, source: str = "the checkpoint"):
        self.model = model
        self.source = source

    def state_dict(self) -> Dict[str, Dict[str, object]]:
        return loss_network_fingerprints(self.model)

    def load_state_dict(self, state: Mapping[str, Mapping[str, object]]) -> None:
        check_fingerprints(state, loss_network_fingerprints(self.model), self.source)
