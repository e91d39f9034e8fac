"""The generic perceptual loss: MSE between loss-network embeddings of a prediction and its target.

Normalisation (explicit, paper eq. 1 averaged over instances): for each extraction point ``p``,
the squared distance between the embeddings of one instance is divided by ``C_p * H_p * W_p``
(a mean over the embedding's elements), then averaged over the ``N`` instances; the points are
combined as ``sum_p w_p * loss_p``. Because every instance of a batch has the same size this equals
``F.mse_loss(f_p(pred), f_p(target))`` per point. With a mean the value does not scale with the
resolution or the embedding width, so ``LOSS_WEIGHT`` = 0.1 means the same for any input size.

Dimensions: ``N`` inputs, ``C`` channels, ``H, W`` size; the loss network's points are
``(N, C_p, H_p, W_p)``.

Memory: :func:`perceptual_loss` runs the inputs in chunks of ``chunk_size``. For each chunk it
runs the target under ``no_grad``, runs the prediction with autograd, and immediately
back-propagates that chunk's loss to the chunk of ``pred`` (``torch.autograd.grad``), keeping only
``d loss / d pred`` (the size of ``pred``). The activations of one chunk are freed before the
next, so peak memory is O(chunk_size), not O(N), and the work is that of the naive loss (two
forwards and one backward): no recomputation. The backward of the returned scalar is then a
multiplication by the stored gradient. If no gradient is wanted (``pred`` does not require grad,
or autograd is disabled), nothing is back-propagated.
"""
import contextlib
import functools
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from torch import Tensor, nn

from ..frozen import FrozenModule
from .loss_network import PercepLossNetwork, build_loss_network

__all__ = [
    "PRECISIONS",
    "PerceptualLoss",
    "crop_to_support",
    "naive_perceptual_loss",
    "perceptual_loss",
]

