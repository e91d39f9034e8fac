"""Frozen loss networks for the generic perceptual loss (Liu et al., CVPR 2021).

A loss network maps a dense prediction or its target, ``(N, C, H, W)``, to embeddings at one or
more named extraction points, ``{point: (N, C_p, H_p, W_p)}``. Two families are provided:

* :class:`PercepVGGLossNetwork`: the VGG-like net of the paper, specified by convs per block,
  widths and kernel size (Tables 2/3), randomly initialised with one of the schemes of Table 4.
* :class:`PercepZooLossNetwork`: torchvision architectures (the zoo of Pihlgren et al. plus
  MobileNetV2), each with 4 named extraction points defined once in :data:`LOSS_NET_ZOO`; random
  weights, or pretrained weights read from a local file behind a fixed 1x1 projection to 3 channels.

Both are always frozen and always in eval mode. Their weights are derived from ``seed`` with a
private ``torch.Generator`` (the global RNG is never touched), so every process and every restart
builds the same network. A consumer holds the network outside its module tree
(:class:`~percep_det.modeling.perceptual.PerceptualLoss`); checkpoints pin it by its
:meth:`PercepLossNetwork.fingerprint` (see :mod:`.fingerprint`).

Dimensions: ``N`` inputs, ``C`` input channels, ``H, W`` input size, ``C_p, H_p, W_p`` the size
of the embedding at extraction point ``p``.
"""
import hashlib
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torchvision
from detectron2.config import CfgNode, configurable
from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor

__all__ = [
    "INIT_SCHEMES",
    "LOSS_NET_ZOO",
    "PercepLossNetwork",
    "PercepVGGLossNetwork",
    "PercepZooLossNetwork",
    "build_loss_network",
    "init_weight_",
]


# --------------------------------------------------------------------------------------------
# Initialisation schemes (paper Table 4)
# --------------------------------------------------------------------------------------------
def _fans(weight: Tensor) -> Tuple[int, int]:
    """fan_in = k*k*c_in (per group), fan_out = k*k*c_out of a conv/linear weight."""
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _init_paper(w: Tensor, param: float, g: torch.Generator) -> None:
    # Sec. 3.2: zero-mean Gaussian, std sqrt(2 / n_l) with n_l = k^2 * c_in, keeps Var[e_l] fixed.
    w.normal_(0.0, math.sqrt(2.0 / _fans(w)[0]), generator=g)


def _init_xavier_normal(w: Tensor, param: float, g: torch.Generator) -> None:
    fan_in, fan_out = _fans(w)
    w.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=g)


def _init_normal(w: Tensor, param: float, g: torch.Generator) -> None:
    w.normal_(0.0, param, generator=g)  # N(0, sigma), sigma = INIT_PARAM


def _init_uniform(w: Tensor, param: float, g: torch.Generator) -> None:
    w.uniform_(-param, param, generator=g)  # U[-a, a], a = INIT_PARAM


INIT_SCHEMES: Dict[str, Callable[[Tensor, float, torch.Generator], None]] = {
    "paper": _init_paper,
    "xavier_normal": _init_xavier_normal,
    "normal": _init_normal,
    "uniform": _init_uniform,
}
"""Name -> ``fn(weight, init_param, generator)`` filling a conv/linear weight in place."""


@torch.no_grad()
def init_weight_(weight: Tensor, init: str, init_param: float, generator: torch.Generator) -> None:
    """Fill a conv/linear ``weight`` in place with scheme ``init`` (see :data:`INIT_SCHEMES`)."""
    if init not in INIT_SCHEMES:
        raise ValueError(
            f"Unknown loss-network init scheme {init!r} (MODEL.PERCEPTUAL_LOSS.INIT); "
            f"expected one of {sorted(INIT_SCHEMES)}."
        )
    INIT_SCHEMES[init](weight, init_param, generator)


