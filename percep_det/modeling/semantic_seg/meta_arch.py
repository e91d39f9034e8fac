"""The perceptual term for any detectron2 semantic-segmentation head (seed paper §3.1, eq. 2).

``PercepSemanticSegmentor`` is detectron2's ``SemanticSegmentor`` plus, in training,

    loss_sem_seg_percep = lambda * MSE(f(softmax(z_s)), f(y_t))

with ``z_s`` the student head's logits, ``y_t`` the one-hot labels (``TARGET "gt"``) or
``softmax(z_t / T)`` of a frozen teacher segmentor (``TARGET "teacher"``), and ``f`` the loss
network of ``MODEL.PERCEPTUAL_LOSS`` with K = ``NUM_CLASSES`` input channels (held by the shared
:class:`~percep_det.modeling.perceptual.PerceptualLoss`, outside the module tree).

How the term is attached to any head, without copying it: the parent's ``forward`` runs unchanged
(so the head is called exactly as detectron2 calls it and returns all its usual losses, e.g.
``loss_sem_seg`` with its own loss type, PSP's ``loss_sem_seg_aux``). During that call, forward
hooks observe the padded batch given to the backbone, the labels given to the head and the output
of the head's 1x1 classifier ``predictor`` (the logits at the head's ``common_stride``, before
upsampling). ``SemSegFPNHead``, ``DeepLabV3Head``, ``DeepLabV3PlusHead`` and
:class:`~.psp_head.PercepPSPHead` all have one. Inference is the parent's, unchanged, and the
``state_dict`` is the parent's (the loss network and the teacher are not in it).

Resolution (``RESOLUTION``): "output" compares ``(N, K, h, w)`` maps at the head's output stride
(labels sampled at the cell centres, teacher logits resized to h x w when its stride differs);
"label" upsamples the logits (bilinear) to the padded label size ``(N, K, H, W)``.

Ignore pixels (``IGNORE_VALUE``, and the padding, which is labelled so): prediction and target are
both set to 0 there, in every channel. The loss network is positively homogeneous with f(0) = 0, so
those pixels carry no signal and nothing about them (label, prediction, teacher) changes the term.

Shape shorthand: N images, K classes, H x W the padded batch, h x w the head's logits.
"""

import contextlib
import logging
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from torch import Tensor, nn

from ..perceptual import PerceptualLoss
from .psp_head import upsample_logits
from .teacher import build_sem_seg_target_source

__all__ = ["PercepSemanticSegmentor", "capture_head_io", "sample_labels"]

logger = logging.getLogger(__name__)

TARGETS = ("gt", "teacher")
RESOLUTIONS = ("output", "label")


