"""PercepSemanticSegmentor: the perceptual term on detectron2's sem-seg heads (SemSegFPNHead,
DeepLabV3PlusHead, DeepLabV3Head) and PercepPSPHead without copying them; ignore pixels; the plain
model's inference and state_dict."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import SemanticSegmentor

from percep_det.modeling.perceptual import perceptual_loss
from percep_det.modeling.semantic_seg import PercepSemanticSegmentor, sample_labels
from tests.helpers import assert_frozen_outside, train_step
from tests.modeling.semantic_seg.semseg_helpers import (
    HEADS,
    build,
    deterministic,
    make_inputs,
    teacher_cfg_of,
    tiny_semseg_cfg,
    write_model,
)

EXPECTED_STRIDE = {"psp": 8, "fpn": 4, "deeplabv3plus": 4, "deeplabv3": 8}


@pytest.mark.parametrize("head", HEADS)
def test_each_head_returns_its_losses_and_a_positive_term_that_reaches_the_head(head):
    cfg = tiny_semseg_cfg(head)
    model = build(cfg)
    assert isinstance(model, PercepSemanticSegmentor)
    assert model.sem_seg_head.common_stride == EXPECTED_STRIDE[head]
    losses = train_step(model, make_inputs())
    expected = {"loss_sem_seg", "loss_sem_seg_percep"} | (
        {"loss_sem_seg_aux"} if head == "psp" else set()
    )
    assert set(losses) == expected
    term = losses["loss_sem_seg_percep"]
    assert torch.isfinite(term) and term > 0
    assert all(torch.isfinite(v) for v in losses.values())

    model.zero_grad()
    term.backward()
    predictor = model.sem_seg_head.predictor.weight
    assert predictor.grad is not None and predictor.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    net = model.perceptual_loss.loss_network()
    assert_frozen_outside(model, net)
    # lambda comes from MODEL.PERCEPTUAL_LOSS.LOSS_WEIGHT, the net's channels from NUM_CLASSES
    assert model.perceptual_loss.loss_weight == cfg.MODEL.PERCEPTUAL_LOSS.LOSS_WEIGHT
    assert net.spec["IN_CHANNELS"] == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES


@pytest.mark.parametrize("head", HEADS)
def test_inference_and_state_dict_equal_the_plain_segmentor(head, tmp_path):
    cfg = tiny_semseg_cfg(head)
    model = build(cfg)
    train_step(model, make_inputs())  # moves BN statistics: the weights are not the init ones
    plain_cfg = tiny_semseg_cfg(head, percep=False)
    plain = build(plain_cfg, seed=3)
    assert type(plain) is SemanticSegmentor
    assert list(model.state_dict()) == list(plain.state_dict())
    # a checkpoint of the perceptual model loads strictly into the plain one
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    plain.load_state_dict(torch.load(path), strict=True)
    assert not model.perceptual_loss.loss_network().training  # built, frozen, outside the tree
    model.eval(), plain.eval()
    inputs = make_inputs(seed=1, size=(60, 52))  # padding and cropping included
    with torch.no_grad():
        out, ref = model(inputs), plain(inputs)
    for o, r in zip(out, ref):
        assert o["sem_seg"].shape == (4, 60, 52)
        assert torch.equal(o["sem_seg"], r["sem_seg"])


def test_inference_never_builds_the_loss_network():
    model = build(tiny_semseg_cfg())
    model.eval()
    with torch.no_grad():
        model(make_inputs())
    assert not model.perceptual_loss._loss_network.is_built


@pytest.mark.parametrize("head", ["psp", "deeplabv3plus"])
def test_term_is_zero_when_the_students_softmax_equals_the_target(head, tmp_path):
    """The teacher is the student itself (same weights, no dropout or batch statistics): its
    softmax at T = 1 is the student's, so the term is 0."""
    cfg = deterministic(tiny_semseg_cfg(head))
    config_file, weights = write_model(str(tmp_path), cfg, seed=7)
    model = build(teacher_cfg_of(cfg, config_file, weights))
    model.load_state_dict(torch.load(weights)["model"])
    for resolution in ("label", "output"):
        model.resolution = resolution
        losses = train_step(model, make_inputs())
        assert losses["loss_sem_seg"] > 0
        assert losses["loss_sem_seg_percep"].abs() < 1e-9