def _make_generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _empty_conv(c_in: int, c_out: int, kernel_size: int, padding: int = 0) -> nn.Conv2d:
    """A bias-free conv with uninitialised weight: nn.Conv2d's own init would draw from the
    global RNG, which the loss network must leave untouched."""
    return nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=False, device="meta").to_empty(
        device="cpu"
    )


def _freeze_(module: nn.Module) -> None:
    """Turn every parameter and buffer of ``module`` into a frozen ``nn.Parameter``.

    Why frozen parameters rather than buffers: ``DistributedDataParallel(broadcast_buffers=True)``
    re-broadcasts *every* buffer (persistent or not) from rank 0 at every forward, which for a
    VGG16 loss net is ~15M floats per step for nothing. Parameters with ``requires_grad=False`` are
    broadcast once when DDP is constructed, are skipped by DDP's gradient reducer, are skipped by
    detectron2's ``get_default_optimizer_params`` (it filters on ``requires_grad``), and are still
    saved in ``state_dict`` under their usual names, so checkpoints pin them. BatchNorm running
    statistics therefore become frozen parameters too (the net is always in eval mode, so BN only
    reads them).
    """
    for sub in module.modules():
        for name in list(sub._buffers):
            buf = sub._buffers.pop(name)
            if buf is not None:
                sub.register_parameter(name, nn.Parameter(buf, requires_grad=False))
        for p in sub.parameters(recurse=False):
            p.requires_grad_(False)


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------
def _check_points(
    out_points: Sequence[str], point_weights: Optional[Sequence[float]], available: Sequence[str]
) -> Tuple[Tuple[str, ...], Tuple[float, ...]]:
    out_points = tuple(out_points)
    if len(out_points) == 0:
        raise ValueError("MODEL.PERCEPTUAL_LOSS.OUT_POINTS must name at least one point.")
    if len(set(out_points)) != len(out_points):
        raise ValueError(f"MODEL.PERCEPTUAL_LOSS.OUT_POINTS has duplicates: {out_points}.")
    unknown = [p for p in out_points if p not in available]
    if unknown:
        raise ValueError(
            f"Unknown extraction point(s) {unknown} (MODEL.PERCEPTUAL_LOSS.OUT_POINTS); "
            f"available: {list(available)}."
        )
    if point_weights is None or len(point_weights) == 0:
        point_weights = (1.0,) * len(out_points)
    if len(point_weights) != len(out_points):
        raise ValueError(
            f"MODEL.PERCEPTUAL_LOSS.POINT_WEIGHTS has {len(point_weights)} entries but OUT_POINTS "
            f"has {len(out_points)} ({out_points}); give one weight per point (or none = all 1)."
        )
    return out_points, tuple(float(w) for w in point_weights)


class PercepLossNetwork(nn.Module):
    """Base class of frozen loss networks.

    Subclasses set ``in_channels``, ``out_points`` (names, in order), ``point_weights`` (one per
    point), ``out_channels`` (point -> C_p) and implement ``_features``.

    ``forward(x)`` takes ``x`` of shape ``(N, in_channels, H, W)`` and returns
    ``{point: (N, C_p, H_p, W_p)}`` for every point in ``out_points``.
    """

    in_channels: int
    min_input_size: int  # total downsampling at the deepest point: smallest usable H and W
    out_points: Tuple[str, ...]
    point_weights: Tuple[float, ...]
    out_channels: Dict[str, int]
    spec: Dict[str, object]  # the settings that define the net, keyed by MODEL.PERCEPTUAL_LOSS key

    def fingerprint(self) -> Dict[str, object]:
        """``{"spec": ..., "sha256": ...}``: the settings that define this network (keys of
        ``MODEL.PERCEPTUAL_LOSS``) and a hash of its weights (names, shapes, dtypes, values, in
        ``state_dict`` order). Two networks with equal fingerprints compute the same function."""
        digest = hashlib.sha256()
        for name, tensor in self.state_dict().items():
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
            digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy())
        return {"spec": dict(self.spec), "sha256": digest.hexdigest()}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input (N, {self.in_channels}, H, W) "
                f"(MODEL.PERCEPTUAL_LOSS.IN_CHANNELS={self.in_channels}), got {tuple(x.shape)}."
            )
        self.check_input_size(tuple(x.shape[-2:]))
        return self._features(x)

    def check_input_size(self, size: Tuple[int, int]) -> None:
        """Raise ``ValueError`` if an input of ``size`` (H, W) is smaller than the network's total
        downsampling at its deepest extraction point (``min_input_size`` px per side)."""
        if min(size) < self.min_input_size:
            raise ValueError(
                f"Input of {tuple(size)} px is too small for this loss network "
                f"({self.spec.get('ARCH')}, deepest point {self.out_points[-1]!r}): it downsamples "
                f"by {self.min_input_size}, so it needs at least {self.min_input_size} px per side. "
                "Use fewer blocks (MODEL.PERCEPTUAL_LOSS.BLOCKS) or an earlier extraction point "
                "(MODEL.PERCEPTUAL_LOSS.OUT_POINTS)."
            )

    def _features(self, x: Tensor) -> Dict[str, Tensor]:
        raise NotImplementedError

    def train(self, mode: bool = True) -> "PercepLossNetwork":
        # The loss net is a fixed function: never switch BN/dropout to training behaviour, even
        # when a parent model calls .train().
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


