"""FCOS: target assignment on hand-made boxes / masks (expected values worked out by hand from the
rules), losses and inference post-processing."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, ImageList, Instances

from percep_det.modeling.condinst.fcos import PercepFCOS, PercepFCOSHead
from percep_det.modeling.layers import compute_ctrness_targets, compute_locations

STRIDES = [8, 16, 32]


def make_fcos(sizes_of_interest=(16, 32), num_classes=2, **kwargs) -> PercepFCOS:
    head = PercepFCOSHead(
        input_shape=[ShapeSpec(channels=32, stride=s) for s in STRIDES],
        num_classes=num_classes,
        num_cls_convs=1,
        num_box_convs=1,
    )
    return PercepFCOS(
        head=head,
        in_features=["p3", "p4", "p5"],
        fpn_strides=STRIDES,
        sizes_of_interest=list(sizes_of_interest),
        **kwargs,
    )


def locations_64():
    # a 64x64 padded image: 8x8, 4x4 and 2x2 points
    return [compute_locations(64 // s, 64 // s, s, torch.device("cpu")) for s in STRIDES]


def gt(boxes, classes, masks=None):
    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    if masks is not None:
        inst.gt_bitmasks_full = masks
    return inst


def positives(labels, locations, image=0):
    """{(level, x, y): label} of the foreground points of one image."""
    points = torch.cat(locations)
    levels = torch.cat([torch.full((len(loc),), i) for i, loc in enumerate(locations)])
    out = {}
    for r in torch.nonzero(labels[image] != 2).squeeze(1).tolist():
        x, y = points[r].tolist()
        out[(int(levels[r]), int(x), int(y))] = int(labels[image, r])
    return out


def test_locations_are_cell_centres():
    loc = compute_locations(2, 3, 16, torch.device("cpu"))
    assert loc.tolist() == [[8, 8], [24, 8], [40, 8], [8, 24], [24, 24], [40, 24]]


def test_size_ranges_are_inclusive_and_centre_sampling_uses_box_centre():
    # ranges: level 0 [-1, 16], level 1 [16, 32], level 2 [32, INF]
    fcos = make_fcos()
    loc = locations_64()
    # A = (0, 0, 20, 20): centre (10, 10); level-0 region (0, 20)^2 holds x, y in {4, 12};
    #   their max ltrb distances are 16, 16, 16, 12 -> all in [-1, 16] (16 is inclusive).
    #   The level-1 point (8, 8) has max 12 (< 16) and level-2 (16, 16) has 16 (< 32): none.
    # B = (8, 8, 56, 40): centre (32, 24); no level-0 point can have max <= 16 (width 48);
    #   level 1 (radius 24, region (8, 56) x (8, 40)): (24, 24) and (40, 24), max 32 (inclusive);
    #   level 2 (region = the box): (16, 16) and (48, 16), max 40 >= 32.
    labels, reg, inds = fcos.label_points(loc, [gt([[0, 0, 20, 20], [8, 8, 56, 40]], [0, 1])])
    expected = {(0, 4, 4): 0, (0, 12, 4): 0, (0, 4, 12): 0, (0, 12, 12): 0}
    expected.update({(1, 24, 24): 1, (1, 40, 24): 1, (2, 16, 16): 1, (2, 48, 16): 1})
    assert positives(labels, loc) == expected

    points = torch.cat(loc)
    r = ((points == torch.tensor([24.0, 24.0])).all(dim=1)).nonzero().item()  # only on level 1
    assert reg[0, r].tolist() == [16 / 16, 16 / 16, 32 / 16, 16 / 16]  # ltrb / stride
    assert inds[0, r].item() == 1
    assert (inds[labels == 2] == -1).all()


def test_ambiguous_points_go_to_the_smallest_box_and_gt_inds_span_the_batch():
    fcos = make_fcos()
    loc = locations_64()
    # D = (0, 0, 64, 64) and E = (8, 8, 56, 56), both centred at (32, 32).
    # Level 2: all four points (16|48, 16|48) qualify for both (max 48 for D, 40 for E): E wins.
    # Level 1: (24|40, 24|40) have max 40 for D (> 32) but 32 for E. Level 0: none (max > 16).
    image1 = gt([[0, 0, 64, 64], [8, 8, 56, 56]], [0, 1])
    image0 = gt([[0, 0, 20, 20]], [1])
    empty = gt([], [])
    labels, _, inds = fcos.label_points(loc, [image0, empty, image1])
    expected = {(2, x, y): 1 for x in (16, 48) for y in (16, 48)}
    expected.update({(1, x, y): 1 for x in (24, 40) for y in (24, 40)})
    assert positives(labels, loc, image=2) == expected
    assert set(inds[2][labels[2] != 2].tolist()) == {2}  # E is gt 2 of the batch (1 + 0 + 1)
    assert (labels[1] == 2).all() and (inds[1] == -1).all()
    assert set(inds[0][labels[0] != 2].tolist()) == {0}


def test_centre_sampling_uses_the_mask_centroid():
    fcos = make_fcos(sizes_of_interest=(64, 128))  # everything on level 0 (radius 12)
    loc = locations_64()
    box = [[0, 0, 64, 32]]
    # The mask covers x < 16 only: centroid (7.5, 15.5) -> region (0, 19.5) x (3.5, 27.5):
    # x in {4, 12}, y in {4, 12, 20} -> 6 points. (The box centre (32, 16) would give
    # (20, 44) x (4, 28): x in {28, 36}, y in {12, 20}.)
    mask = torch.zeros((1, 64, 64))
    mask[0, :32, :16] = 1
    labels, _, _ = fcos.label_points(loc, [gt(box, [1], mask)])
    assert positives(labels, loc) == {(0, x, y): 1 for x in (4, 12) for y in (4, 12, 20)}
    labels, _, _ = fcos.label_points(loc, [gt(box, [1])])
    assert positives(labels, loc) == {(0, x, y): 1 for x in (28, 36) for y in (12, 20)}


def test_without_centre_sampling_every_point_inside_the_box_counts():
    fcos = make_fcos(sizes_of_interest=(64, 128), center_sample=False)
    loc = locations_64()
    labels, _, _ = fcos.label_points(loc, [gt([[0, 0, 20, 20]], [0])])
    # level 0 points strictly inside (0, 20): x, y in {4, 12}
    assert positives(labels, loc) == {(0, x, y): 0 for x in (4, 12) for y in (4, 12)}


def test_ctrness_targets():
    t = compute_ctrness_targets(torch.tensor([[2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 4.0, 2.0]]))
    assert torch.allclose(t, torch.tensor([1.0, 0.5]))
    assert compute_ctrness_targets(torch.zeros((0, 4))).shape == (0,)


def run_losses(fcos, gts):
    torch.manual_seed(0)
    features = {
        f"p{i + 3}": torch.randn(len(gts), 32, 64 // s, 64 // s) for i, s in enumerate(STRIDES)
    }
    images = ImageList(torch.zeros(len(gts), 3, 64, 64), [(64, 64)] * len(gts))
    fcos.train()
    return fcos(images, features, gts)


def test_losses_are_finite_and_positives_carry_their_indices():
    fcos = make_fcos()
    pos, losses = run_losses(
        fcos, [gt([[0, 0, 20, 20]], [0]), gt([], []), gt([[8, 8, 56, 40]], [1])]
    )
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(pos) == 4 + 4
    assert sorted(set(pos.im_inds.tolist())) == [0, 2]
    assert (pos.gt_inds[pos.im_inds == 2] == 1).all()
    assert pos.fpn_levels[pos.im_inds == 0].tolist() == [0] * 4
    for field in ("locations", "reg_targets", "reg_pred", "logits_pred", "ctrness_pred", "gt_ctrs"):
        assert len(getattr(pos, field)) == len(pos)


def test_losses_without_any_ground_truth():
    fcos = make_fcos()
    pos, losses = run_losses(fcos, [gt([], []), gt([], [])])
    assert len(pos) == 0
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert fcos.fcos_head.cls_logits.weight.grad is not None


@pytest.mark.parametrize("post_nms_topk, expected", [(100, 2), (1, 1)])
def test_inference_class_aware_nms_and_topk(post_nms_topk, expected):
    fcos = make_fcos(post_nms_topk_test=post_nms_topk, thresh_with_ctr=True)
    fcos.eval()
    loc = locations_64()
    logits = [torch.full((1, 2, 64 // s, 64 // s), -10.0) for s in STRIDES]
    reg = [torch.ones((1, 4, 64 // s, 64 // s)) for s in STRIDES]  # 2*stride boxes around points
    ctr = [torch.full((1, 1, 64 // s, 64 // s), 10.0) for s in STRIDES]
    # level 0: point (x 4, y 4) scores class 0 and class 1; point (x 12, y 4) scores class 0
    # with distances that give the same box (-4, -4, 12, 12).
    logits[0][0, 0, 0, 0] = 5.0
    logits[0][0, 1, 0, 0] = 4.0
    reg[0][0, :, 0, 1] = torch.tensor([16.0, 8.0, 0.0, 8.0]) / 8  # ltrb in strides
    logits[0][0, 0, 0, 1] = 3.0
    results = fcos.predict_proposals(loc, logits, reg, ctr, [], [(64, 64)])
    res = results[0]
    # class 0: two identical boxes -> NMS keeps the better one; class 1 survives (class-aware)
    assert len(res) == expected
    assert res.scores[0] == res.scores.max()
    assert res.pred_classes[0].item() == 0
    assert res.pred_boxes.tensor[0].tolist() == [-4.0, -4.0, 12.0, 12.0]
    if expected == 2:
        assert sorted(res.pred_classes.tolist()) == [0, 1]