PRECISIONS: Dict[str, Optional[torch.dtype]] = {
    "fp32": None,
    "tf32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision name -> autocast dtype inside the loss (None: fp32 tensors; "fp32" disables TF32,
"tf32" enables it for convolutions and matmuls)."""


@contextlib.contextmanager
def _precision(device_type: str, precision: str) -> Iterator[None]:
    """fp32: autocast off and TF32 off (late in training f(pred) - f(target) cancels, and TF32's
    10-bit mantissa loses the gradient direction). tf32: autocast off, TF32 on (opt-in; on
    Ampere/Hopper GPUs about 4x faster than fp32). bf16/fp16: autocast to that dtype.
    Note: the TF32 switches are process-wide; they are restored on exit."""
    dtype = PRECISIONS[precision]
    if dtype is not None:
        with torch.autocast(device_type, dtype=dtype):
            yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _embedding_loss(
    feats_pred: Dict[str, Tensor], feats_target: Dict[str, Tensor], net: PercepLossNetwork, n: int
) -> Tensor:
    """sum_p w_p * sum((f_p(pred) - f_p(target))^2) / (n * C_p * H_p * W_p), in fp32.
    With ``n`` the size of the whole batch, summing this over chunks gives the batch mean."""
    loss = None
    for point, weight in zip(net.out_points, net.point_weights):
        diff = feats_pred[point].float() - feats_target[point].float()  # (n_chunk, C_p, H_p, W_p)
        term = diff.pow(2).sum() * (weight / (n * diff[0].numel()))
        loss = term if loss is None else loss + term
    return loss


def _prepare(x: Tensor, precision: str, channels_last: bool) -> Tensor:
    if PRECISIONS[precision] is None and x.dtype != torch.float32:
        x = x.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class _ChunkedPerceptualLoss(torch.autograd.Function):
    """Loss and d loss / d pred computed chunk by chunk in forward; see the module docstring."""

    @staticmethod
    def forward(
        ctx,
        pred: Tensor,
        target: Tensor,
        net: PercepLossNetwork,
        chunk_size: int,
        precision: str,
        channels_last: bool,
        compute_grad: bool,
    ) -> Tensor:
        n = pred.shape[0]
        step = n if chunk_size <= 0 else chunk_size
        grad = torch.empty_like(pred) if compute_grad else None  # (N, C, H, W)
        total = pred.new_zeros((), dtype=torch.float32)
        with _precision(pred.device.type, precision):
            for start in range(0, n, step):
                end = min(start + step, n)
                with torch.no_grad():
                    feats_t = net(_prepare(target[start:end], precision, channels_last))
                p = _prepare(pred[start:end].detach(), precision, channels_last)
                with torch.set_grad_enabled(compute_grad):
                    p.requires_grad_(compute_grad)
                    loss = _embedding_loss(net(p), feats_t, net, n)
                    if compute_grad:
                        (g,) = torch.autograd.grad(loss, p)
                        grad[start:end].copy_(g)
                total += loss.detach()
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None, None, None, None, None


def _check_inputs(pred: Tensor, target: Tensor, net: nn.Module, precision: str) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"perceptual_loss expects pred and target of the same shape (N, C, H, W); got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}."
        )
    if precision not in PRECISIONS:
        raise ValueError(
            f"Unknown precision {precision!r} (MODEL.PERCEPTUAL_LOSS.PRECISION); "
            f"expected one of {list(PRECISIONS)}."
        )
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"The loss network must be frozen, but these parameters require grad: {trainable[:5]}."
        )


def perceptual_loss(
    pred: Tensor,
    target: Tensor,
    net: PercepLossNetwork,
    *,
    chunk_size: int = 8,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Tensor:
    """Generic perceptual loss with memory bounded by ``chunk_size``.

    Args:
        pred: (N, C, H, W) predictions (e.g. mask probabilities), C = ``net.in_channels``.
        target: (N, C, H, W) targets; no gradient flows to them.
        net: a frozen loss network returning ``{point: (N, C_p, H_p, W_p)}``.
        chunk_size: inputs per chunk (<= 0: the whole batch at once).
        precision: "fp32" (default; TF32 disabled), or "bf16" / "fp16" autocast (opt-in: low
            precision loses the gradient direction once pred is close to target).
        channels_last: run the net in channels_last memory format (converts the net's 4-D
            weights in place on first use).

    Returns:
        scalar ``sum_p w_p * mean((f_p(pred) - f_p(target))^2)`` (fp32); for N = 0 a zero that
        is connected to ``pred``'s graph.
    """
    _check_inputs(pred, target, net, precision)
    if pred.shape[0] == 0:
        return pred.sum().float() * 0.0
    if channels_last:
        weight = next(p for p in net.parameters() if p.dim() == 4)
        if not weight.is_contiguous(memory_format=torch.channels_last):
            net.to(memory_format=torch.channels_last)
    compute_grad = torch.is_grad_enabled() and pred.requires_grad
    return _ChunkedPerceptualLoss.apply(
        pred, target.detach(), net, int(chunk_size), precision, bool(channels_last), compute_grad
    )


def naive_perceptual_loss(
    pred: Tensor, target: Tensor, net: PercepLossNetwork, precision: str = "fp32"
) -> Tensor:
    """Reference: the same loss as :func:`perceptual_loss`, with plain autograd on the whole batch
    (memory grows with N), under the same ``precision`` rules; ``pred``, ``target``: (N, C, H, W)."""
    with _precision(pred.device.type, precision):
        feats_p = net(_prepare(pred, precision, False))
        with torch.no_grad():
            feats_t = net(_prepare(target, precision, False))
        loss = pred.new_zeros((), dtype=torch.float32)
        for point, weight in zip(net.out_points, net.point_weights):
            loss = loss + weight * F.mse_loss(feats_p[point].float(), feats_t[point].float())
    return loss



def crop_to_support(
    pred: Tensor,
    target: Tensor,
    *,
    thresh: float = 0.05,
    margin: int = 32,
    align: int = 32,
    bucket_size: int = 8,
) -> List[Tuple[Tensor, Tensor, float]]:
    """
    Cut every input to the box of its support (pixels where any channel of ``pred`` or ``target``
    exceeds ``thresh``) grown by ``margin``, with corners snapped outwards to multiples of
    ``align`` (and clipped to the input), and group the crops by size into buckets of
    ``bucket_size``, zero-padded to the bucket's largest crop. A crop that covers the whole input
    gives exactly the full loss; since the random loss networks map 0 to 0, zero padding adds
    nothing, so the result is exact up to what the margin cuts off.

    Args:
        pred, target: ``(N, C, H, W)`` non-negative maps, e.g. probabilities (gradients flow
            through ``pred``'s crops).
    Returns:
        list of ``(pred_b, target_b, scale_b)`` with ``(N_b, C, hb, wb)`` crops and
        ``scale_b = N_b / N * (hb // align * wb // align) / (H // align * W // align)``: the
        factor that turns the bucket's mean loss into its share of the full-input mean loss.
        An input with no support gets one ``align`` x ``align`` cell at its prediction's peak.
    """
    n, _, h, w = pred.shape
    support = ((pred.detach() > thresh) | (target > thresh)).any(dim=1)  # (N, H, W)
    rows, cols = support.any(dim=2), support.any(dim=1)  # (N, H), (N, W)
    ar_h = torch.arange(h, device=pred.device)
    ar_w = torch.arange(w, device=pred.device)
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    y1 = torch.where(rows, ar_h + 1, 0).max(dim=1).values
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    x1 = torch.where(cols, ar_w + 1, 0).max(dim=1).values
    peak = pred.detach().amax(dim=1).flatten(1).argmax(dim=1)  # (N,)
    empty = y1 <= y0
    y0 = torch.where(empty, peak // w, y0)
    y1 = torch.where(empty, peak // w + 1, y1)
    x0 = torch.where(empty, peak % w, x0)
    x1 = torch.where(empty, peak % w + 1, x1)
    # grow by the margin, snap outwards to the pooling grid (origin stays on the full input's grid)
    y0 = torch.div((y0 - margin).clamp(min=0), align, rounding_mode="floor") * align
    x0 = torch.div((x0 - margin).clamp(min=0), align, rounding_mode="floor") * align
    y1 = (-torch.div(-(y1 + margin), align, rounding_mode="floor") * align).clamp(max=h)
    x1 = (-torch.div(-(x1 + margin), align, rounding_mode="floor") * align).clamp(max=w)
    boxes = torch.stack([y0, y1, x0, x1], dim=1).tolist()  # one host sync for all crops

    full_cells = max(h // align, 1) * max(w // align, 1)
    order = sorted(
        range(n), key=lambda i: (boxes[i][1] - boxes[i][0]) * (boxes[i][3] - boxes[i][2])
    )
    step = n if bucket_size <= 0 else bucket_size
    buckets = []
    for start in range(0, n, step):
        ids = order[start : start + step]
        hb = max(boxes[i][1] - boxes[i][0] for i in ids)
        wb = max(boxes[i][3] - boxes[i][2] for i in ids)
        crops_p, crops_t = [], []
        for i in ids:
            by0, by1, bx0, bx1 = boxes[i]
            pad = (0, wb - (bx1 - bx0), 0, hb - (by1 - by0))
            crops_p.append(F.pad(pred[i, :, by0:by1, bx0:bx1], pad))
            crops_t.append(F.pad(target[i, :, by0:by1, bx0:bx1], pad))
        scale = len(ids) / n * (hb // align) * (wb // align) / full_cells
        buckets.append((torch.stack(crops_p), torch.stack(crops_t), scale))
    return buckets


class PerceptualLoss(nn.Module):
    """
    ``loss_weight * perceptual_loss(pred, target, loss_network)``: the single entry point every
    task holds (the way DeepLab's head holds its loss object).

    The loss network follows the policy of :mod:`percep_det.modeling.frozen`: it is held by a
    :class:`FrozenModule` outside the module tree, so this module has no parameters and no
    ``state_dict`` entries (a model trained with it loads into the plain model); it is built on the
    first call (never in inference) from ``MODEL.PERCEPTUAL_LOSS`` and its seed, identically on
    every rank and restart, and moved to the input's device. The trainer records its
    :meth:`fingerprint` in every checkpoint.

    Options that cut the cost (faithful default: off): ``max_inputs`` evaluates a random subset
    of the inputs (:meth:`select_inputs`); ``crop`` evaluates each input on a crop around its
    support (:func:`crop_to_support`).
    """

    @configurable
    def __init__(
        self,
        *,
        loss_network: Union[PercepLossNetwork, Callable[[], PercepLossNetwork]],
        loss_weight: float = 0.1,
        chunk_size: int = 8,
        precision: str = "fp32",
        channels_last: bool = False,
        max_inputs: int = -1,
        crop: bool = False,
        crop_thresh: float = 0.05,
        crop_margin: int = 32,
        crop_align: int = 32,
    ):
        """
        Args:
            loss_network: frozen loss network (see :func:`build_loss_network`), or a function
                building it (called on the first use).
            loss_weight: lambda, the weight of this loss in the total loss (paper: 0.1).
            chunk_size, precision, channels_last: see :func:`perceptual_loss`.
            max_inputs: at most this many (random) inputs per call; -1 = all.
            crop, crop_thresh, crop_margin, crop_align: see :func:`crop_to_support`.
        """
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision {precision!r} (MODEL.PERCEPTUAL_LOSS.PRECISION); "
                f"expected one of {list(PRECISIONS)}."
            )
        if max_inputs != -1 and max_inputs < 1:
            raise ValueError(f"The input cap must be -1 (all) or >= 1, got {max_inputs}.")
        if crop_align < 1 or crop_margin < 0:
            raise ValueError(
                f"Crop alignment must be >= 1 and margin >= 0, got {crop_align} and {crop_margin}."
            )
        self._loss_network = FrozenModule(loss_network)
        self._fingerprint: Optional[Dict[str, object]] = None
        self.loss_weight = loss_weight
        self.chunk_size = chunk_size
        self.precision = precision
        self.channels_last = channels_last
        self.max_inputs = max_inputs
        self.crop = crop
        self.crop_thresh = crop_thresh
        self.crop_margin = crop_margin
        self.crop_align = crop_align

    @classmethod
    def from_config(cls, cfg: CfgNode, *, in_channels: int, **options) -> dict:
        """
        Args:
            cfg: a config with ``MODEL.PERCEPTUAL_LOSS``.
            in_channels: channels of the task's output (C): 1 for masks and depth, the number of
                classes for class maps. Overrides ``MODEL.PERCEPTUAL_LOSS.IN_CHANNELS``.
            options: task-level settings of the other arguments (e.g. ``max_inputs``, ``crop``
                from the task's own config keys).
        """
        lc = cfg.MODEL.PERCEPTUAL_LOSS
        net_cfg = cfg.clone()
        net_cfg.defrost()
        net_cfg.MODEL.PERCEPTUAL_LOSS.IN_CHANNELS = int(in_channels)
        ret = {
            "loss_network": functools.partial(build_loss_network, net_cfg),
            "loss_weight": lc.LOSS_WEIGHT,
            "chunk_size": lc.CHUNK_SIZE,
            "precision": lc.PRECISION,
            "channels_last": lc.CHANNELS_LAST,
        }
        ret.update(options)
        return ret

    def loss_network(self, device: Optional[torch.device] = None) -> PercepLossNetwork:
        """The frozen loss network (built on the first call), on ``device`` if given."""
        return self._loss_network.get(device)

    def fingerprint(self) -> Dict[str, object]:
        """The loss network's spec and weight hash (builds the network if needed; computed once:
        the network is frozen)."""
        if self._fingerprint is None:
            self._fingerprint = self.loss_network().fingerprint()
        return self._fingerprint

    def check_input_size(self, size: Tuple[int, int], source: str) -> None:
        """
        Raise ``ValueError`` when the loss network needs larger inputs than ``size`` (H, W).

        Args:
            source: where the consumer's inputs get that size, in its config keys (e.g. "the ROI
                masks (2 x MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION)"); the message adds the loss
                network's own keys (BLOCKS, OUT_POINTS).
        """
        net = self.loss_network()
        try:
            net.check_input_size(size)
        except ValueError as e:
            raise ValueError(
                f"{source} are {size[0]} x {size[1]} px, but the perceptual loss network "
                f"(MODEL.PERCEPTUAL_LOSS.BLOCKS {net.spec.get('BLOCKS')}, OUT_POINTS "
                f"{list(net.out_points)}) needs {net.min_input_size} px per side. ({e})"
            ) from None

    def select_inputs(self, num_inputs: int, device: torch.device) -> Optional[Tensor]:
        """Indices ``(k,)`` of a random subset of at most ``max_inputs`` inputs, or None for all.
        A consumer whose targets are costly (a teacher) selects first and passes only those."""
        if self.max_inputs == -1 or num_inputs <= self.max_inputs:
            return None
        return torch.randperm(num_inputs, device=device)[: self.max_inputs]

    def unweighted(self, pred: Tensor, target: Tensor) -> Tensor:
        """The mean perceptual loss of ``(N, C, H, W)`` inputs, before ``loss_weight``, on crops
        when ``crop`` is on, on a random subset when N exceeds ``max_inputs``."""
        inds = self.select_inputs(len(pred), pred.device)
        if inds is not None:
            pred, target = pred[inds], target[inds]
        net = self.loss_network(pred.device)
        kwargs = {
            "chunk_size": self.chunk_size,
            "precision": self.precision,
            "channels_last": self.channels_last,
        }
        if not self.crop or len(pred) == 0:
            return perceptual_loss(pred, target, net, **kwargs)
        buckets = crop_to_support(
            pred,
            target,
            thresh=self.crop_thresh,
            margin=self.crop_margin,
            align=self.crop_align,
            bucket_size=self.chunk_size,
        )
        return sum(scale * perceptual_loss(p, t, net, **kwargs) for p, t, scale in buckets)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target: ``(N, C, H, W)`` -> ``loss_weight`` * :meth:`unweighted`; a zero in
        ``pred``'s graph when N = 0."""
        return self.loss_weight * self.unweighted(pred, target)

    def extra_repr(self) -> str:
        return (
            f"loss_weight={self.loss_weight}, chunk_size={self.chunk_size}, "
            f"precision={self.precision}, max_inputs={self.max_inputs}, crop={self.crop}"
        )