# --------------------------------------------------------------------------------------------
# VGG family by spec (paper Tables 2-4)
# --------------------------------------------------------------------------------------------
class PercepVGGLossNetwork(PercepLossNetwork):
    """VGG-like random loss network: ``len(blocks)`` blocks of ``blocks[b]`` (conv k x k, ReLU)
    followed by a 2x2 max-pool; convs have no bias (the paper sets b = 0, which keeps the net
    positively homogeneous: f(a x) = a f(x) for a > 0).

    Layer (and extraction point) names: ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}`` (1-based);
    ``pool{b}`` is the output of block b, and the last pool is the paper's "final layer". Layers
    after the deepest extraction point are not built.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 1,
        blocks: Sequence[int] = (2, 2, 3, 3, 3),
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        kernel_size: int = 3,
        init: str = "paper",
        init_param: float = 0.01,
        seed: int = 0,
        out_points: Optional[Sequence[str]] = None,
        point_weights: Optional[Sequence[float]] = None,
    ):
        """
        Args:
            in_channels: channels of the task's output (C), e.g. 1 for masks or depth.
            blocks: convs per block, e.g. (2,2,3,3,3) = VGG16, (2,2,4,4,4) = VGG19.
            widths: output channels of each block's convs (same length as ``blocks``).
            kernel_size: odd conv kernel size (1, 3, 5, 7); padding is ``kernel_size // 2``.
            init: weight init scheme, a key of :data:`INIT_SCHEMES`.
            init_param: sigma of "normal" / a of "uniform"; unused by "paper", "xavier_normal".
            seed: seed of the private generator the weights are drawn from.
            out_points: extraction points; ``None`` = the final layer ``pool{len(blocks)}``.
            point_weights: weight of each point in the loss; ``None`` = all 1.
        """
        super().__init__()
        blocks, widths = tuple(int(b) for b in blocks), tuple(int(w) for w in widths)
        if len(blocks) == 0 or len(blocks) != len(widths) or min(blocks) < 1 or min(widths) < 1:
            raise ValueError(
                f"MODEL.PERCEPTUAL_LOSS.BLOCKS {blocks} and WIDTHS {widths} must be non-empty, "
                "positive and of the same length."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"MODEL.PERCEPTUAL_LOSS.KERNEL_SIZE must be odd, got {kernel_size}.")
        if in_channels < 1:
            raise ValueError(f"MODEL.PERCEPTUAL_LOSS.IN_CHANNELS must be >= 1, got {in_channels}.")

        names: List[str] = []
        for b, num_convs in enumerate(blocks, start=1):
            for i in range(1, num_convs + 1):
                names += [f"conv{b}_{i}", f"relu{b}_{i}"]
            names.append(f"pool{b}")
        if out_points is None or len(out_points) == 0:
            out_points = (f"pool{len(blocks)}",)
        self.out_points, self.point_weights = _check_points(out_points, point_weights, names)
        self.in_channels = in_channels

        # Build only up to the deepest extraction point; draw weights in layer order.
        last = max(names.index(p) for p in self.out_points)
        generator = _make_generator(seed)
        layers: Dict[str, nn.Module] = {}
        channels, c_in = {}, in_channels
        for name in names[: last + 1]:
            b = int(name[4:].split("_")[0])
            if name.startswith("conv"):
                conv = _empty_conv(c_in, widths[b - 1], kernel_size, padding=kernel_size // 2)
                init_weight_(conv.weight, init, init_param, generator)
                layers[name], c_in = conv, widths[b - 1]
            elif name.startswith("relu"):
                # In place, unless it would overwrite a conv output that is an extraction point.
                layers[name] = nn.ReLU(inplace=name.replace("relu", "conv") not in self.out_points)
            else:
                layers[name] = nn.MaxPool2d(2, 2)
            channels[name] = c_in
        self.layers = nn.Sequential()
        for name, layer in layers.items():
            self.layers.add_module(name, layer)
        self.out_channels = {p: channels[p] for p in self.out_points}
        self.spec = {
            "ARCH": "vgg",
            "IN_CHANNELS": in_channels,
            "BLOCKS": list(blocks),
            "WIDTHS": list(widths),
            "KERNEL_SIZE": kernel_size,
            "INIT": init,
            "INIT_PARAM": float(init_param),
            "SEED": int(seed),
            "OUT_POINTS": list(self.out_points),
            "POINT_WEIGHTS": list(self.point_weights),
        }
        self.min_input_size = 2 ** sum(n.startswith("pool") for n in names[: last + 1])
        _freeze_(self)
        self.train(False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        lc = cfg.MODEL.PERCEPTUAL_LOSS
        if lc.PRETRAINED_WEIGHTS:
            raise ValueError(
                "MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS is only supported for zoo architectures "
                f"(ARCH='vgg16', 'vgg19', ...), not for ARCH='vgg'; got {lc.PRETRAINED_WEIGHTS!r}."
            )
        return {
            "in_channels": lc.IN_CHANNELS,
            "blocks": tuple(lc.BLOCKS),
            "widths": tuple(lc.WIDTHS),
            "kernel_size": lc.KERNEL_SIZE,
            "init": lc.INIT,
            "init_param": lc.INIT_PARAM,
            "seed": lc.SEED,
            "out_points": tuple(lc.OUT_POINTS) or None,
            "point_weights": tuple(lc.POINT_WEIGHTS) or None,
        }

    def _features(self, x: Tensor) -> Dict[str, Tensor]:
        feats: Dict[str, Tensor] = {}
        for name, layer in self.layers.named_children():
            x = layer(x)
            if name in self.out_channels:
                feats[name] = x
        return {p: feats[p] for p in self.out_points}


# --------------------------------------------------------------------------------------------
# torchvision zoo (seed 002 + MobileNetV2)
# --------------------------------------------------------------------------------------------
LOSS_NET_ZOO: Dict[str, Dict[str, str]] = {
    # arch -> {point name: torchvision module path}, 4 points each, shallow to deep.
    # Module paths follow Pihlgren et al. (arXiv 2302.04032), official code: `layers_in_experiments`
    # (child indices translated to module paths).
    "alexnet": {"relu1": "features.1", "relu2": "features.4", "relu3": "features.7",
                "relu5": "features.11"},
    "vgg11": {"relu1_1": "features.1", "relu2_1": "features.4", "relu3_2": "features.9",
              "relu5_2": "features.19"},
    # vgg13 is not in that zoo: last ReLU of blocks 1, 2, 3, 5, as for vgg16.
    "vgg13": {"relu1_2": "features.3", "relu2_2": "features.8", "relu3_2": "features.13",
              "relu5_2": "features.23"},
    "vgg16": {"relu1_2": "features.3", "relu2_2": "features.8", "relu3_3": "features.15",
              "relu5_3": "features.29"},
    "vgg19": {"relu1_2": "features.3", "relu2_2": "features.8", "relu3_4": "features.17",
              "relu5_4": "features.35"},
    # vgg11_bn, vgg13_bn, vgg19_bn are not in that zoo: the same ReLUs as their plain variants.
    "vgg11_bn": {"relu1_1": "features.2", "relu2_1": "features.6", "relu3_2": "features.13",
                 "relu5_2": "features.27"},
    "vgg13_bn": {"relu1_2": "features.5", "relu2_2": "features.12", "relu3_2": "features.19",
                 "relu5_2": "features.33"},
    "vgg16_bn": {"relu1_2": "features.5", "relu2_2": "features.12", "relu3_3": "features.22",
                 "relu5_3": "features.42"},
    "vgg19_bn": {"relu1_2": "features.5", "relu2_2": "features.12", "relu3_4": "features.25",
                 "relu5_4": "features.51"},
    "resnet18": {"stem": "relu", "layer1": "layer1", "layer2": "layer2", "layer4": "layer4"},
    "resnet50": {"stem": "relu", "layer1": "layer1", "layer2": "layer2", "layer4": "layer4"},
    "resnext50_32x4d": {"stem": "relu", "layer1": "layer1", "layer2": "layer2",
                        "layer4": "layer4"},
    "googlenet": {"conv1": "conv1", "inception3a": "inception3a", "inception4a": "inception4a",
                  "inception5b": "inception5b"},
    "inception_v3": {"conv2b": "Conv2d_2b_3x3", "mixed5b": "Mixed_5b", "mixed5d": "Mixed_5d",
                     "mixed6e": "Mixed_6e"},
    "densenet121": {"stem": "features.relu0", "denseblock1": "features.denseblock1",
                    "denseblock2": "features.denseblock2", "denseblock4": "features.denseblock4"},
    "squeezenet1_1": {"relu1": "features.1", "fire2": "features.3", "fire5": "features.7",
                      "fire9": "features.12"},
    "efficientnet_b0": {"stem": "features.0", "stage1": "features.1", "stage4": "features.4",
                        "stage7": "features.7"},
    "efficientnet_b7": {"stem": "features.0", "stage1": "features.1", "stage4": "features.4",
                        "stage7": "features.7"},
    # mobilenet_v2 is not in that zoo: analogous to EfficientNet's stem, first stage, first
    # stride-16 stage and last inverted-residual stage (32, 16, 64, 320 channels).
    "mobilenet_v2": {"stem": "features.0", "stage1": "features.1", "stage4": "features.10",
                     "stage7": "features.17"},
}  # fmt: skip

# Constructor arguments per arch: drop auxiliary heads, skip torchvision's own init.
_ZOO_KWARGS: Dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}
# Keys of a saved torchvision state_dict that belong to the dropped auxiliary heads.
_ZOO_IGNORED_KEY_PREFIXES: Tuple[str, ...] = ("aux1.", "aux2.", "AuxLogits.")


def _replace_first_conv_(model: nn.Module, in_channels: int) -> None:
    """Replace the first ``nn.Conv2d`` (registration order: the stem) by one taking
    ``in_channels`` channels, same hyper-parameters otherwise."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=1,
                bias=module.bias is not None,
                device=module.weight.device,
            )
            setattr(parent, child, new)
            return
    raise ValueError(f"{type(model).__name__} has no Conv2d to adapt to {in_channels} channels.")


