"""PercepPSPHead: pyramid pooling structure, the detectron2 sem-seg head interface, its main and
auxiliary losses, inference, and config errors."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_backbone
from detectron2.modeling.meta_arch.semantic_seg import build_sem_seg_head

from percep_det.modeling.semantic_seg import PercepPSPHead
from tests.modeling.semantic_seg.semseg_helpers import tiny_semseg_cfg


def head_and_features(cfg=None, size=(64, 48)):
    cfg = cfg or tiny_semseg_cfg(percep=False)
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    head = build_sem_seg_head(cfg, backbone.output_shape())
    return head, backbone(torch.randn(2, 3, *size))


def test_structure_follows_pspnet():
    head, features = head_and_features()
    assert isinstance(head, PercepPSPHead)
    in_channels = features["res5"].shape[1]  # 64
    assert [s[0].output_size for s in head.ppm.stages] == [1, 2, 3, 6]
    for stage in head.ppm.stages:
        conv = stage[1]
        assert conv.out_channels == in_channels // 4 and conv.bias is None  # C/4, norm, no bias
        assert isinstance(conv.norm, torch.nn.BatchNorm2d)
    assert head.bottleneck.in_channels == 2 * in_channels and head.bottleneck.kernel_size == (3, 3)
    assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1
    assert head.predictor.kernel_size == (1, 1) and head.predictor.out_channels == 4
    assert head.aux_head[0].in_channels == features["res4"].shape[1]
    assert head.ignore_value == 255 and head.common_stride == 8


def test_layers_losses_and_inference():
    head, features = head_and_features()
    logits = head.layers(features)
    assert logits.shape == (2, 4, 8, 6)  # output stride 8
    labels = torch.randint(0, 4, (2, 64, 48))
    labels[:, :10] = 255
    head.train()
    torch.manual_seed(1)
    _, losses = head(features, labels)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"}

    # the same dropout masks: main loss = CE of the upsampled logits, aux = 0.4 x CE of res4's
    torch.manual_seed(1)
    logits = head.layers(features)
    aux = head.aux_head(features["res4"])
    up = lambda z: F.interpolate(z, size=(64, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(
        losses["loss_sem_seg"], F.cross_entropy(up(logits), labels, ignore_index=255)
    )
    expected_aux = 0.4 * F.cross_entropy(up(aux), labels, ignore_index=255)
    assert torch.allclose(losses["loss_sem_seg_aux"], expected_aux)
    assert torch.allclose(head.losses(logits, labels)["loss_sem_seg"], losses["loss_sem_seg"])

    head.eval()
    results, losses = head(features)
    assert losses == {} and results.shape == (2, 4, 64, 48)
    assert torch.allclose(results, up(head.layers(features)))


def test_without_auxiliary_head():
    cfg = tiny_semseg_cfg(percep=False)
    cfg.MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE = ""
    head, features = head_and_features(cfg)
    assert head.aux_head is None
    head.train()
    _, losses = head(features, torch.randint(0, 4, (2, 64, 48)))
    assert set(losses) == {"loss_sem_seg"}


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("IN_FEATURES", ["res4", "res5"], "MODEL.SEM_SEG_HEAD.IN_FEATURES"),
        ("IN_FEATURES", ["res3"], "MODEL.SEM_SEG_HEAD.IN_FEATURES"),
        ("AUX_IN_FEATURE", "res3", "MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE"),
        ("PSP_BINS", [1, 2, 3], "MODEL.SEM_SEG_HEAD.PSP_BINS"),  # 64 channels / 3 bins
    ],
)
def test_bad_settings_name_their_key(key, value, match):
    cfg = tiny_semseg_cfg(percep=False)
    cfg.MODEL.SEM_SEG_HEAD[key] = value
    with pytest.raises(ValueError, match=match):
        head_and_features(cfg)
