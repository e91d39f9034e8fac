"""The virtual normal loss: planes, filters, invalid pixels (hand-made geometry)."""

import pytest
import torch

from percep_det.modeling.depth import (
    back_project,
    sample_triplets,
    virtual_normal_filter,
    virtual_normal_loss,
    virtual_normals,
)

K = torch.tensor([50.0, 50.0, 16.0, 16.0])  # fx, fy, cx, cy of a 32 x 32 image


def plane_depth(normal, rho=2.0, size=32, intrinsics=K):
    """Depth of the plane n . X = rho: Z = rho / (n . K^-1 [u, v, 1]), pixel centres at +1/2."""
    fx, fy, cx, cy = intrinsics.tolist()
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    nx, ny, nz = normal
    return rho / (nx * (u - cx) / fx + ny * (v - cy) / fy + nz)


def test_back_project():
    # pixel (row 15, col 40) has its centre at (u, v) = (40.5, 15.5): x = (40.5 - 16) * 2 / 50
    p = back_project(torch.tensor([2.0]), torch.tensor([15]), torch.tensor([40]), K)
    assert p[0].tolist() == pytest.approx([0.98, -0.02, 2.0])


def test_zero_for_a_perfect_slanted_plane_and_positive_for_a_wrong_slope():
    gt = plane_depth((0.0, 0.6, 1.0))[None]  # a floor-like slanted plane, (1, 32, 32)
    torch.manual_seed(0)
    loss = virtual_normal_loss(gt.clone(), gt, K[None])
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    wrong = plane_depth((0.4, 0.2, 1.0))[None]
    torch.manual_seed(0)
    assert virtual_normal_loss(wrong, gt, K[None]).item() > 0.1
    # the same plane at another distance has the same normals: VNL is blind to that scale
    torch.manual_seed(0)
    assert virtual_normal_loss(gt * 1.5, gt, K[None]).item() == pytest.approx(0.0, abs=1e-5)


def test_filters_drop_colinear_and_too_close_triplets():
    good = [[0.0, 0.0, 1.0], [0.5, 0.2, 1.3], [0.1, 0.6, 1.6]]
    colinear = [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [2.0, 0.1, 1.0]]
    # some edge short in x (P1P2), some in y (P1P3), some in z (P1P2): too close
    close = [[0.0, 0.0, 1.0], [0.01, 0.6, 1.0], [0.6, 0.01, 1.3]]
    keep = virtual_normal_filter(torch.tensor([good, colinear, close]), 0.867, 0.05)
    assert keep.tolist() == [True, False, False]
    # with a 1 cm threshold the third triplet is no longer "too close"
    assert virtual_normal_filter(torch.tensor([close]), 0.867, 0.005).tolist() == [True]
    n = virtual_normals(torch.tensor([[[0.0, 0, 1], [1, 0, 1], [0, 1, 1]]]))
    assert n.tolist() == [[0.0, 0.0, 1.0]]


def test_invalid_pixels_are_never_sampled():
    valid = torch.zeros(6, 7, dtype=torch.bool)
    valid[1, 2] = valid[4, 5] = valid[5, 0] = valid[2, 6] = True
    index = sample_triplets(valid, 500, torch.Generator().manual_seed(1))
    assert index.shape == (500, 3)
    assert set(index.flatten().tolist()) <= {1 * 7 + 2, 4 * 7 + 5, 5 * 7 + 0, 2 * 7 + 6}
    assert sample_triplets(torch.zeros(3, 3, dtype=torch.bool), 10).shape == (0, 3)


def test_loss_ignores_predictions_at_invalid_pixels():
    gt = plane_depth((0.2, 0.5, 1.0))[None]
    gt[:, :, :10] = 0  # invalid columns
    pred = plane_depth((0.0, 0.3, 1.0))[None]
    other = pred.clone()
    other[:, :, :10] = 123.0  # whatever is predicted there
    a = virtual_normal_loss(pred, gt, K[None], generator=torch.Generator().manual_seed(3))
    b = virtual_normal_loss(other, gt, K[None], generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item() > 0
    # nothing valid: 0 with a graph
    pred.requires_grad_(True)
    zero = virtual_normal_loss(pred, torch.zeros_like(gt), K[None])
    zero.backward()
    assert zero.item() == 0.0 and pred.grad is not None


def test_hardest_share():
    gt = plane_depth((0.0, 0.6, 1.0))[None]
    pred = plane_depth((0.3, 0.1, 1.0))[None]
    all_ = virtual_normal_loss(
        pred, gt, K[None], keep_hardest=1.0, generator=torch.Generator().manual_seed(0)
    )
    hard = virtual_normal_loss(
        pred, gt, K[None], keep_hardest=0.25, generator=torch.Generator().manual_seed(0)
    )
    assert hard.item() >= all_.item() > 0
    with pytest.raises(ValueError, match="VNL_KEEP_HARDEST"):
        virtual_normal_loss(pred, gt, K[None], keep_hardest=0.0)
