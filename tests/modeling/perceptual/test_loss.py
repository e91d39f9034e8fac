"""Tests of percep_det.modeling.perceptual.loss (CPU, small sizes)."""
import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from torch import nn

from percep_det import add_percep_det_config
from percep_det.modeling.perceptual.loss_network import PercepVGGLossNetwork, PercepZooLossNetwork
from percep_det.modeling.perceptual.loss import (
    PerceptualLoss,
    crop_to_support,
    naive_perceptual_loss,
    perceptual_loss,
)

N, C, H, W = 5, 2, 24, 32


def _inputs(n: int = N, c: int = C, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(n, c, H, W, generator=g, dtype=torch.float64).float().requires_grad_()
    target = (torch.rand(n, c, H, W, generator=g) > 0.5).float()
    return pred, target


def _vgg(**kw) -> PercepVGGLossNetwork:
    return PercepVGGLossNetwork(in_channels=C, blocks=(1, 2, 1), widths=(8, 16, 16), **kw)


def _assert_grad_close(grad, ref):
    # float32 sums in a different order: compare at the scale of the gradient
    torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def _loss_and_grad(fn, pred, target):
    pred = pred.detach().clone().requires_grad_()
    loss = fn(pred, target)
    loss.backward()
    return loss.detach(), pred.grad


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 0, 64])
def test_chunked_equals_naive(chunk_size):
    net = _vgg(out_points=("relu1_1", "pool2", "pool3"), point_weights=(0.5, 1.0, 2.0))
    pred, target = _inputs()
    ref_loss, ref_grad = _loss_and_grad(lambda p, t: naive_perceptual_loss(p, t, net), pred, target)
    loss, grad = _loss_and_grad(
        lambda p, t: perceptual_loss(p, t, net, chunk_size=chunk_size), pred, target
    )
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-9)
    _assert_grad_close(grad, ref_grad)
    assert ref_grad.abs().max() > 0


def test_chunked_equals_naive_zoo_with_batchnorm():
    net = PercepZooLossNetwork(arch="resnet18", in_channels=C, out_points=("stem", "layer2"))
    pred, target = _inputs()
    ref_loss, ref_grad = _loss_and_grad(lambda p, t: naive_perceptual_loss(p, t, net), pred, target)
    loss, grad = _loss_and_grad(lambda p, t: perceptual_loss(p, t, net, chunk_size=2), pred, target)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-9)
    _assert_grad_close(grad, ref_grad)


def test_normalisation_and_multi_level_weights():
    points, weights = ("pool1", "pool2", "pool3"), (1 / 4, 1 / 2, 1.0)
    net = _vgg(out_points=points, point_weights=weights)
    pred, target = _inputs()
    with torch.no_grad():
        fp, ft = net(pred), net(target)
        expected = 0.0
        for p, w in zip(points, weights):
            # paper eq. 1 per instance (mean over C_p * H_p * W_p), then mean over instances
            per_instance = [(fp[p][i] - ft[p][i]).pow(2).sum() / fp[p][i].numel() for i in range(N)]
            expected = expected + w * torch.stack(per_instance).mean()
            torch.testing.assert_close(
                torch.stack(per_instance).mean(), F.mse_loss(fp[p], ft[p]), rtol=1e-5, atol=0
            )
    torch.testing.assert_close(perceptual_loss(pred, target, net, chunk_size=2), expected)
    # each level alone, combined by hand
    singles = [
        perceptual_loss(pred, target, _vgg(out_points=(p,)), chunk_size=3) for p in points
    ]
    torch.testing.assert_close(
        perceptual_loss(pred, target, net), sum(w * s for w, s in zip(weights, singles))
    )


def test_empty_batch_is_zero_and_connected():
    net = _vgg()
    pred, target = _inputs(n=0)
    loss = perceptual_loss(pred, target, net)
    assert loss.requires_grad and loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and pred.grad.shape == (0, C, H, W)


def test_no_grad_path_and_target_gets_no_gradient():
    net = _vgg()
    pred, target = _inputs()
    with torch.no_grad():
        value = perceptual_loss(pred, target, net, chunk_size=2)
    assert not value.requires_grad
    target.requires_grad_()
    loss = perceptual_loss(pred, target, net, chunk_size=2)
    loss.backward()
    torch.testing.assert_close(loss.detach(), value)
    assert target.grad is None and pred.grad is not None
    # upstream gradient scales the stored gradient
    p2 = pred.detach().clone().requires_grad_()
    (3.0 * perceptual_loss(p2, target, net, chunk_size=2)).backward()
    torch.testing.assert_close(p2.grad, 3.0 * pred.grad)


