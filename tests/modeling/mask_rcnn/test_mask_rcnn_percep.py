"""The perceptual Mask R-CNN mask head on CPU with a tiny R18 Mask R-CNN and a tiny 4-block loss
network: the extra loss and its value, its gradients, the build-time size check, inference and
checkpoints unchanged."""

import os

import numpy as np
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from percep_det.modeling.mask_rcnn import (
    PercepPerceptualMaskRCNNConvUpsampleHead,
    mask_rcnn_percep_inputs,
)
from percep_det.modeling.perceptual import loss_network_fingerprints, perceptual_loss
from tests.helpers import (
    NO_OBJECT,
    TWO_OBJECTS,
    assert_frozen_outside,
    build,
    get_condinst_cfg,
    make_inputs,
    train_step,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
QUICK = os.path.join(ROOT, "configs", "quick_schedules", "mask_rcnn_percep_R18_shapes_cpu.yaml")
PLAIN = os.path.join(ROOT, "configs", "quick_schedules", "mask_rcnn_R18_shapes_cpu.yaml")
NAME = "PercepPerceptualMaskRCNNConvUpsampleHead"
BASE_LOSSES = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc", "loss_mask"}
M = 28  # mask side: 2 x POOLER_RESOLUTION 14


def tiny_cfg(percep: bool = True, **percep_options):
    """The quick config's Mask R-CNN, narrowed (64-channel FPN, 16-channel mask head) with a
    4-block, 8-channel loss network (needs 16 px: fits the 28 px masks)."""
    cfg = get_condinst_cfg(QUICK if percep else PLAIN)
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.MODEL.PERCEPTUAL_LOSS.WIDTHS = [8, 8, 8, 8]
    cfg.MODEL.PERCEPTUAL_LOSS.CHUNK_SIZE = 4
    for key, value in percep_options.items():
        cfg.MODEL.ROI_MASK_HEAD.PERCEPTUAL[key] = value
    return cfg


def build_head(cfg, seed: int = 0):
    """The mask head of ``cfg`` alone, on (R, 128, 14, 14) ROI features."""
    torch.manual_seed(seed)
    shape = ShapeSpec(channels=128, height=14, width=14)
    return ROI_MASK_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASK_HEAD.NAME)(cfg, shape)


def square_instances(masks: torch.Tensor, classes, box_masks: bool = True) -> Instances:
    """One image of size M x M whose proposals are the whole image and whose gt masks are
    ``masks`` (R, M, M): crop_and_resize returns the masks unchanged."""
    inst = Instances((M, M))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, M, M]]).repeat(len(masks), 1))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_masks = BitMasks(masks.bool())
    return inst


def test_quick_config_builds_the_registered_head_with_a_4_block_loss_network():
    cfg = get_condinst_cfg(QUICK)
    assert ROI_MASK_HEAD_REGISTRY.get(NAME) is PercepPerceptualMaskRCNNConvUpsampleHead
    head = build(cfg).roi_heads.mask_head
    assert type(head) is PercepPerceptualMaskRCNNConvUpsampleHead
    net = head.perceptual_loss.loss_network()
    assert net.spec["BLOCKS"] == [2, 2, 3, 3] and net.spec["WIDTHS"] == [64, 128, 256, 512]
    assert net.in_channels == 1 and net.min_input_size == 16 <= M
    assert head.perceptual_loss.loss_weight == cfg.MODEL.PERCEPTUAL_LOSS.LOSS_WEIGHT


def test_head_trains_a_step_on_cpu_and_only_the_head_gets_gradients():
    model = build(tiny_cfg())
    losses = train_step(model, make_inputs([TWO_OBJECTS, TWO_OBJECTS]))
    assert set(losses) == BASE_LOSSES | {"loss_mask_percep"}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses["loss_mask_percep"] > 0  # random head: predictions differ from the gt
    losses["loss_mask_percep"].backward()
    head = model.roi_heads.mask_head
    assert head.predictor.weight.grad is not None and head.predictor.weight.grad.abs().sum() > 0
    assert head.mask_fcn1.weight.grad.abs().sum() > 0
    net = head.perceptual_loss.loss_network()
    assert_frozen_outside(model, net)


