"""FCOS / CondInst losses against AdelaiDet's formulas on fixed hand-made inputs.

The expected numbers are worked out with plain Python arithmetic from AdelaiDet's definitions
(``adet/utils/comm.py: compute_ious``, ``adet/layers/iou_loss.py: IOULoss``,
``adet/modeling/fcos/fcos_outputs.py: fcos_losses``, ``adet/modeling/condinst/dynamic_mask_head.py:
dice_coefficient``), never with the code under test.
"""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, Instances
from torchvision.ops import generalized_box_iou_loss

from percep_det.modeling.condinst.dynamic_mask_head import PercepDynamicMaskHead
from percep_det.modeling.condinst.fcos import PercepFCOS, PercepFCOSHead
from percep_det.modeling.layers import (
    compute_ctrness_targets,
    compute_locations,
    dice_loss,
    iou_loss,
)

STRIDES = [8, 16, 32]


def smoothed_iou(pred, target):
    """AdelaiDet's ``(ious, gious)`` of one pair of (l, t, r, b) tuples, in plain floats."""
    pl, pt, pr, pb = pred
    tl, tt, tr, tb = target
    pred_area = (pl + pr) * (pt + pb)
    target_area = (tl + tr) * (tt + tb)
    inter = (min(pl, tl) + min(pr, tr)) * (min(pb, tb) + min(pt, tt))
    enclose = (max(pl, tl) + max(pr, tr)) * (max(pb, tb) + max(pt, tt))
    union = pred_area + target_area - inter
    iou = (inter + 1.0) / (union + 1.0)
    return iou, iou - (enclose - union) / enclose


def ltrb_to_boxes(ltrb: torch.Tensor) -> torch.Tensor:
    """``(R, 4)`` distances to XYXY boxes around a point at the origin (for torchvision)."""
    return torch.cat([-ltrb[:, :2], ltrb[:, 2:]], dim=1)


# (pred, target, 1 - giou worked out by hand); distances in stride units
HAND_CASES = [
    # identical boxes: iou = (4 + 1) / (4 + 1), enclose = union
    ((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0), 0.0),
    # nested sub-stride boxes: inter 0.16, union 0.64 = enclose -> 1 - 1.16 / 1.64
    ((0.2, 0.2, 0.2, 0.2), (0.4, 0.4, 0.4, 0.4), 0.48 / 1.64),
    # pred 0.8 x 1.2, target 0.7 x 1.0, inter 0.4 x 0.7, union 1.38, enclose 1.1 x 1.5
    ((0.2, 0.8, 0.6, 0.4), (0.5, 0.3, 0.2, 0.7), 1.0 - 1.28 / 2.38 + 0.27 / 1.65),
    # a collapsed prediction: inter 0, union 1 = enclose -> iou 1 / 2
    ((0.0, 0.0, 0.0, 0.0), (0.5, 0.5, 0.5, 0.5), 0.5),
    # larger boxes: 6 x 4 and 5 x 6, inter 4 x 2, union 46, enclose 7 x 8
    ((2.0, 3.0, 4.0, 1.0), (3.0, 1.0, 2.0, 5.0), 1.0 - 9.0 / 47.0 + 10.0 / 56.0),
]


def test_giou_loss_hand_cases():
    pred = torch.tensor([c[0] for c in HAND_CASES], dtype=torch.float64)
    target = torch.tensor([c[1] for c in HAND_CASES], dtype=torch.float64)
    expected = torch.tensor([c[2] for c in HAND_CASES], dtype=torch.float64)
    got = iou_loss(pred, target, loss_type="giou")
    assert got.shape == (len(HAND_CASES),)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # and the hand numbers are AdelaiDet's formula
    for p, t, loss in HAND_CASES:
        assert 1.0 - smoothed_iou(p, t)[1] == pytest.approx(loss, abs=1e-12)


