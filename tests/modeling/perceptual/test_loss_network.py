"""Tests of percep_det.modeling.perceptual.loss_network (CPU, small sizes)."""

import hashlib
import os
import re
import subprocess
import sys

import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.solver.build import get_default_optimizer_params
from torch import nn

import percep_det
from percep_det import add_percep_det_config
from percep_det.modeling.perceptual.loss_network import (
    LOSS_NET_ZOO,
    PercepVGGLossNetwork,
    PercepZooLossNetwork,
    build_loss_network,
)

SMALL_VGG = dict(blocks=(1, 2), widths=(8, 16), in_channels=2)

# Expected channels of the 4 named points (LOSS_NET_ZOO.md; analogous points for the additions).
ZOO_CHANNELS = {
    "alexnet": (64, 192, 384, 256),
    "vgg11": (64, 128, 256, 512),
    "vgg13": (64, 128, 256, 512),
    "vgg16": (64, 128, 256, 512),
    "vgg19": (64, 128, 256, 512),
    "vgg11_bn": (64, 128, 256, 512),
    "vgg13_bn": (64, 128, 256, 512),
    "vgg16_bn": (64, 128, 256, 512),
    "vgg19_bn": (64, 128, 256, 512),
    "resnet18": (64, 64, 128, 512),
    "resnet50": (64, 256, 512, 2048),
    "resnext50_32x4d": (64, 256, 512, 2048),
    "googlenet": (64, 256, 512, 1024),
    "inception_v3": (64, 256, 288, 768),
    "densenet121": (64, 256, 512, 1024),
    "squeezenet1_1": (64, 128, 256, 512),
    "efficientnet_b0": (32, 16, 80, 320),
    "efficientnet_b7": (64, 32, 160, 640),
    "mobilenet_v2": (32, 16, 64, 320),
}
REQUIRED = [
    "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
    "vgg19_bn", "resnet18", "resnet50", "googlenet", "mobilenet_v2", "densenet121",
    "squeezenet1_1", "efficientnet_b0",
]  # fmt: skip


def _digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cfg():
    cfg = get_cfg()
    add_percep_det_config(cfg)
    return cfg


# ------------------------------------------------------------------ determinism and state
_CHILD = """
import hashlib, torch
from percep_det.modeling.perceptual.loss_network import PercepVGGLossNetwork, PercepZooLossNetwork
torch.manual_seed({other_seed})  # the global RNG state must not matter
h = hashlib.sha256()
for net in (PercepVGGLossNetwork(blocks=(1, 2), widths=(8, 16), seed=7),
            PercepZooLossNetwork(arch="resnet18", in_channels=3, seed=7)):
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode()); h.update(t.contiguous().numpy().tobytes())
print("DIGEST", h.hexdigest())
"""


def test_same_seed_bit_identical_across_processes():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(percep_det.__file__))
    digests = []
    for other_seed in (1, 12345):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD.format(other_seed=other_seed)],
            capture_output=True, text=True, env=env, cwd=root, check=True,
        ).stdout  # fmt: skip
        digests.append(re.search(r"DIGEST (\w+)", out).group(1))
    assert digests[0] == digests[1]


def test_different_seeds_differ():
    a, b = PercepVGGLossNetwork(**SMALL_VGG, seed=0), PercepVGGLossNetwork(**SMALL_VGG, seed=1)
    assert not torch.equal(a.layers.conv1_1.weight, b.layers.conv1_1.weight)
    za = PercepZooLossNetwork(arch="resnet18", seed=0)
    zb = PercepZooLossNetwork(arch="resnet18", seed=1)
    assert _digest(za) != _digest(zb)
    assert _digest(za) == _digest(PercepZooLossNetwork(arch="resnet18", seed=0))


def test_global_rng_untouched():
    torch.manual_seed(3)
    state = torch.get_rng_state()
    PercepVGGLossNetwork(**SMALL_VGG, seed=5)
    PercepZooLossNetwork(arch="mobilenet_v2", seed=5)
    PercepZooLossNetwork(arch="resnet18", in_channels=3, seed=5, init="uniform", init_param=0.1)
    assert torch.equal(state, torch.get_rng_state())


