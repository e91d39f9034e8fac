"""PercepDepthEstimator: every loss combination trains a step; inference size; the perceptual term."""

import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from tests.helpers import assert_frozen_outside
from tests.modeling.depth.depth_helpers import depth_inputs, tiny_depth_cfg

COMBINATIONS = [
    ("bins", 0.0, False, {"loss_depth_wce"}),
    ("bins", 1.0, False, {"loss_depth_wce", "loss_depth_vnl"}),
    ("bins", 0.0, True, {"loss_depth_wce", "loss_depth_percep"}),
    ("bins", 1.0, True, {"loss_depth_wce", "loss_depth_vnl", "loss_depth_percep"}),
    ("regression", 0.0, False, {"loss_depth_silog"}),
    ("regression", 1.0, True, {"loss_depth_silog", "loss_depth_vnl", "loss_depth_percep"}),
]


@pytest.mark.parametrize("output,vnl,percep,keys", COMBINATIONS)
def test_train_step_every_combination(output, vnl, percep, keys):
    torch.manual_seed(0)
    model = build_model(tiny_depth_cfg(output, vnl, percep))
    model.train()
    # the last image has no valid depth at all: it must not break or dominate anything
    with EventStorage():
        losses = model(depth_inputs(3, invalid_last=True))
    assert set(losses) == keys
    for name, value in losses.items():
        assert torch.isfinite(value) and value.item() > 0, name
    sum(losses.values()).backward()
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_no_valid_depth_at_all_gives_zero_losses():
    model = build_model(tiny_depth_cfg("bins", 1.0, True))
    model.train()
    inputs = depth_inputs(2)
    for x in inputs:
        x["depth"].zero_()
    with EventStorage():
        losses = model(inputs)
    assert all(v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()  # still a graph


def test_inference_has_the_original_size_and_the_range():
    model = build_model(tiny_depth_cfg())
    model.eval()
    x = depth_inputs(1, size=(50, 60))[0]
    with torch.no_grad():
        same = model([{"image": x["image"]}])[0]["depth"]
        big = model([{"image": x["image"], "height": 100, "width": 120}])[0]["depth"]
    assert same.shape == (50, 60) and big.shape == (100, 120)
    assert same.min() >= 0.5 - 1e-4 and same.max() <= 10.0 + 1e-4
    # RESIZE_MODE "depth": training divides depth by the resize factor s (a shrunk image looks
    # farther away), so the network's output for an image shown at s = 1/2 of its original size
    # is twice the true depth, and inference multiplies by s
    up = torch.nn.functional.interpolate(
        same[None, None], size=(100, 120), mode="bilinear", align_corners=False
    )[0, 0]
    assert torch.allclose(big, 0.5 * up, rtol=1e-4)


def test_eval_output_and_state_dict_do_not_depend_on_the_perceptual_term(tmp_path):
    torch.manual_seed(0)
    plain = build_model(tiny_depth_cfg())
    percep = build_model(tiny_depth_cfg(percep=True))
    percep.train()
    with EventStorage():
        percep(depth_inputs(2))  # builds the loss network
    assert set(plain.state_dict()) == set(percep.state_dict())
    path = os.path.join(tmp_path, "m.pth")
    DetectionCheckpointer(percep, save_dir=str(tmp_path)).save("m")
    plain.load_state_dict(torch.load(path, weights_only=False)["model"], strict=True)
    plain.eval(), percep.eval()
    x = depth_inputs(1)
    with torch.no_grad():
        assert torch.equal(plain(x)[0]["depth"], percep(x)[0]["depth"])


def test_perceptual_term_zero_at_the_target_and_no_gradient_into_the_loss_net():
    model = build_model(tiny_depth_cfg(percep=True))
    model.train()
    gt = torch.stack([x["depth"] for x in depth_inputs(2, size=(64, 64))])  # (2, 64, 64)
    depth = gt[:, None].clone().requires_grad_(True)
    outputs = torch.zeros(2, 16, 64, 64, requires_grad=True)
    losses = model.losses(outputs, depth, gt, None)
    assert losses["loss_depth_percep"].item() == pytest.approx(0.0, abs=1e-12)
    losses = model.losses(outputs, depth * 1.1, gt, None)
    assert losses["loss_depth_percep"].item() > 0
    losses["loss_depth_percep"].backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0
    net = model.perceptual_loss.loss_network()
    assert_frozen_outside(model, net)
    # predictions at invalid pixels change nothing
    other = (depth * 1.1).detach().clone()
    other[gt[:, None] == 0] = 77.0
    a = model.losses(outputs, depth.detach() * 1.1, gt, None)["loss_depth_percep"]
    b = model.losses(outputs, other, gt, None)["loss_depth_percep"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_clear_errors():
    cfg = tiny_depth_cfg("bins", vnl=1.0)
    model = build_model(cfg)
    model.train()
    inputs = depth_inputs(2)
    del inputs[1]["intrinsics"]
    with pytest.raises(ValueError, match="intrinsics"):
        with EventStorage():
            model(inputs)
    for key, value, match in (
        ("OUTPUT", "classes", "MODEL.DEPTH.OUTPUT"),
        ("MIN_DEPTH", 20.0, "MIN_DEPTH"),
        ("HEAD_NAME", "Nope", "MODEL.DEPTH.HEAD_NAME"),
        ("IN_FEATURES", ["res6"], "IN_FEATURES"),
    ):
        cfg = tiny_depth_cfg()
        cfg.MODEL.DEPTH[key] = value
        with pytest.raises((ValueError, KeyError), match=match):
            build_model(cfg)
    cfg = tiny_depth_cfg()
    cfg.MODEL.DEPTH.WCE_WEIGHT = 0.0
    model = build_model(cfg)
    model.train()
    with pytest.raises(ValueError, match="no loss"):
        with EventStorage():
            model(depth_inputs(1))


def test_ground_truth_outside_the_output_range_is_warned_about_once(caplog):
    cfg = tiny_depth_cfg()
    cfg.MODEL.DEPTH.MAX_DEPTH = 3.0  # the inputs' depth goes up to 6 m
    model = build_model(cfg)
    model.train()
    with EventStorage(0), caplog.at_level("WARNING", logger="percep_det.modeling.depth.meta_arch"):
        model(depth_inputs())
        model(depth_inputs())
    warnings = [r.getMessage() for r in caplog.records if "outside" in r.getMessage()]
    assert len(warnings) == 1
    assert "MODEL.DEPTH.MIN_DEPTH..MAX_DEPTH (0.5..3.0 m" in warnings[0]
    assert "RESIZE_MODE 'intrinsics'" in warnings[0]  # the default resize mode is 'depth'
    caplog.clear()
    model = build_model(tiny_depth_cfg())  # 0.5..10 m holds every valid pixel: no warning
    model.train()
    with EventStorage(0), caplog.at_level("WARNING", logger="percep_det.modeling.depth.meta_arch"):
        model(depth_inputs())
    assert not [r for r in caplog.records if "outside" in r.getMessage()]