def _term_inputs(num_classes=4, size=(40, 48), stride=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, size[0] // stride, size[1] // stride, generator=gen)
    labels = torch.randint(0, num_classes, (2, *size), generator=gen)
    labels[0, :16, :24] = 255
    labels[1, 20:, :] = 255
    return logits, labels


def test_term_equals_the_masked_perceptual_loss_of_softmax_and_one_hot():
    model = build(tiny_semseg_cfg())
    logits, labels = _term_inputs()
    images = torch.zeros(2, 3, *labels.shape[-2:])
    net = model.perceptual_loss.loss_network()
    lam = model.perceptual_loss.loss_weight
    for resolution in ("label", "output"):
        model.resolution = resolution
        if resolution == "label":
            z, y = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear"), labels
        else:
            z, y = logits, sample_labels(labels, logits.shape[-2:])
        valid = (y != 255)[:, None].float()
        onehot = F.one_hot(y.clamp(max=3), 4).permute(0, 3, 1, 2).float()
        expected = lam * perceptual_loss(F.softmax(z, 1) * valid, onehot * valid, net)
        assert torch.allclose(model.perceptual_term(images, logits, labels), expected, rtol=1e-6)


def test_sample_labels_takes_the_centre_of_each_cell():
    labels = torch.arange(16 * 16).view(1, 16, 16)
    out = sample_labels(labels, (2, 4))
    assert out.tolist() == [
        [[4 * 16 + 2, 4 * 16 + 6, 4 * 16 + 10, 4 * 16 + 14]]
        + [[12 * 16 + 2, 12 * 16 + 6, 12 * 16 + 10, 12 * 16 + 14]]
    ]


@pytest.mark.parametrize("resolution", ["label", "output"])
@pytest.mark.parametrize("target", ["gt", "teacher"])
def test_ignore_pixels_do_not_contribute(resolution, target, tmp_path):
    """Prediction, teacher output and (by construction) the label under an ignore pixel change
    nothing; a batch that is all ignore gives 0."""
    cfg = tiny_semseg_cfg()
    cfg.MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION = resolution
    if target == "teacher":
        cfg = teacher_cfg_of(cfg, *write_model(str(tmp_path), tiny_semseg_cfg()))
    model = build(cfg)
    logits, labels = _term_inputs()
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, *labels.shape[-2:], generator=gen)
    base = model.perceptual_term(images, logits, labels)
    assert base > 0

    # other student logits where the (sampled) label is ignore
    if resolution == "label":
        # at label resolution a logit cell reaches half a cell into its neighbours (bilinear
        # upsampling): change the cells whose own 8 x 8 pixels and all 8 neighbours are ignore
        ignored = F.max_pool2d((labels != 255)[:, None].float(), 8, 8) == 0
        ignore_cells = -F.max_pool2d(-ignored.float(), 3, 1, padding=1) > 0
    else:
        ignore_cells = (sample_labels(labels, logits.shape[-2:]) == 255)[:, None]
    assert ignore_cells.any() and not ignore_cells.all()
    noise = torch.randn(logits.shape, generator=gen) * 5
    changed = torch.where(ignore_cells, noise, logits)
    assert not torch.equal(changed, logits)
    assert torch.allclose(model.perceptual_term(images, changed, labels), base, rtol=1e-5)

    if target == "teacher":  # other teacher logits (same stride) at the same cells
        original = model.teacher.forward
        model.teacher.forward = lambda x: torch.where(ignore_cells, noise, original(x))
        assert torch.allclose(model.perceptual_term(images, logits, labels), base, rtol=1e-5)
        model.teacher.forward = lambda x: original(x) + noise  # everywhere: a different term
        assert not torch.allclose(model.perceptual_term(images, logits, labels), base, rtol=1e-3)
        model.teacher.forward = original

    all_ignored = torch.full_like(labels, 255)
    assert model.perceptual_term(images, logits, all_ignored) == 0


def test_labels_outside_the_classes_name_num_classes():
    model = build(tiny_semseg_cfg())
    logits, labels = _term_inputs()
    labels[0, 30, 30] = 7
    with pytest.raises(ValueError, match="MODEL.SEM_SEG_HEAD.NUM_CLASSES"):
        model.perceptual_term(torch.zeros(2, 3, 40, 48), logits, labels)


def test_a_too_small_map_for_the_loss_network_names_the_resolution_key():
    cfg = tiny_semseg_cfg()
    cfg.MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION = "output"
    cfg.MODEL.PERCEPTUAL_LOSS.BLOCKS = [1, 1, 1, 1, 1]  # needs 32 px: 64 px images give 8 x 8
    cfg.MODEL.PERCEPTUAL_LOSS.WIDTHS = [4, 4, 4, 4, 4]
    model = build(cfg)
    with pytest.raises(ValueError, match="RESOLUTION 'output'.*MODEL.PERCEPTUAL_LOSS.BLOCKS"):
        train_step(model, make_inputs())
    model.resolution = "label"  # 64 x 64: fits
    assert torch.isfinite(train_step(model, make_inputs())["loss_sem_seg_percep"])


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("TARGET", "teachr", "MODEL.SEM_SEG_PERCEPTUAL.TARGET"),
        ("RESOLUTION", "full", "MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION"),
        ("TEMPERATURE", 0.0, "MODEL.SEM_SEG_PERCEPTUAL.TEMPERATURE"),
    ],
)
def test_bad_settings_name_their_key(key, value, match):
    cfg = tiny_semseg_cfg()
    cfg.MODEL.SEM_SEG_PERCEPTUAL[key] = value
    with pytest.raises(ValueError, match=match):
        build(cfg)