def _feature_extractor(model: nn.Module, return_nodes: Dict[str, str]) -> nn.Module:
    """``create_feature_extractor`` with every in-place operation made out-of-place.

    An in-place op after an extraction point (e.g. vgg16's ``features.15`` ReLU after the conv
    ``features.14``) would overwrite the captured tensor when the trunk runs on to a deeper point,
    so the value returned for a point would depend on which other points are requested."""
    extractor = create_feature_extractor(model, return_nodes=return_nodes)
    for module in extractor.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    for node in extractor.graph.nodes:
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        if node.op == "call_method" and node.target.endswith("_") and not node.target.endswith("__"):
            node.target = node.target[:-1]  # x.relu_() -> x.relu()
    extractor.recompile()
    return extractor


@torch.no_grad()
def _random_init_(module: nn.Module, init: str, init_param: float, g: torch.Generator) -> None:
    """Initialise every parameter and buffer of ``module`` (in registration order) from ``g``:
    conv/linear weights with scheme ``init``, zero biases, identity batch norms."""
    done = set()
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.Linear)):
            init_weight_(sub.weight, init, init_param, g)
            done.add(sub.weight)
            if sub.bias is not None:
                sub.bias.zero_()
                done.add(sub.bias)
        elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.reset_parameters()  # weight 1, bias 0, running mean 0, var 1
            done.update(t for t in (sub.weight, sub.bias) if t is not None)
            done.update(b for b in sub.buffers(recurse=False))
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers())
            if t not in done]  # fmt: skip
    if left:
        raise NotImplementedError(f"No random init rule for loss-network tensors {left}.")