def test_giou_loss_sub_stride_boxes():
    # boxes smaller than one stride, where AdelaiDet's +1 smoothing dominates
    pred = [(0.2, 0.5, 0.8, 0.3), (0.6, 0.6, 0.2, 0.4), (0.3, 0.7, 0.5, 0.2), (0.8, 0.2, 0.4, 0.6)]
    target = [
        (0.4, 0.4, 0.4, 0.4),
        (0.2, 0.8, 0.6, 0.3),
        (0.5, 0.5, 0.7, 0.6),
        (0.3, 0.3, 0.8, 0.2),
    ]
    expected = [1.0 - smoothed_iou(p, t)[1] for p, t in zip(pred, target)]
    got = iou_loss(torch.tensor(pred), torch.tensor(target), loss_type="giou")
    torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=1e-6)
    # torchvision's unsmoothed GIoU loss is far off here (the reason iou_loss exists) ...
    pred, target = torch.tensor(pred), torch.tensor(target)
    tv = generalized_box_iou_loss(ltrb_to_boxes(pred), ltrb_to_boxes(target), reduction="none")
    assert (tv - got).abs().min() > 0.05
    # ... but agrees once the boxes are so large that the +1 no longer counts
    pred, target = pred * 1e4, target * 1e4
    big = iou_loss(pred, target, loss_type="giou")
    tv_big = generalized_box_iou_loss(ltrb_to_boxes(pred), ltrb_to_boxes(target), reduction="none")
    torch.testing.assert_close(big, tv_big, rtol=0, atol=1e-5)


def test_iou_and_linear_iou_losses():
    pred = torch.tensor([[0.2, 0.2, 0.2, 0.2], [2.0, 3.0, 4.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([[0.4, 0.4, 0.4, 0.4], [3.0, 1.0, 2.0, 5.0]], dtype=torch.float64)
    ious = torch.tensor([1.16 / 1.64, 9.0 / 47.0], dtype=torch.float64)
    torch.testing.assert_close(iou_loss(pred, target, "linear_iou"), 1.0 - ious)
    torch.testing.assert_close(iou_loss(pred, target, "iou"), -torch.log(ious))
    with pytest.raises(ValueError, match="LOC_LOSS_TYPE"):
        iou_loss(pred, target, "diou")


def test_giou_loss_gradients_are_finite_for_empty_and_zero_predictions():
    pred = torch.zeros((3, 4), requires_grad=True)
    target = torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0], [0.1, 0.9, 0.2, 0.3]])
    iou_loss(pred, target).sum().backward()
    assert torch.isfinite(pred.grad).all()
    assert iou_loss(torch.zeros((0, 4)), torch.zeros((0, 4))).shape == (0,)


def test_ctrness_targets_hand_values():
    targets = torch.tensor([[1.0, 2.0, 4.0, 2.0], [0.2, 0.8, 0.6, 0.4], [0.5, 0.5, 2.0, 2.0]])
    # sqrt(1/4 * 1), sqrt(1/3 * 1/2), sqrt(1/4 * 1/4)
    expected = torch.tensor([0.5, math.sqrt(1.0 / 6.0), 0.25])
    torch.testing.assert_close(compute_ctrness_targets(targets), expected)