def test_batches_without_foreground_train():
    model = build(tiny_cfg())
    for gts in ([NO_OBJECT, NO_OBJECT], [TWO_OBJECTS, NO_OBJECT]):
        losses = train_step(model, make_inputs(gts))
        assert "loss_mask_percep" in losses
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
    assert model.roi_heads.mask_head.predictor.weight.grad is not None


@pytest.mark.parametrize("agnostic", [False, True])
def test_loss_is_zero_at_pred_equal_target_and_positive_otherwise(agnostic):
    cfg = tiny_cfg()
    cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = agnostic
    head = build_head(cfg).train()
    masks = torch.zeros(3, M, M)
    masks[:, 5:20, 8:24] = 1
    masks[1] = masks[1].roll(4, dims=-1)
    classes = [2, 0, 3]
    inst = [square_instances(masks, classes), square_instances(masks[:0], [])]
    # logits of the gt class that saturate the sigmoid to exactly the gt mask; other classes random
    logits = torch.randn(3, 1 if agnostic else 4, M, M)
    rows = torch.arange(3)
    cols = torch.zeros(3, dtype=torch.long) if agnostic else torch.tensor(classes)
    logits[rows, cols] = (masks * 2 - 1) * 200
    with EventStorage():
        equal = head.losses(logits, inst)
        logits[rows, cols] = logits[rows, cols].roll(3, dims=-1)
        other = head.losses(logits, inst)
    assert equal["loss_mask_percep"] == 0
    assert other["loss_mask_percep"] > 0
    # the loss object itself: zero when the targets are the probabilities
    probs = torch.rand(3, 1, M, M)
    assert head.perceptual_loss(probs, probs.clone()) == 0


@pytest.mark.parametrize("agnostic", [False, True])
def test_value_is_the_shared_perceptual_loss_on_mask_rcnn_targets(agnostic):
    """loss_mask_percep = LOSS_WEIGHT * perceptual_loss(sigmoid of the gt-class logits, the gt
    masks cropped to the proposals as in detectron2's mask_rcnn_loss): one implementation."""
    cfg = tiny_cfg()
    cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = agnostic
    head = build_head(cfg).train()
    gen = torch.Generator().manual_seed(0)
    images = []
    for n in (3, 0, 2):
        inst = Instances((64, 64))
        xy = torch.rand(n, 2, generator=gen) * 32
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=gen) * 24], dim=1)
        inst.proposal_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, 4, (n,), generator=gen)
        inst.gt_masks = PolygonMasks(
            [[np.array([10, 10, 50, 12, 40, 55, 12, 45], dtype=np.float64)]] * n
        )
        images.append(inst)
    logits = torch.randn(5, 1 if agnostic else 4, M, M, generator=gen, requires_grad=True)
    with EventStorage():
        losses = head.losses(logits, images)

    targets = torch.cat(
        [i.gt_masks.crop_and_resize(i.proposal_boxes.tensor, M) for i in images if len(i)]
    )[:, None].float()
    classes = torch.zeros(5, dtype=torch.long)
    if not agnostic:
        classes = torch.cat([i.gt_classes for i in images])
    probs = logits[torch.arange(5), classes][:, None].sigmoid()
    got_probs, got_targets = mask_rcnn_percep_inputs(logits, images)
    assert torch.equal(got_probs, probs) and torch.equal(got_targets, targets)
    assert 0 < targets.mean() < 1
    net = head.perceptual_loss.loss_network()
    expected = cfg.MODEL.PERCEPTUAL_LOSS.LOSS_WEIGHT * perceptual_loss(probs, targets, net)
    assert torch.allclose(losses["loss_mask_percep"], expected, rtol=1e-6)
    assert torch.allclose(losses["loss_mask_percep"], head.perceptual_loss(probs, targets))
    # and the gradient reaches the logits
    (grad,) = torch.autograd.grad(losses["loss_mask_percep"], logits)
    assert grad.abs().sum() > 0


