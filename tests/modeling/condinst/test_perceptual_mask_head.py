"""The perceptual CondInst mask head on CPU with a tiny R18 model and a tiny loss network: the
extra loss, its gradients, the cost options, inference and checkpoints unchanged."""

import pytest
import torch

from percep_det.modeling.condinst.dynamic_mask_head import PercepDynamicMaskHead
from percep_det.modeling.condinst.perceptual_mask_head import PercepPerceptualDynamicMaskHead
from percep_det.modeling.frozen import load_weights_strict
from percep_det.modeling.perceptual import PerceptualLoss, naive_perceptual_loss, perceptual_loss
from tests.helpers import (
    NO_OBJECT,
    TWO_OBJECTS,
    assert_frozen_outside,
    build,
    make_inputs,
    tiny_condinst_cfg,
    train_step,
)
from tests.modeling.condinst.percep_helpers import tiny_percep_cfg

BASE_LOSSES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"}


def test_head_is_registered_and_adds_a_finite_positive_loss():
    model = build(tiny_percep_cfg())
    assert type(model.mask_head) is PercepPerceptualDynamicMaskHead
    assert model.mask_head.perceptual_loss.loss_network().in_channels == 1
    losses = train_step(model, make_inputs([TWO_OBJECTS, TWO_OBJECTS]))
    assert set(losses) == BASE_LOSSES | {"loss_mask_percep"}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses["loss_mask_percep"] > 0  # random head: predictions differ from the gt


def test_loss_is_zero_when_predictions_equal_targets():
    head = build(tiny_percep_cfg()).mask_head
    head.train()
    gt = torch.zeros(3, 1, 16, 16)
    gt[:, :, 4:10, 3:12] = 1
    equal = head.losses({"mask_scores": gt.clone(), "gt_bitmasks": gt}, instances=[0, 1, 2])
    assert equal["loss_mask_percep"] == 0
    assert torch.allclose(equal["loss_mask"], torch.zeros(()), atol=1e-5)
    other = head.losses({"mask_scores": gt.roll(3, dims=-1), "gt_bitmasks": gt}, [0, 1, 2])
    assert other["loss_mask_percep"] > 0
    # lambda = MODEL.PERCEPTUAL_LOSS.LOSS_WEIGHT times the plain perceptual loss
    net = head.perceptual_loss.loss_network()
    plain = perceptual_loss(gt.roll(3, dims=-1), gt, net)
    assert torch.allclose(other["loss_mask_percep"], 0.1 * plain)


def test_one_implementation_head_term_equals_perceptual_loss_and_the_module():
    """The CondInst term, PerceptualLoss and perceptual_loss agree on the same inputs."""
    cfg = tiny_percep_cfg()
    head = build(cfg).mask_head
    torch.manual_seed(0)
    scores = torch.rand(5, 1, 16, 16)
    gt = (torch.rand(5, 1, 16, 16) > 0.5).float()
    term = head.losses({"mask_scores": scores, "gt_bitmasks": gt}, [0] * 5)["loss_mask_percep"]
    module = PerceptualLoss(cfg, in_channels=1)
    net = module.loss_network()
    assert torch.equal(term, module(scores, gt))
    assert torch.equal(term, 0.1 * perceptual_loss(scores, gt, net, chunk_size=4))
    assert torch.allclose(term, 0.1 * naive_perceptual_loss(scores, gt, net), rtol=1e-5)
    assert head.perceptual_loss.fingerprint() == module.fingerprint()


def test_gradient_reaches_the_mask_head_parameters_and_not_the_loss_network():
    model = build(tiny_percep_cfg())
    losses = train_step(model, make_inputs([TWO_OBJECTS]))
    losses["loss_mask_percep"].backward()
    assert model.controller.weight.grad is not None and model.controller.weight.grad.abs().sum() > 0
    tower = model.mask_branch.tower[-1].weight
    assert tower.grad is not None and tower.grad.abs().sum() > 0
    net = model.mask_head.perceptual_loss.loss_network()
    assert_frozen_outside(model, net)


def test_batches_without_instances_train():
    model = build(tiny_percep_cfg())
    for gts in ([NO_OBJECT, NO_OBJECT], [TWO_OBJECTS, NO_OBJECT]):
        losses = train_step(model, make_inputs(gts))
        assert "loss_mask_percep" in losses
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        assert model.controller.weight.grad is not None


def test_max_instances_uses_a_random_subset():
    model = build(tiny_percep_cfg(MAX_INSTANCES=3))
    seen = []
    loss = model.mask_head.perceptual_loss
    original = loss.unweighted

    def record(pred, target):
        out = original(pred, target)
        seen.append(loss.loss_network().last_batch)
        return out

    loss.loss_network().register_forward_hook(
        lambda m, inputs, out: setattr(m, "last_batch", inputs[0].shape[0])
    )
    loss.unweighted = record
    losses = train_step(model, make_inputs([TWO_OBJECTS, TWO_OBJECTS]))
    assert seen == [3] and torch.isfinite(losses["loss_mask_percep"])


def test_crop_option_trains_and_its_gradient_reaches_the_head():
    model = build(tiny_percep_cfg(CROP=True, CROP_MARGIN=4, CROP_ALIGN=4))
    losses = train_step(model, make_inputs([TWO_OBJECTS, NO_OBJECT]))
    assert torch.isfinite(losses["loss_mask_percep"]) and losses["loss_mask_percep"] > 0
    losses["loss_mask_percep"].backward()
    assert model.controller.weight.grad.abs().sum() > 0


def test_inference_is_unchanged_and_builds_no_loss_network():
    cfg = tiny_percep_cfg()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # random weights: keep detections
    plain_cfg = tiny_condinst_cfg()
    plain_cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    percep = build(cfg).eval()
    plain = build(plain_cfg, seed=1).eval()
    plain.load_state_dict(percep.state_dict())  # same weights
    inputs = make_inputs([TWO_OBJECTS, NO_OBJECT], with_instances=False)
    with torch.no_grad():
        out_p, out_q = percep(inputs), plain(inputs)
    for a, b in zip(out_p, out_q):
        a, b = a["instances"], b["instances"]
        assert len(a) > 0 and len(a) == len(b)
        assert torch.equal(a.pred_masks, b.pred_masks)
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.scores, b.scores)
    assert not percep.mask_head.perceptual_loss._loss_network.is_built


def test_student_checkpoint_loads_into_plain_condinst_strictly(tmp_path):
    percep = build(tiny_percep_cfg(), seed=1)
    train_step(percep, make_inputs([TWO_OBJECTS]))  # builds the loss network
    assert percep.mask_head.perceptual_loss._loss_network.is_built
    plain = build(tiny_condinst_cfg(), seed=2)
    assert type(plain.mask_head) is PercepDynamicMaskHead
    assert list(percep.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(percep.state_dict(), strict=True)
    torch.save({"model": percep.state_dict()}, tmp_path / "model_final.pth")
    # strict detectron2-format load: any missing / unexpected / wrongly shaped key raises
    load_weights_strict(build(tiny_condinst_cfg(), seed=3), str(tmp_path / "model_final.pth"))


def test_bad_options_name_their_key():
    with pytest.raises(ValueError, match="MODEL.CONDINST.PERCEPTUAL.TARGET"):
        build(tiny_percep_cfg("soft"))
    with pytest.raises(ValueError, match="MAX_INSTANCES"):
        build(tiny_percep_cfg(MAX_INSTANCES=0))
