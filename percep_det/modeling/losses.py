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
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from torch import Tensor, nn

from .loss_network import PercepLossNetwork, build_loss_network

__all__ = ["PRECISIONS", "PerceptualLoss", "naive_perceptual_loss", "perceptual_loss"]

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


class PerceptualLoss(nn.Module):
    """``loss_weight * perceptual_loss(pred, target, loss_network)`` as a module holding its
    frozen loss network (so the network's weights live in the parent model's state_dict)."""

    @configurable
    def __init__(
        self,
        *,
        loss_network: PercepLossNetwork,
        loss_weight: float = 0.1,
        chunk_size: int = 8,
        precision: str = "fp32",
        channels_last: bool = False,
    ):
        """
        Args:
            loss_network: frozen loss network (see :func:`build_loss_network`).
            loss_weight: lambda, the weight of this loss in the total loss (paper: 0.1).
            chunk_size, precision, channels_last: see :func:`perceptual_loss`.
        """
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision {precision!r} (MODEL.PERCEPTUAL_LOSS.PRECISION); "
                f"expected one of {list(PRECISIONS)}."
            )
        self.loss_network = loss_network
        self.loss_weight = loss_weight
        self.chunk_size = chunk_size
        self.precision = precision
        self.channels_last = channels_last

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        lc = cfg.MODEL.PERCEPTUAL_LOSS
        return {
            "loss_network": build_loss_network(cfg),
            "loss_weight": lc.LOSS_WEIGHT,
            "chunk_size": lc.CHUNK_SIZE,
            "precision": lc.PRECISION,
            "channels_last": lc.CHANNELS_LAST,
        }

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target: (N, C, H, W) -> weighted scalar loss."""
        loss = perceptual_loss(
            pred,
            target,
            self.loss_network,
            chunk_size=self.chunk_size,
            precision=self.precision,
            channels_last=self.channels_last,
        )
        return self.loss_weight * loss