def test_state_dict_equals_the_plain_head_and_the_model_loads_into_plain_mask_rcnn():
    percep = build(tiny_cfg(), seed=1)
    train_step(percep, make_inputs([TWO_OBJECTS]))  # the loss network is in use
    plain = build(tiny_cfg(percep=False), seed=2)
    assert type(plain.roi_heads.mask_head) is MaskRCNNConvUpsampleHead
    head, plain_head = percep.roi_heads.mask_head, plain.roi_heads.mask_head
    assert list(head.state_dict()) == list(plain_head.state_dict())
    assert list(percep.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(percep.state_dict(), strict=True)
    # the checkpoint still pins the loss network: the trainer finds the loss by module name
    assert list(loss_network_fingerprints(percep)) == ["roi_heads.mask_head.perceptual_loss"]


def test_inference_is_the_plain_heads():
    cfg, plain_cfg = tiny_cfg(), tiny_cfg(percep=False)
    for c in (cfg, plain_cfg):
        c.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # random weights: keep detections
    percep = build(cfg, seed=1).eval()
    plain = build(plain_cfg, seed=2).eval()
    plain.load_state_dict(percep.state_dict())
    inputs = make_inputs([TWO_OBJECTS, NO_OBJECT], with_instances=False)
    with torch.no_grad():
        out_p, out_q = percep(inputs), plain(inputs)
    for a, b in zip(out_p, out_q):
        a, b = a["instances"], b["instances"]
        assert len(a) > 0 and len(a) == len(b)
        assert torch.equal(a.pred_masks, b.pred_masks)
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert not percep.roi_heads.mask_head.perceptual_loss._loss_network.is_built


def test_too_deep_loss_network_fails_on_the_first_step_naming_the_keys():
    cfg = tiny_cfg()
    cfg.MODEL.PERCEPTUAL_LOSS.BLOCKS = [2, 2, 3, 3, 3]  # VGG16: 5 pools need 32 px > 28
    cfg.MODEL.PERCEPTUAL_LOSS.WIDTHS = [64, 128, 256, 512, 512]
    with pytest.raises(ValueError, match=r"MODEL\.PERCEPTUAL_LOSS\.BLOCKS") as info:
        train_step(build(cfg), make_inputs([TWO_OBJECTS]))
    for text in ("28 x 28", "OUT_POINTS", "POOLER_RESOLUTION", "needs 32 px"):
        assert text in str(info.value)
    # the same net with an earlier extraction point fits
    cfg.MODEL.PERCEPTUAL_LOSS.OUT_POINTS = ["pool4"]
    model = build(cfg)
    assert torch.isfinite(train_step(model, make_inputs([TWO_OBJECTS]))["loss_mask_percep"])
    assert model.roi_heads.mask_head.perceptual_loss.loss_network().min_input_size == 16


def test_max_instances_caps_the_inputs_and_bad_values_name_the_key():
    head = build_head(tiny_cfg(MAX_INSTANCES=2))
    assert head.perceptual_loss.max_inputs == 2
    model = build(tiny_cfg(MAX_INSTANCES=2))
    losses = train_step(model, make_inputs([TWO_OBJECTS, TWO_OBJECTS]))
    assert torch.isfinite(losses["loss_mask_percep"]) and losses["loss_mask_percep"] > 0
    with pytest.raises(ValueError, match=r"MODEL\.ROI_MASK_HEAD\.PERCEPTUAL\.MAX_INSTANCES"):
        build_head(tiny_cfg(MAX_INSTANCES=0))
