"""Depth bins, the weighted cross-entropy and soft decoding, on values written down by hand."""

import math

import pytest
import torch

from percep_det.modeling.depth import (
    bin_centres_log10,
    bin_edges_log10,
    depth_to_bin,
    soft_decode,
    wce_weight_matrix,
    weighted_cross_entropy,
)


def test_edges_and_centres():
    # 1 m .. 100 m in 2 bins: log10 edges 0, 1, 2; centres 0.5, 1.5
    assert bin_edges_log10(1.0, 100.0, 2).tolist() == [0.0, 1.0, 2.0]
    assert bin_centres_log10(1.0, 100.0, 2).tolist() == [0.5, 1.5]
    # VNL's NYU bins (normalised units 0.01 .. 1.7, 150 bins): centre 0 = log10(0.01) + delta / 2
    c = bin_centres_log10(0.01, 1.7, 150)
    delta = (math.log10(1.7) + 2) / 150
    assert c[0].item() == pytest.approx(-2 + delta / 2) and c[-1].item() == pytest.approx(
        math.log10(1.7) - delta / 2
    )
    with pytest.raises(ValueError, match="MIN_DEPTH"):
        bin_centres_log10(0.0, 10.0, 4)


def test_gt_bin_assignment():
    depth = torch.tensor([0.0, 1.0, 9.99, 10.0, 100.0, 1000.0, 0.5, float("nan"), -3.0])
    # invalid (0, nan, < 0) -> -1; 10 m is on the edge: the upper bin; beyond the range: clamped
    assert depth_to_bin(depth, 1.0, 100.0, 2).tolist() == [-1, 0, 0, 1, 1, 1, 0, -1, -1]
    # 4 bins over 1 .. 10^4: edges at 10, 100, 1000
    assert depth_to_bin(torch.tensor([5.0, 50.0, 500.0, 5000.0]), 1.0, 1e4, 4).tolist() == [
        0,
        1,
        2,
        3,
    ]


def test_wce_weight_matrix():
    # alpha = ln 2: exp(-alpha k^2) = 2^(-k^2): 1, 1/2, 1/16 -> row 0 / 1.5625 = 0.64, 0.32, 0.04
    w = wce_weight_matrix(3, math.log(2))
    expected = [[0.64, 0.32, 0.04], [0.25, 0.5, 0.25], [0.04, 0.32, 0.64]]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    assert torch.equal(wce_weight_matrix(3, 0.0), torch.full((3, 3), 1 / 3))


def test_weighted_cross_entropy_by_hand():
    w = wce_weight_matrix(3, math.log(2))
    # pixel 0: bin 0, logits (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4):
    #   -(0.64 ln 1/2 + 0.32 ln 1/4 + 0.04 ln 1/4) = 0.64 ln 2 + 0.72 ln 2 = 1.36 ln 2
    # pixel 1: invalid (-1): left out
    logits = torch.tensor([[[[math.log(2), 5.0]], [[0.0, -2.0]], [[0.0, 1.0]]]])  # (1, 3, 1, 2)
    bins = torch.tensor([[[0, -1]]])
    assert weighted_cross_entropy(logits, bins, w).item() == pytest.approx(
        1.36 * math.log(2), rel=1e-6
    )
    # uniform logits: ln 3 whatever the bin (rows sum to 1)
    assert weighted_cross_entropy(
        torch.zeros(1, 3, 1, 2), torch.tensor([[[1, 2]]]), w
    ).item() == pytest.approx(math.log(3))
    # nothing valid: 0, still differentiable
    logits.requires_grad_(True)
    loss = weighted_cross_entropy(logits, torch.full((1, 1, 2), -1), w)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="logits"):
        weighted_cross_entropy(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long), w)


def test_soft_decode():
    c = bin_centres_log10(1.0, 100.0, 2)  # 0.5, 1.5
    # equal logits: expected log-depth 1.0 -> 10 m; (ln 3, 0): p = (3/4, 1/4) -> 0.75 -> 10^0.75
    logits = torch.tensor([[[[0.0, math.log(3)]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    out = soft_decode(logits, c)
    assert out.shape == (1, 1, 1, 2)
    assert out[0, 0, 0].tolist() == pytest.approx([10.0, 10**0.75], rel=1e-5)
    # a peaked distribution decodes to its bin's centre
    assert soft_decode(torch.tensor([[[[50.0]], [[0.0]]]]), c).item() == pytest.approx(
        10**0.5, rel=1e-5
    )