def test_peak_saved_activations_do_not_grow_with_n():
    """Bytes held for backward (all autograd saved tensors alive at once), measured with
    saved-tensor hooks: O(chunk) for the chunked loss, O(n) for the naive one."""
    net = _vgg()

    def peak_saved_bytes(fn, n):
        state = {"live": 0, "peak": 0}

        class Held:
            def __init__(self, t):
                self.t, self.nbytes = t, t.nbytes  # views of pred: only the slice
                state["live"] += self.nbytes
                state["peak"] = max(state["peak"], state["live"])

            def __del__(self):
                state["live"] -= self.nbytes

        pred, target = _inputs(n=n)
        with torch.autograd.graph.saved_tensors_hooks(Held, lambda h: h.t):
            fn(pred, target).backward()
        return state["peak"]

    chunked = lambda p, t: perceptual_loss(p, t, net, chunk_size=2)  # noqa: E731
    naive = lambda p, t: naive_perceptual_loss(p, t, net)  # noqa: E731
    assert peak_saved_bytes(chunked, 16) <= peak_saved_bytes(chunked, 2) * 1.01
    assert peak_saved_bytes(naive, 16) >= 7 * peak_saved_bytes(naive, 2)
    assert peak_saved_bytes(naive, 16) >= 6 * peak_saved_bytes(chunked, 16)


def test_precision_options():
    net = _vgg()
    pred, target = _inputs()
    torch.backends.cudnn.allow_tf32 = True
    ref = perceptual_loss(pred, target, net)
    assert torch.backends.cudnn.allow_tf32  # restored after the fp32 section
    assert ref.dtype == torch.float32
    low = perceptual_loss(pred, target, net, precision="bf16")
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=0.1, atol=0)
    low.backward()
    assert pred.grad.dtype == torch.float32
    # fp32 inside the loss for a low-precision pred; gradient comes back in pred's dtype
    p16 = pred.detach().bfloat16().requires_grad_()
    loss = perceptual_loss(p16, target.bfloat16(), net)
    loss.backward()
    assert loss.dtype == torch.float32 and p16.grad.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="PRECISION"):
        perceptual_loss(pred, target, net, precision="fp8")
    # tf32: fp32 tensors (on CPU identical to fp32), TF32 switches restored afterwards
    torch.backends.cudnn.allow_tf32 = False
    tf32 = perceptual_loss(pred.detach(), target, net, precision="tf32")
    assert not torch.backends.cudnn.allow_tf32
    torch.testing.assert_close(tf32, ref.detach(), rtol=1e-3, atol=0)
    torch.backends.cudnn.allow_tf32 = True


def test_channels_last_matches():
    net = _vgg()
    pred, target = _inputs()
    ref_loss, ref_grad = _loss_and_grad(lambda p, t: perceptual_loss(p, t, net), pred, target)
    loss, grad = _loss_and_grad(
        lambda p, t: perceptual_loss(p, t, net, channels_last=True), pred, target
    )
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-9)
    _assert_grad_close(grad, ref_grad)
    assert grad.is_contiguous()


def test_bad_inputs_raise():
    net = _vgg()
    pred, target = _inputs()
    with pytest.raises(ValueError, match="same shape"):
        perceptual_loss(pred, target[:, :1], net)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        perceptual_loss(pred[:, :1], target[:, :1], net)
    trainable = _vgg()
    trainable.layers.conv1_1.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen.*conv1_1"):
        perceptual_loss(pred, target, trainable)


def _tiny_cfg(**keys):
    cfg = get_cfg()
    add_percep_det_config(cfg)
    cfg.MODEL.PERCEPTUAL_LOSS.merge_from_list(
        ["BLOCKS", [1, 1], "WIDTHS", [8, 8], "LOSS_WEIGHT", 0.25, "CHUNK_SIZE", 2]
    )
    for key, value in keys.items():
        cfg.MODEL.PERCEPTUAL_LOSS[key] = value
    return cfg


