"""PSPNet's head (Zhao et al., CVPR 2017) for detectron2's ``SemanticSegmentor``.

Pyramid pooling module on one backbone feature ``(N, C, h, w)`` (e.g. res5 at output stride 8):
for each bin size b in ``PSP_BINS`` (1, 2, 3, 6): adaptive average pooling to b x b, 1x1 conv to
C / len(bins) channels (no bias), norm, ReLU, bilinear upsampling to h x w; the C input channels
and the bins' are concatenated, then 3x3 conv to ``CONVS_DIM``, norm, ReLU, Dropout2d, 1x1
classifier (``predictor``) to K classes. In training an auxiliary head on ``AUX_IN_FEATURE``
(res4: 3x3 conv, norm, ReLU, Dropout2d, 1x1) adds ``AUX_LOSS_WEIGHT`` (0.4) x its cross-entropy;
it is not used at test time (its weights are still in the state_dict).

The interface is that of detectron2's ``SemSegFPNHead``: ``forward(features, targets)`` ->
``(results, losses)``, ``layers(features)`` -> ``(N, K, h, w)`` logits at ``common_stride``,
``losses(predictions, targets)``, ``ignore_value``, ``common_stride``, ``predictor``.

Shape shorthand: N images, K classes, H x W the padded batch (labels), h x w = H / s x W / s with
s = ``common_stride``.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

__all__ = ["PercepPSPHead", "upsample_logits"]


def upsample_logits(logits: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(N, K, h, w)`` -> ``(N, K, *size)`` fp32 logits, bilinear (``align_corners=False``, as
    detectron2's heads); identity when the size is already ``size``."""
    logits = logits.float()  # https://github.com/pytorch/pytorch/issues/48163
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _conv_norm_relu(
    in_channels: int, out_channels: int, kernel_size: int, norm: Union[str, None]
) -> Conv2d:
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    weight_init.c2_msra_fill(conv)
    return conv


def _init_classifier(conv: nn.Conv2d) -> None:
    # small initial logits (N(0, 0.01), as mmsegmentation's decode heads): the first losses are
    # near log K instead of exploding through an MSRA-initialised classifier
    nn.init.normal_(conv.weight, 0, 0.01)
    nn.init.constant_(conv.bias, 0)


class _PyramidPooling(nn.Module):
    """The bins of PSPNet: ``(N, C, h, w)`` -> ``(N, C + len(bins) * C_b, h, w)`` (the input and
    each bin's pooled, projected and upsampled map, concatenated)."""

    def __init__(self, in_channels: int, bins: Sequence[int], channels: int, norm: str):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_norm_relu(in_channels, channels, 1, norm))
            for b in bins
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        outs = [x]
        for stage in self.stages:
            pooled = stage(x)  # (N, C_b, b, b)
            outs.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=False))
        return torch.cat(outs, dim=1)