def sample_labels(labels: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(N, H, W)`` labels -> ``(N, h, w)``: nearest neighbour at the centres of the h x w cells
    (the pixel ``floor((i + 1/2) * H / h)``), so no label is averaged or invented."""
    (h, w), (H, W) = size, labels.shape[-2:]
    rows = ((torch.arange(h, device=labels.device) + 0.5) * (H / h)).long().clamp_(max=H - 1)
    cols = ((torch.arange(w, device=labels.device) + 0.5) * (W / w)).long().clamp_(max=W - 1)
    return labels[:, rows][:, :, cols]


@contextlib.contextmanager
def capture_head_io(model: SemanticSegmentor) -> Iterator[Dict[str, List]]:
    """
    Within the context, record what ``model``'s parent ``forward`` feeds and gets:
    ``"images"``: the ``(N, 3, H, W)`` normalised, padded batch given to the backbone;
    ``"targets"``: the head's second argument (``(N, H, W)`` padded labels or None);
    ``"logits"``: the head's ``predictor`` outputs ``(N, K, h, w)`` (with their graph).
    """
    seen: Dict[str, List] = {"images": [], "targets": [], "logits": []}

    def on_backbone(module, args):
        seen["images"].append(args[0])

    def on_head(module, args, kwargs):
        targets = args[1] if len(args) > 1 else kwargs.get("targets")
        seen["targets"].append(targets)

    def on_predictor(module, args, output):
        seen["logits"].append(output)

    handles = [
        model.backbone.register_forward_pre_hook(on_backbone),
        model.sem_seg_head.register_forward_pre_hook(on_head, with_kwargs=True),
        model.sem_seg_head.predictor.register_forward_hook(on_predictor),
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


_CAPTURED = {"images": "backbone", "targets": "head", "logits": "head's predictor"}


def _single(seen: Dict[str, List], key: str, head: nn.Module):
    """The one value of ``seen[key]``; an error if that module ran another number of times."""
    if len(seen[key]) != 1:
        raise RuntimeError(
            f"PercepSemanticSegmentor expects one call of the {_CAPTURED[key]} per forward, saw "
            f"{len(seen[key])} with {type(head).__name__} (MODEL.SEM_SEG_HEAD.NAME)"
        )
    return seen[key][0]


@META_ARCH_REGISTRY.register()
class PercepSemanticSegmentor(SemanticSegmentor):
    """
    :class:`SemanticSegmentor` plus ``loss_sem_seg_percep`` in training (see the module
    docstring). ``batched_inputs`` are the parent's: dataset dicts with ``image`` (C, H, W) in
    ``INPUT.FORMAT``, ``sem_seg`` (H, W) long labels in training, optional ``height`` / ``width``.
    """

    @configurable
    def __init__(
        self,
        *,
        perceptual_loss: PerceptualLoss,
        target: str = "gt",
        resolution: str = "label",
        temperature: float = 1.0,
        teacher: Optional[nn.Module] = None,
        **kwargs,
    ):
        """
        Args:
            perceptual_loss: the weighted perceptual loss on ``(N, K, ., .)`` class maps.
            target: "gt" (one-hot labels) or "teacher" (soft labels of ``teacher``).
            resolution: "output" (the head's logits size) or "label" (the padded label size).
            temperature: T of the teacher's ``softmax(z_t / T)``.
            teacher: with target "teacher": a parameter-free module holding a frozen segmentor,
                called as ``(images (N, 3, H, W))`` -> ``(N, K, h_t, w_t)`` logits (see
                :class:`~.teacher.PercepSemSegTeacher`); not in the ``state_dict``.
            kwargs: arguments of :class:`SemanticSegmentor` (backbone, sem_seg_head, pixel_mean,
                pixel_std).
        """
        super().__init__(**kwargs)
        if target not in TARGETS:
            raise ValueError(
                f"MODEL.SEM_SEG_PERCEPTUAL.TARGET must be one of {TARGETS}, got {target!r}"
            )
        if resolution not in RESOLUTIONS:
            raise ValueError(
                f"MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION must be one of {RESOLUTIONS}, got "
                f"{resolution!r}"
            )
        if not temperature > 0:
            raise ValueError(f"MODEL.SEM_SEG_PERCEPTUAL.TEMPERATURE must be > 0, got {temperature}")
        if target == "teacher" and teacher is None:
            raise ValueError("MODEL.SEM_SEG_PERCEPTUAL.TARGET 'teacher' needs a teacher module")
        head = self.sem_seg_head
        if not isinstance(getattr(head, "predictor", None), nn.Module):
            raise ValueError(
                f"PercepSemanticSegmentor needs a head with a 'predictor' (its 1x1 classifier "
                f"giving the logits); {type(head).__name__} (MODEL.SEM_SEG_HEAD.NAME) has none"
            )
        for attr in ("ignore_value", "common_stride"):
            if not hasattr(head, attr):
                raise ValueError(
                    f"PercepSemanticSegmentor needs a head with '{attr}'; "
                    f"{type(head).__name__} (MODEL.SEM_SEG_HEAD.NAME) has none"
                )
        self.perceptual_loss = perceptual_loss
        self.target = target
        self.resolution = resolution
        self.temperature = temperature
        self.teacher = teacher  # parameter-free: its model is held outside the module tree

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        ret = super().from_config(cfg)
        pc = cfg.MODEL.SEM_SEG_PERCEPTUAL
        ret.update(
            {
                "perceptual_loss": PerceptualLoss(
                    cfg, in_channels=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
                ),
                "target": pc.TARGET,
                "resolution": pc.RESOLUTION,
                "temperature": pc.TEMPERATURE,
                "teacher": build_sem_seg_target_source(cfg),
            }
        )
        return ret

    def forward(self, batched_inputs: List[Dict]):
        """
        Returns:
            training: the head's losses and ``loss_sem_seg_percep``; inference: the parent's
            ``list[dict]`` with ``"sem_seg"`` (K, height, width) logits.
        """
        if not self.training:
            return super().forward(batched_inputs)
        if "sem_seg" not in batched_inputs[0]:
            raise ValueError("PercepSemanticSegmentor needs 'sem_seg' labels in training")
        with capture_head_io(self) as seen:
            losses = super().forward(batched_inputs)
        head = self.sem_seg_head
        images = _single(seen, "images", head)
        logits = _single(seen, "logits", head)
        targets = _single(seen, "targets", head)
        losses["loss_sem_seg_percep"] = self.perceptual_term(images, logits, targets)
        return losses

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """
        This model's logits at its head's output stride (the public method a teacher uses).

        Args:
            images: ``(N, 3, H, W)`` normalised, padded batch (this model's pixel normalisation);
                padded with zeros here to the backbone's size divisibility if needed.
        Returns:
            ``(N, K, ceil(H / s), ceil(W / s))`` logits, s = the head's ``common_stride``; no
            graph. Run in the model's current mode (a frozen teacher is in eval mode).
        """
        h, w = images.shape[-2:]
        div = self.backbone.size_divisibility
        if div > 1 and (h % div or w % div):
            images = F.pad(images, (0, -w % div, 0, -h % div))
        features = self.backbone(images)
        head = self.sem_seg_head
        with capture_head_io(self) as seen:
            head(features)
        logits = _single(seen, "logits", head)
        s = head.common_stride
        return logits[..., : -(-h // s), : -(-w // s)]

    def perceptual_term(self, images: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        """
        Args:
            images: ``(N, 3, H, W)`` the normalised, padded batch (the teacher's input).
            logits: ``(N, K, h, w)`` the student head's logits (with their graph).
            labels: ``(N, H, W)`` padded labels (``ignore_value`` at ignore and padding pixels).
        Returns:
            ``lambda`` * the perceptual loss between the student's softmax and its target, both
            zero at ignore pixels, at ``resolution`` (a scalar).
        """
        head = self.sem_seg_head
        num_classes = logits.shape[1]
        if self.resolution == "label":
            size = tuple(labels.shape[-2:])
            logits = upsample_logits(logits, size)  # (N, K, H, W)
        else:
            size = tuple(logits.shape[-2:])
            labels = sample_labels(labels, size)  # (N, h, w)
        self.perceptual_loss.check_input_size(
            size,
            f"loss_sem_seg_percep: the class maps (MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION "
            f"{self.resolution!r}, head output stride {head.common_stride}; larger images "
            "(INPUT.CROP.SIZE / MIN_SIZE_TRAIN) or RESOLUTION 'label' help)",
        )
        valid = labels != head.ignore_value  # (N, h, w) or (N, H, W)
        bad = valid & ((labels < 0) | (labels >= num_classes))
        if bad.any():
            raise ValueError(
                f"Labels {sorted(set(labels[bad].tolist()))[:5]} are outside [0, {num_classes}) "
                f"(MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes}) and are not the ignore value "
                f"(MODEL.SEM_SEG_HEAD.IGNORE_VALUE {head.ignore_value})"
            )
        valid = valid[:, None].float()  # (N, 1, ., .)
        probs = F.softmax(logits.float(), dim=1) * valid
        if self.target == "gt":
            # scattered straight into (N, K, ., .) float: no int64 (N, ., ., K) one-hot and no
            # permuted copy (at ADE20K scale, 16 x 150 x 512 x 512, that intermediate is 5 GB)
            index = torch.where(valid[:, 0].bool(), labels, 0)[:, None]  # (N, 1, ., .)
            target = probs.new_zeros(probs.shape).scatter_(1, index, valid)
        else:
            teacher_logits = upsample_logits(self.teacher(images), size)
            target = F.softmax(teacher_logits / self.temperature, dim=1) * valid
        return self.perceptual_loss(probs, target)
