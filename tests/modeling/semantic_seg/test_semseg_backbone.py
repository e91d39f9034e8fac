"""The dilated ResNet backbone: strides and sizes at output stride 8/16, dilation of basic and
bottleneck blocks, deep stem, config errors, and ImageNet weights in torchvision's format."""

import pickle

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from percep_det.modeling.semantic_seg import PercepDilatedBasicBlock
from tests.helpers import get_condinst_cfg


def backbone_cfg(depth=18, res4=2, res5=4, stem="basic", width=8):
    cfg = get_condinst_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_percep_dilated_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    rc = cfg.MODEL.RESNETS
    rc.DEPTH = depth
    rc.NORM = "BN"
    rc.STEM_TYPE = stem
    rc.STEM_OUT_CHANNELS = width * (2 if stem == "deeplab" else 1)
    rc.RES2_OUT_CHANNELS = width * (4 if depth >= 50 else 1)
    rc.WIDTH_PER_GROUP = width
    rc.RES4_DILATION = res4
    rc.RES5_DILATION = res5
    rc.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    return cfg


@pytest.mark.parametrize(
    "depth, stem, res4, res5, strides",
    [
        (18, "basic", 2, 4, [4, 8, 8, 8]),
        (34, "deeplab", 2, 4, [4, 8, 8, 8]),
        (50, "deeplab", 2, 4, [4, 8, 8, 8]),
        (18, "basic", 1, 2, [4, 8, 16, 16]),
        (18, "basic", 1, 1, [4, 8, 16, 32]),
    ],
)
def test_strides_sizes_and_dilations(depth, stem, res4, res5, strides):
    torch.manual_seed(0)
    backbone = build_backbone(backbone_cfg(depth, res4, res5, stem))
    names = ["res2", "res3", "res4", "res5"]
    shapes = backbone.output_shape()
    assert [shapes[n].stride for n in names] == strides
    assert backbone.size_divisibility == max(strides)
    out = backbone(torch.randn(2, 3, 64, 96))
    for name, stride in zip(names, strides):
        assert out[name].shape[-2:] == (64 // stride, 96 // stride)
        assert out[name].shape[1] == shapes[name].channels
    blocks = {n: list(getattr(backbone, n).children()) for n in names}
    for name, dilation in zip(names, [1, 1, res4, res5]):
        for block in blocks[name]:
            convs = [block.conv1, block.conv2] if depth < 50 else [block.conv2]
            assert all(c.dilation == (dilation, dilation) for c in convs), name
            assert all(c.padding == (dilation, dilation) for c in convs), name
    if depth < 50:
        assert all(isinstance(b, PercepDilatedBasicBlock) for b in blocks["res5"])
    stem_convs = [m for m in backbone.stem.children() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in stem_convs] == ([(7, 7)] if stem == "basic" else [(3, 3)] * 3)


def test_deep_stem_has_64_64_128_channels():
    cfg = backbone_cfg(stem="deeplab", width=64)
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 128
    stem = build_backbone(cfg).stem
    assert [c.out_channels for c in (stem.conv1, stem.conv2, stem.conv3)] == [64, 64, 128]


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("RES4_DILATION", 4, "MODEL.RESNETS.RES4_DILATION"),
        ("RES5_DILATION", 2, "RES5_DILATION 4"),  # res4 = 2 needs res5 = 4
        ("STEM_TYPE", "deep", "MODEL.RESNETS.STEM_TYPE"),
        ("DEPTH", 26, "MODEL.RESNETS.DEPTH"),
    ],
)
def test_bad_settings_name_their_key(key, value, match):
    cfg = backbone_cfg()
    cfg.MODEL.RESNETS[key] = value
    with pytest.raises(ValueError, match=match):
        build_backbone(cfg)


def torchvision_to_d2(state_dict):
    """The renaming of detectron2's tools/convert-torchvision-to-d2.py (written out for the test):
    layerX -> res(X+1), bnY -> convY.norm, downsample.0/1 -> shortcut(.norm), the rest -> stem."""
    out = {}
    for name, value in state_dict.items():
        new = name if "layer" in name else "stem." + name
        for i in (1, 2, 3, 4):
            new = new.replace(f"layer{i}", f"res{i + 1}")
        for i in (1, 2, 3):
            new = new.replace(f"bn{i}", f"conv{i}.norm")
        new = new.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        out[new] = value.detach().numpy()
    return {"model": out, "__author__": "torchvision", "matching_heuristics": True}


def test_loads_torchvision_resnet18_weights_converted_for_detectron2(tmp_path):
    """Every backbone tensor comes from the file; undilated, the backbone computes torchvision's
    resnet18 exactly; dilated (output stride 8) it loads the same file."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    for m in tv.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    path = tmp_path / "r18.pkl"
    with open(path, "wb") as f:
        pickle.dump(torchvision_to_d2(tv.state_dict()), f)
    converted = torchvision_to_d2(tv.state_dict())["model"]

    x = torch.randn(2, 3, 64, 64)
    for res4, res5 in ((1, 1), (2, 4)):
        cfg = backbone_cfg(18, res4, res5, width=64)
        torch.manual_seed(1)
        backbone = build_backbone(cfg, ShapeSpec(channels=3)).eval()
        DetectionCheckpointer(backbone).load(str(path))
        state = backbone.state_dict()
        for name, value in state.items():
            assert name in converted, name
            assert torch.equal(value, torch.as_tensor(converted[name])), name
        if res5 == 1:
            with torch.no_grad():
                expected = torch.nn.Sequential(*list(tv.eval().children())[:-2])(x)
                assert torch.allclose(backbone(x)["res5"], expected, atol=1e-5)
        else:
            assert backbone(x)["res5"].shape[-2:] == (8, 8)
    # torchvision's classifier (renamed stem.fc.*) is the only tensor left over
    assert sorted(set(converted) - set(state)) == ["stem.fc.bias", "stem.fc.weight"]


def test_checkpoint_in_detectron2_naming_loads_strictly(tmp_path):
    from percep_det.modeling.frozen import load_weights_strict

    cfg = backbone_cfg()
    torch.manual_seed(0)
    src = build_backbone(cfg)
    torch.save({"model": src.state_dict()}, tmp_path / "b.pth")
    torch.manual_seed(1)
    dst = build_backbone(cfg)
    load_weights_strict(dst, str(tmp_path / "b.pth"))
    assert all(
        torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values())
    )