@SEM_SEG_HEADS_REGISTRY.register()
class PercepPSPHead(nn.Module):
    """
    PSPNet's pyramid pooling head with its auxiliary head (see the module docstring).
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        conv_dims: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        norm: Optional[str] = "BN",
        aux_in_feature: str = "",
        aux_loss_weight: float = 0.4,
        loss_weight: float = 1.0,
        ignore_value: int = -1,
    ):
        """
        Args:
            input_shape: shapes of the backbone features (must contain ``in_feature`` and
                ``aux_in_feature``).
            in_feature: the feature of the pyramid pooling module (e.g. "res5").
            num_classes: K.
            conv_dims: channels of the 3x3 conv after the pyramid (and of the auxiliary head's).
            bins: output sizes of the pooling bins; each bin has C / len(bins) channels.
            dropout: Dropout2d probability before both classifiers.
            norm: norm of every conv (a detectron2 ``get_norm`` name: "BN", "SyncBN", "GN", "").
            aux_in_feature: feature of the auxiliary head (e.g. "res4"); "" for none.
            aux_loss_weight: weight of the auxiliary head's cross-entropy.
            loss_weight: weight of the main cross-entropy.
            ignore_value: label ignored by the losses.
        """
        super().__init__()
        if in_feature not in input_shape:
            raise ValueError(
                f"PercepPSPHead: MODEL.SEM_SEG_HEAD.IN_FEATURES[0] {in_feature!r} is not a "
                f"backbone output ({sorted(input_shape)}); check MODEL.RESNETS.OUT_FEATURES"
            )
        if aux_in_feature and aux_in_feature not in input_shape:
            raise ValueError(
                f"PercepPSPHead: MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE {aux_in_feature!r} is not a "
                f"backbone output ({sorted(input_shape)}); check MODEL.RESNETS.OUT_FEATURES"
            )
        if not bins or min(bins) < 1:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.PSP_BINS must be positive sizes, got {bins}")
        in_channels = input_shape[in_feature].channels
        if in_channels % len(bins):
            raise ValueError(
                f"PercepPSPHead: the {in_channels} channels of {in_feature} must be divisible by "
                f"the number of bins (MODEL.SEM_SEG_HEAD.PSP_BINS {list(bins)})"
            )
        self.in_feature = in_feature
        self.aux_in_feature = aux_in_feature
        self.ignore_value = ignore_value
        self.common_stride = input_shape[in_feature].stride
        self.loss_weight = loss_weight
        self.aux_loss_weight = aux_loss_weight

        self.ppm = _PyramidPooling(in_channels, bins, in_channels // len(bins), norm)
        self.bottleneck = _conv_norm_relu(2 * in_channels, conv_dims, 3, norm)
        self.dropout = nn.Dropout2d(dropout)
        self.predictor = Conv2d(conv_dims, num_classes, kernel_size=1)
        _init_classifier(self.predictor)
        if aux_in_feature:
            self.aux_head = nn.Sequential(
                _conv_norm_relu(input_shape[aux_in_feature].channels, conv_dims, 3, norm),
                nn.Dropout2d(dropout),
                Conv2d(conv_dims, num_classes, kernel_size=1),
            )
            _init_classifier(self.aux_head[-1])
        else:
            self.aux_head = None

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        hc = cfg.MODEL.SEM_SEG_HEAD
        if len(hc.IN_FEATURES) != 1:
            raise ValueError(
                "PercepPSPHead takes one feature: MODEL.SEM_SEG_HEAD.IN_FEATURES must have one "
                f"entry (e.g. ['res5']), got {list(hc.IN_FEATURES)}"
            )
        return {
            "input_shape": input_shape,
            "in_feature": hc.IN_FEATURES[0],
            "num_classes": hc.NUM_CLASSES,
            "conv_dims": hc.CONVS_DIM,
            "bins": tuple(hc.PSP_BINS),
            "dropout": hc.PSP_DROPOUT,
            "norm": hc.NORM,
            "aux_in_feature": hc.AUX_IN_FEATURE,
            "aux_loss_weight": hc.AUX_LOSS_WEIGHT,
            "loss_weight": hc.LOSS_WEIGHT,
            "ignore_value": hc.IGNORE_VALUE,
        }

    def forward(
        self, features: Dict[str, Tensor], targets: Optional[Tensor] = None
    ) -> Tuple[Optional[Tensor], Dict[str, Tensor]]:
        """
        Args:
            features: backbone features by name.
            targets: training: ``(N, H, W)`` long labels of the padded batch.
        Returns:
            training: ``(None, {"loss_sem_seg", "loss_sem_seg_aux"})``; inference:
            ``((N, K, h * s, w * s) logits, {})``.
        """
        x = self.layers(features)
        if not self.training:
            size = (x.shape[-2] * self.common_stride, x.shape[-1] * self.common_stride)
            return upsample_logits(x, size), {}
        losses = self.losses(x, targets)
        if self.aux_head is not None:
            aux = self.aux_head(features[self.aux_in_feature])  # (N, K, h', w')
            losses["loss_sem_seg_aux"] = self.aux_loss_weight * self._cross_entropy(aux, targets)
        return None, losses

    def layers(self, features: Dict[str, Tensor]) -> Tensor:
        """``(N, K, h, w)`` logits of the main head at ``common_stride``."""
        x = self.ppm(features[self.in_feature])
        return self.predictor(self.dropout(self.bottleneck(x)))

    def _cross_entropy(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = upsample_logits(logits, targets.shape[-2:])  # (N, K, H, W)
        return F.cross_entropy(logits, targets, reduction="mean", ignore_index=self.ignore_value)

    def losses(self, predictions: Tensor, targets: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            predictions: ``(N, K, h, w)`` logits (from :meth:`layers`).
            targets: ``(N, H, W)`` labels; the logits are upsampled to their size.
        Returns:
            ``{"loss_sem_seg": loss_weight * mean cross-entropy over non-ignored pixels}``.
        """
        return {"loss_sem_seg": self.loss_weight * self._cross_entropy(predictions, targets)}