def test_state_dict_round_trip():
    for make in (
        lambda s: PercepVGGLossNetwork(**SMALL_VGG, seed=s),
        lambda s: PercepZooLossNetwork(arch="resnet18", in_channels=2, seed=s),
    ):
        a, b = make(0), make(1)
        assert len(a.state_dict()) > 0
        b.load_state_dict(a.state_dict())
        assert _digest(a) == _digest(b)
        x = torch.rand(2, 2, 32, 32)
        for k, v in a(x).items():
            torch.testing.assert_close(v, b(x)[k], rtol=0, atol=0)


def test_frozen_not_optimized_always_eval():
    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(1, 1, 3)
            self.vgg = PercepVGGLossNetwork(blocks=(1,), widths=(4,))
            self.zoo = PercepZooLossNetwork(arch="resnet18")

    parent = Parent()
    parent.train()
    for net in (parent.vgg, parent.zoo):
        assert all(not p.requires_grad for p in net.parameters())
        assert all(not m.training for m in net.modules())
        # No buffers: DDP(broadcast_buffers=True) would re-send every buffer at every step.
        assert len(list(net.buffers())) == 0
    groups = get_default_optimizer_params(parent)
    optimized = {id(p) for g in groups for p in g["params"]}
    assert optimized == {id(parent.head.weight), id(parent.head.bias)}
    # BatchNorm running statistics are kept (as frozen parameters) and used in eval mode.
    bn = parent.zoo.trunk.bn1
    assert isinstance(bn.running_var, nn.Parameter) and "bn1.running_var" in dict(
        parent.zoo.trunk.state_dict()
    )


def test_trunk_stops_at_deepest_point():
    net = PercepVGGLossNetwork(out_points=("relu2_1",))
    assert list(net.layers._modules)[-1] == "relu2_1"
    zoo = PercepZooLossNetwork(arch="resnet18", out_points=("layer1",))
    names = {n for n, _ in zoo.trunk.named_children()}
    assert "layer1" in names and "layer2" not in names and "fc" not in names