def _load_pretrained_state_dict(path: str) -> Dict[str, Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS file not found: {path!r} (weights are never "
            "downloaded; save a torchvision model's state_dict there with torch.save)."
        )
    try:  # weights_only: a weight file must not run code when loaded
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS {path!r} could not be loaded as a torch "
            f"state_dict (empty, truncated, or holding Python objects beyond tensors and "
            f"containers): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} does not hold a state_dict (got {type(state).__name__}).")
    return {k: v for k, v in state.items() if not k.startswith(_ZOO_IGNORED_KEY_PREFIXES)}


class PercepZooLossNetwork(PercepLossNetwork):
    """A torchvision architecture of :data:`LOSS_NET_ZOO` cut after its deepest extraction point
    (``torchvision.models.feature_extraction.create_feature_extractor``; no per-arch code).

    * Random (``pretrained_weights=""``): the stem conv takes ``in_channels`` channels; every
      conv/linear weight is drawn with ``init`` from the seeded private generator, biases are 0 and
      batch norms are identities (paper Table 1, 'R').
    * Pretrained: weights from a local file holding the torchvision model's ``state_dict``
      (strict load), behind a fixed 1x1 conv ``projection`` from ``in_channels`` to 3 channels
      (Table 1, 'T'): identity for C=3, replication for C=1, otherwise seeded N(0, 1/C).
      No ImageNet mean/std normalisation is applied.
    """

    @configurable
    def __init__(
        self,
        *,
        arch: str,
        in_channels: int = 1,
        init: str = "paper",
        init_param: float = 0.01,
        seed: int = 0,
        out_points: Optional[Sequence[str]] = None,
        point_weights: Optional[Sequence[float]] = None,
        pretrained_weights: str = "",
    ):
        """
        Args:
            arch: a key of :data:`LOSS_NET_ZOO` (a torchvision model builder name).
            in_channels: channels of the task's output (C).
            init, init_param, seed: random init, see :class:`PercepVGGLossNetwork`.
            out_points: point names of ``LOSS_NET_ZOO[arch]`` or torchvision node names;
                ``None`` = the deepest named point.
            point_weights: weight of each point in the loss; ``None`` = all 1.
            pretrained_weights: path of a local state_dict file; "" = random weights.
        """
        super().__init__()
        if arch not in LOSS_NET_ZOO:
            raise ValueError(
                f"Unknown loss-network architecture {arch!r} (MODEL.PERCEPTUAL_LOSS.ARCH); "
                f"expected 'vgg' or one of {sorted(LOSS_NET_ZOO)}."
            )
        if in_channels < 1:
            raise ValueError(f"MODEL.PERCEPTUAL_LOSS.IN_CHANNELS must be >= 1, got {in_channels}.")
        named = LOSS_NET_ZOO[arch]
        if out_points is None or len(out_points) == 0:
            out_points = (list(named)[-1],)
        # Any torchvision node name is accepted too; create_feature_extractor validates it.
        extra = [p for p in out_points if p not in named]
        self.out_points, self.point_weights = _check_points(
            out_points, point_weights, list(named) + extra
        )
        self.in_channels, self.arch = in_channels, arch
        generator = _make_generator(seed)

        with torch.device("meta"):  # no init work and no memory until to_empty()
            model = torchvision.models.get_model(arch, weights=None, **_ZOO_KWARGS.get(arch, {}))
        if not pretrained_weights:
            _replace_first_conv_(model, in_channels)
        return_nodes = {named.get(p, p): p for p in self.out_points}
        try:
            trunk = _feature_extractor(model, return_nodes)
        except ValueError as e:
            raise ValueError(
                f"Bad extraction point in MODEL.PERCEPTUAL_LOSS.OUT_POINTS for {arch} "
                f"(named points: {list(named)}): {e}"
            ) from e
        with torch.no_grad():  # shapes only, on the meta device
            c = 3 if pretrained_weights else in_channels
            probe = trunk(torch.empty(1, c, 224, 224, device="meta"))
        self.out_channels = {p: probe[p].shape[1] for p in self.out_points}
        self.min_input_size = max(224 // min(probe[p].shape[-2:]) for p in self.out_points)
        self.spec = {
            "ARCH": arch,
            "IN_CHANNELS": in_channels,
            "INIT": init if not pretrained_weights else "pretrained",
            "INIT_PARAM": float(init_param) if not pretrained_weights else 0.0,
            "SEED": int(seed),
            "OUT_POINTS": list(self.out_points),
            "POINT_WEIGHTS": list(self.point_weights),
            "PRETRAINED_WEIGHTS": os.path.basename(pretrained_weights),
        }

        if pretrained_weights:
            state = _load_pretrained_state_dict(pretrained_weights)
            model.to_empty(device="cpu")
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise RuntimeError(f"Cannot load {pretrained_weights!r} into {arch}: {e}") from e
            self.trunk = _feature_extractor(model, return_nodes)
            self.projection = _empty_conv(in_channels, 3, 1)
            with torch.no_grad():
                if in_channels == 3:
                    self.projection.weight.copy_(torch.eye(3)[:, :, None, None])
                elif in_channels == 1:
                    self.projection.weight.fill_(1.0)
                else:
                    self.projection.weight.normal_(0, in_channels**-0.5, generator=generator)
        else:
            self.trunk = trunk.to_empty(device="cpu")
            self.projection = None
            _random_init_(self.trunk, init, init_param, generator)
        _freeze_(self)
        self.train(False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        lc = cfg.MODEL.PERCEPTUAL_LOSS
        return {
            "arch": lc.ARCH,
            "in_channels": lc.IN_CHANNELS,
            "init": lc.INIT,
            "init_param": lc.INIT_PARAM,
            "seed": lc.SEED,
            "out_points": tuple(lc.OUT_POINTS) or None,
            "point_weights": tuple(lc.POINT_WEIGHTS) or None,
            "pretrained_weights": lc.PRETRAINED_WEIGHTS,
        }

    def _features(self, x: Tensor) -> Dict[str, Tensor]:
        if self.projection is not None:
            x = self.projection(x)
        feats = self.trunk(x)
        return {p: feats[p] for p in self.out_points}


def build_loss_network(cfg: CfgNode) -> PercepLossNetwork:
    """Build the loss network of ``cfg.MODEL.PERCEPTUAL_LOSS``: ARCH "vgg" gives the spec'd VGG
    family (BLOCKS, WIDTHS, KERNEL_SIZE), any other ARCH a :data:`LOSS_NET_ZOO` architecture."""
    if cfg.MODEL.PERCEPTUAL_LOSS.ARCH == "vgg":
        return PercepVGGLossNetwork(cfg)
    return PercepZooLossNetwork(cfg)