def test_perceptual_loss_module_from_config():
    module = PerceptualLoss(_tiny_cfg(), in_channels=C)
    assert module.loss_weight == 0.25 and module.chunk_size == 2
    assert not module._loss_network.is_built  # built lazily, on first use
    pred, target = _inputs()
    net = module.loss_network()
    assert net.in_channels == C  # in_channels given by the task, not IN_CHANNELS
    expected = 0.25 * naive_perceptual_loss(pred, target, net)
    torch.testing.assert_close(module(pred, target), expected)
    torch.testing.assert_close(module.unweighted(pred, target), expected / 0.25)

    # the loss network lives outside the module tree: no state_dict keys, no parameters
    parent = nn.Module()
    parent.head = nn.Conv2d(C, C, 1)
    parent.loss = module
    parent.train()
    assert not net.training
    assert list(parent.state_dict()) == ["head.weight", "head.bias"]
    assert list(parent.parameters()) == list(parent.head.parameters())


def test_input_cap_and_crop_work_for_several_channels():
    torch.manual_seed(0)
    c = 3
    cfg = _tiny_cfg()
    capped = PerceptualLoss(cfg, in_channels=c, max_inputs=2)
    pred = torch.rand(6, c, 16, 16, requires_grad=True)
    target = torch.rand(6, c, 16, 16)
    seen = []
    net = capped.loss_network()
    handle = net.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    loss = capped(pred, target)
    handle.remove()
    assert {tuple(s) for s in seen} == {(2, c, 16, 16)}  # 2 random inputs of 6, all channels
    loss.backward()
    assert (pred.grad.flatten(1).abs().sum(1) > 0).sum() == 2  # gradient only to the chosen ones

    # crop: with a margin covering everything it equals the full loss, for C > 1
    pred = torch.zeros(5, c, 32, 24)
    target = torch.zeros(5, c, 32, 24)
    pred[:, 1, 8:14, 4:9] = 0.7  # support in one channel of the prediction ...
    target[:, 2, 10:20, 5:15] = 1  # ... and another of the target
    full = PerceptualLoss(cfg, in_channels=c)
    cropped = PerceptualLoss(cfg, in_channels=c, crop=True, crop_margin=64, crop_align=4)
    cropped._loss_network = full._loss_network  # same net
    torch.testing.assert_close(cropped(pred, target), full(pred, target))
    buckets = crop_to_support(pred, target, thresh=0.5, margin=0, align=4, bucket_size=8)
    (p, t, _), = buckets
    # the box spans the support of both channels: rows 8..20, cols 4..15 -> snapped to 4
    assert p.shape == (5, c, 12, 12) and t.shape == (5, c, 12, 12)
    tight = PerceptualLoss(cfg, in_channels=c, crop=True, crop_margin=4, crop_align=4)
    tight._loss_network = full._loss_network
    torch.testing.assert_close(tight(pred, target), full(pred, target), rtol=0.05, atol=0)


def test_crop_equals_the_full_loss_when_the_margin_covers_the_mask():
    torch.manual_seed(0)
    net = PercepVGGLossNetwork(blocks=(1, 1), widths=(8, 8))  # total pooling stride 4
    pred = torch.rand(5, 1, 32, 24) * 0.2
    target = torch.zeros(5, 1, 32, 24)
    target[:, :, 10:20, 5:15] = 1
    full = perceptual_loss(pred, target, net)
    buckets = crop_to_support(pred, target, thresh=0.5, margin=64, align=4, bucket_size=2)
    assert [p.shape[0] for p, _, _ in buckets] == [2, 2, 1]
    cropped = sum(s * perceptual_loss(p, t, net) for p, t, s in buckets)
    assert torch.allclose(cropped, full, rtol=1e-5)

    # a tight crop (support = target, pred small outside) is a close approximation and cheaper
    pred = target * 0.8 + 0.01
    full = perceptual_loss(pred, target, net)
    buckets = crop_to_support(pred, target, thresh=0.05, margin=4, align=4, bucket_size=8)
    assert buckets[0][0].shape[-2:] == (20, 20)
    cropped = sum(s * perceptual_loss(p, t, net) for p, t, s in buckets)
    assert torch.allclose(cropped, full, rtol=0.05)


def test_bad_options_are_errors():
    with pytest.raises(ValueError, match="PRECISION"):
        PerceptualLoss(_tiny_cfg(PRECISION="fp8"), in_channels=1)
    with pytest.raises(ValueError, match="cap"):
        PerceptualLoss(_tiny_cfg(), in_channels=1, max_inputs=0)