# ------------------------------------------------------------------ initialisation
def _second_moments(
    init: str, init_param: float, kernel_size: int, size: int, width: int, seed: int
) -> torch.Tensor:
    """E[e_l^2] of the 16 conv outputs (pre-activations) of a 16-conv, no-pooling net."""
    points = tuple(f"conv1_{i}" for i in range(1, 17))
    net = PercepVGGLossNetwork(
        in_channels=16, blocks=(16,), widths=(width,), kernel_size=kernel_size, init=init,
        init_param=init_param, out_points=points, seed=seed,
    )  # fmt: skip
    x = torch.randn(2, 16, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        feats = net(x)
    return torch.stack([feats[p].double().pow(2).mean() for p in points])


@pytest.mark.parametrize("kernel_size,size,width", [(1, 16, 512), (3, 40, 128)])
def test_paper_init_keeps_variance_and_normal_explodes(kernel_size, size, width):
    # Var[e_L] = Var[e_1] prod_l (n_l Var[w_l] / 2) in expectation over the weights: 1 per layer
    # for the paper's init, n_l / 2 (= 256 or 576) per layer for N(0, 1). One draw of a
    # width-d layer scales the variance by a random factor of relative std ~sqrt(2 / d), so the
    # expectation is estimated over 4 seeds (a single width-64 draw can drift 3-4x in 16 layers).
    # No pooling: max-pooling raises the second moment by a data-dependent factor.
    m = torch.stack(
        [_second_moments("paper", 0.0, kernel_size, size, width, s) for s in range(4)]
    ).mean(0)
    assert (m.max() / m.min()).item() < 2.0, m
    m = _second_moments("normal", 1.0, kernel_size, size, width, 0)
    assert (m[-1] / m[0]).item() > 1e30, m


def test_init_schemes_statistics():
    g_std = {
        "paper": (2 / (9 * 64)) ** 0.5,
        "xavier_normal": (2 / (9 * 64 + 9 * 128)) ** 0.5,
        "normal": 0.01,
        "uniform": 0.01 / 3**0.5,
    }
    for init, std in g_std.items():
        net = PercepVGGLossNetwork(
            blocks=(1, 1), widths=(64, 128), init=init, init_param=0.01, out_points=("conv2_1",)
        )
        w = net.layers.conv2_1.weight
        assert abs(w.std().item() / std - 1) < 0.02, (init, w.std().item(), std)
    w = PercepVGGLossNetwork(blocks=(1,), widths=(64,), init="uniform", init_param=0.3)
    assert w.layers.conv1_1.weight.abs().max() <= 0.3


# ------------------------------------------------------------------ config
def test_build_from_config():
    cfg = _cfg()
    net = build_loss_network(cfg)
    assert isinstance(net, PercepVGGLossNetwork)
    assert net.out_points == ("pool5",) and net.out_channels == {"pool5": 512}
    assert len(net.layers) == 13 * 2 + 5
    cfg.MODEL.PERCEPTUAL_LOSS.merge_from_list(
        ["ARCH", "vgg", "BLOCKS", [1, 1, 1, 1, 1], "KERNEL_SIZE", 5, "IN_CHANNELS", 19,
         "OUT_POINTS", ["pool1", "pool2", "pool3", "pool4", "pool5"],
         "POINT_WEIGHTS", [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]]
    )  # fmt: skip
    net = build_loss_network(cfg)
    assert net.layers.conv1_1.weight.shape == (64, 19, 5, 5)
    assert net.point_weights == (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
    cfg = _cfg()
    cfg.MODEL.PERCEPTUAL_LOSS.ARCH = "squeezenet1_1"
    net = build_loss_network(cfg)
    assert isinstance(net, PercepZooLossNetwork) and net.out_points == ("fire9",)


def test_every_config_key_is_read():
    cfg = _cfg()
    src_dir = os.path.dirname(percep_det.__file__)
    text = ""
    for dirpath, _, files in os.walk(src_dir):
        for f in files:
            if f.endswith(".py") and f != "config.py":
                text += open(os.path.join(dirpath, f)).read()
    for key in cfg.MODEL.PERCEPTUAL_LOSS:
        assert re.search(rf"\.{key}\b", text), f"MODEL.PERCEPTUAL_LOSS.{key} is never read"


# ------------------------------------------------------------------ zoo
def test_zoo_has_required_archs_with_four_points():
    for arch in REQUIRED:
        assert arch in LOSS_NET_ZOO, arch
    for arch, points in LOSS_NET_ZOO.items():
        assert len(points) == 4, arch


@pytest.mark.parametrize("arch", sorted(LOSS_NET_ZOO))
def test_zoo_arch_builds_and_returns_points(arch):
    size = 80 if arch == "inception_v3" else 64  # inception_v3 needs at least 75 pixels
    for in_channels in (1, 19):
        net = PercepZooLossNetwork(
            arch=arch, in_channels=in_channels, out_points=tuple(LOSS_NET_ZOO[arch])
        )
        with torch.no_grad():
            feats = net(torch.rand(1, in_channels, size, size))
        assert list(feats) == list(LOSS_NET_ZOO[arch])
        assert tuple(f.shape[1] for f in feats.values()) == ZOO_CHANNELS[arch]
        assert tuple(net.out_channels.values()) == ZOO_CHANNELS[arch]
        assert all(torch.isfinite(f).all() for f in feats.values())


def test_random_zoo_batch_norm_variant_computes_the_plain_features():
    # A random zoo net's batch norms are identities and the BN variant draws the same conv
    # weights, so random vgg11_bn is vgg11 (up to batch norm's eps): studies leave it out.
    x = torch.rand(2, 5, 48, 48)
    plain = PercepZooLossNetwork(arch="vgg11", in_channels=5, seed=3, out_points=("relu3_2",))
    bn = PercepZooLossNetwork(arch="vgg11_bn", in_channels=5, seed=3, out_points=("relu3_2",))
    with torch.no_grad():
        a, b = plain(x)["relu3_2"], bn(x)["relu3_2"]
    assert a.abs().mean() > 0.1
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["resnet18", "googlenet"])
def test_zoo_pretrained_from_local_file(tmp_path, arch):
    torch.manual_seed(0)
    kwargs = {"init_weights": False} if arch == "googlenet" else {}
    ref = torchvision.models.get_model(arch, weights=None, **kwargs)  # googlenet: with aux heads
    path = str(tmp_path / f"{arch}.pth")
    torch.save(ref.state_dict(), path)
    net = PercepZooLossNetwork(arch=arch, in_channels=1, pretrained_weights=path)
    sd = net.trunk.state_dict()
    ref_sd = ref.state_dict()
    assert len(sd) > 0
    for k, v in sd.items():
        torch.testing.assert_close(v, ref_sd[k], rtol=0, atol=0)
    assert net.projection.weight.shape == (3, 1, 1, 1)
    assert not net.projection.weight.requires_grad
    x = torch.rand(1, 1, 64, 64)
    ref.eval()
    with torch.no_grad():
        deep = list(LOSS_NET_ZOO[arch].values())[-1]
        expected = torchvision.models.feature_extraction.create_feature_extractor(
            ref, {deep: "out"}
        )(x.expand(1, 3, 64, 64))["out"]
        torch.testing.assert_close(list(net(x).values())[-1], expected)
    net3 = PercepZooLossNetwork(arch=arch, in_channels=3, pretrained_weights=path)
    assert torch.equal(net3.projection.weight[:, :, 0, 0], torch.eye(3))


# ------------------------------------------------------------------ errors
def test_bad_specs_raise_named_errors(tmp_path):
    with pytest.raises(ValueError, match="not_a_net"):
        PercepZooLossNetwork(arch="not_a_net")
    cfg = _cfg()
    cfg.MODEL.PERCEPTUAL_LOSS.ARCH = "resnet999"
    with pytest.raises(ValueError, match="ARCH"):
        build_loss_network(cfg)
    with pytest.raises(ValueError, match="POINT_WEIGHTS"):
        PercepVGGLossNetwork(**SMALL_VGG, out_points=("pool1", "pool2"), point_weights=(1.0,))
    with pytest.raises(ValueError, match="pool9"):
        PercepVGGLossNetwork(**SMALL_VGG, out_points=("pool9",))
    with pytest.raises(ValueError, match="OUT_POINTS"):
        PercepZooLossNetwork(arch="resnet18", out_points=("layer9",))
    with pytest.raises(ValueError, match="BLOCKS"):
        PercepVGGLossNetwork(blocks=(1, 1), widths=(8,))
    with pytest.raises(ValueError, match="INIT"):
        PercepVGGLossNetwork(**SMALL_VGG, init="he_uniform")
    net = PercepVGGLossNetwork(**SMALL_VGG)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\).*\(1, 3, 16, 16\)"):
        net(torch.rand(1, 3, 16, 16))
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        PercepZooLossNetwork(arch="resnet18", pretrained_weights=missing)
    bad = str(tmp_path / "alexnet.pth")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), bad)
    with pytest.raises(RuntimeError, match="resnet18"):
        PercepZooLossNetwork(arch="resnet18", pretrained_weights=bad)
    cfg = _cfg()
    cfg.MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS = bad
    with pytest.raises(ValueError, match="PRETRAINED_WEIGHTS"):
        build_loss_network(cfg)