def test_dice_loss_hand_values():
    scores = torch.tensor([[[[0.5, 0.25], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    gt = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    # instance 0: 2 * 1.5 / (1.3125 + 2 + 1e-5); instance 1: 1 - 0 / 1e-5
    expected = torch.tensor([1.0 - 3.0 / (3.3125 + 1e-5), 1.0])
    torch.testing.assert_close(dice_loss(scores, gt), expected)

    # CondInst's loss_mask is the mean over instances (AdelaiDet: mask_losses.mean())
    head = PercepDynamicMaskHead(in_channels=8, sizes_of_interest=[64, 128])
    inst = Instances((8, 8))
    inst.gt_inds = torch.tensor([0, 1])
    losses = head.losses({"mask_scores": scores, "gt_bitmasks": gt}, inst)
    torch.testing.assert_close(losses["loss_mask"], expected.mean())


def make_fcos() -> PercepFCOS:
    head = PercepFCOSHead(
        input_shape=[ShapeSpec(channels=32, stride=s) for s in STRIDES],
        num_classes=2,
        num_cls_convs=1,
        num_box_convs=1,
    )
    return PercepFCOS(
        head=head, in_features=["p3", "p4", "p5"], fpn_strides=STRIDES, sizes_of_interest=[16, 32]
    )


def test_fcos_losses_end_to_end_match_adelaidet_formulas():
    fcos = make_fcos()
    locations = [compute_locations(64 // s, 64 // s, s, torch.device("cpu")) for s in STRIDES]
    gt = Instances((64, 64))
    gt.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 20.0, 20.0]]))
    gt.gt_classes = torch.tensor([1])
    # Positives (see test_fcos.py): the level-0 points (x, y) in {4, 12}^2; targets / stride 8.
    # point (x, y) -> (row, col) on the 8 x 8 level-0 map, target ltrb, predicted ltrb
    points = {
        (4, 4): ((0, 0), (0.5, 0.5, 2.0, 2.0), (0.2, 0.8, 0.6, 0.4)),
        (12, 4): ((0, 1), (1.5, 0.5, 1.0, 2.0), (0.5, 0.5, 0.5, 0.5)),
        (4, 12): ((1, 0), (0.5, 1.5, 2.0, 1.0), (1.0, 2.0, 0.3, 0.7)),
        (12, 12): ((1, 1), (1.5, 1.5, 1.0, 1.0), (1.5, 1.5, 1.0, 1.0)),
    }
    cls_logit, ctr_logit = -2.0, 0.5
    logits = [torch.full((1, 2, 64 // s, 64 // s), cls_logit) for s in STRIDES]
    reg = [torch.full((1, 4, 64 // s, 64 // s), 0.75) for s in STRIDES]
    ctrness = [torch.full((1, 1, 64 // s, 64 // s), ctr_logit) for s in STRIDES]
    for (row, col), _, pred in points.values():
        reg[0][0, :, row, col] = torch.tensor(pred)

    pos, losses = fcos.losses(locations, logits, reg, ctrness, [], [gt], (64, 64))

    assert len(pos) == 4
    got_targets = {
        tuple(int(v) for v in xy): tuple(t)
        for xy, t in zip(pos.locations, pos.reg_targets.tolist())
    }
    assert got_targets == {xy: v[1] for xy, v in points.items()}

    # loss_fcos_loc = sum(ctr * (1 - giou)) / sum(ctr)
    ctrs = {
        xy: math.sqrt(min(t[0], t[2]) / max(t[0], t[2]) * min(t[1], t[3]) / max(t[1], t[3]))
        for xy, (_, t, _) in points.items()
    }
    num = sum(ctrs[xy] * (1.0 - smoothed_iou(p, t)[1]) for xy, (_, t, p) in points.items())
    expected_loc = num / sum(ctrs.values())
    assert losses["loss_fcos_loc"].item() == pytest.approx(expected_loc, rel=1e-5)

    # loss_fcos_ctr = sum BCE(ctr_logit, ctr) / num_pos
    bce = sum(math.log1p(math.exp(ctr_logit)) - c * ctr_logit for c in ctrs.values())
    assert losses["loss_fcos_ctr"].item() == pytest.approx(bce / 4, rel=1e-5)

    # loss_fcos_cls = focal loss summed over all points and classes / num_pos
    p = 1.0 / (1.0 + math.exp(-cls_logit))
    pos_term = 0.25 * (1.0 - p) ** 2 * -math.log(p)
    neg_term = 0.75 * p**2 * -math.log(1.0 - p)
    num_elements = 2 * sum((64 // s) ** 2 for s in STRIDES)  # 2 classes x 84 points
    expected_cls = (4 * pos_term + (num_elements - 4) * neg_term) / 4
    assert losses["loss_fcos_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