def test_too_small_input_names_the_size():
    net = PercepVGGLossNetwork(in_channels=1)
    with pytest.raises(ValueError, match="at least 32 px"):
        net(torch.zeros(1, 1, 16, 40))
    assert net(torch.zeros(1, 1, 32, 32))["pool5"].shape == (1, 512, 1, 1)


def test_a_point_is_its_own_value_whatever_runs_after_it():
    """vgg16's features.14 is a conv followed by an in-place ReLU: alone or with a deeper point,
    the value returned for it is the conv output (negative values included)."""
    alone = PercepZooLossNetwork(arch="vgg16", in_channels=1, out_points=("features.14",), seed=1)
    both = PercepZooLossNetwork(
        arch="vgg16", in_channels=1, out_points=("features.14", "features.29"), seed=1
    )
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a, b = alone(x)["features.14"], both(x)["features.14"]
    assert (a < 0).any()  # pre-ReLU
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and a named post-ReLU point stays non-negative
    relu = PercepZooLossNetwork(arch="vgg16", in_channels=1, out_points=("relu3_3",), seed=1)
    with torch.no_grad():
        assert (relu(x)["relu3_3"] >= 0).all()


def test_min_input_size_is_the_total_downsampling():
    assert PercepVGGLossNetwork(blocks=(1, 1, 1), widths=(4, 4, 4)).min_input_size == 8
    net = PercepVGGLossNetwork(blocks=(1, 1, 1), widths=(4, 4, 4), out_points=("relu2_1",))
    assert net.min_input_size == 2
    with pytest.raises(ValueError, match="MODEL.PERCEPTUAL_LOSS.BLOCKS"):
        PercepVGGLossNetwork(blocks=(1, 1, 1), widths=(4, 4, 4))(torch.zeros(1, 1, 4, 4))
    assert PercepZooLossNetwork(arch="resnet18").min_input_size == 32
