"""The frozen teacher of PercepSemanticSegmentor: its soft targets equal an independent run of the
teacher, it stays out of the student (state_dict, parameters, gradients, inference), and config
mismatches / missing files are errors naming the key."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import SemanticSegmentor

from percep_det.config import get_percep_cfg
from percep_det.modeling.semantic_seg import PercepSemSegTeacher, sample_labels
from tests.helpers import assert_frozen_outside, train_step
from tests.modeling.semantic_seg.semseg_helpers import (
    build,
    make_inputs,
    teacher_cfg_of,
    tiny_semseg_cfg,
    write_model,
)


def wider_teacher_cfg(head="psp"):
    cfg = tiny_semseg_cfg(head, percep=False)
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 24
    if head == "psp":
        cfg.MODEL.RESNETS.DEPTH = 34
    return cfg


def run_and_record(model, inputs):
    """One training step; returns the losses and the (prediction, target) given to the loss."""
    seen = []
    model.perceptual_loss.register_forward_hook(lambda m, args, out: seen.append(args))
    losses = train_step(model, inputs)
    return losses, seen[-1]


@torch.no_grad()
def independent_teacher_logits(cfg, weights, images):
    """The teacher as a plain SemanticSegmentor: its backbone and head.layers() on the images."""
    teacher_cfg = get_percep_cfg(cfg.MODEL.SEM_SEG_PERCEPTUAL.TEACHER.CONFIG_FILE)
    teacher = build(teacher_cfg, seed=11).eval()
    assert type(teacher) is SemanticSegmentor
    DetectionCheckpointer(teacher).load(weights)
    return teacher.sem_seg_head.layers(teacher.backbone(images))


def normalised(model, inputs):
    return torch.stack([(x["image"].float() - model.pixel_mean) / model.pixel_std for x in inputs])


@pytest.mark.parametrize(
    "teacher_head, resolution, temperature",
    [("psp", "label", 2.0), ("fpn", "output", 1.0), ("fpn", "label", 1.0)],
)
def test_targets_equal_an_independent_run_of_the_teacher(
    teacher_head, resolution, temperature, tmp_path
):
    config_file, weights = write_model(str(tmp_path), wider_teacher_cfg(teacher_head))
    cfg = teacher_cfg_of(tiny_semseg_cfg("psp"), config_file, weights, temperature)
    cfg.MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION = resolution
    student = build(cfg)
    assert isinstance(student.teacher, PercepSemSegTeacher) and not student.teacher.is_built
    inputs = make_inputs()  # 64 x 64: the padded batch is the images
    losses, (pred, target) = run_and_record(student, inputs)
    assert torch.isfinite(losses["loss_sem_seg_percep"]) and losses["loss_sem_seg_percep"] > 0
    assert student.teacher.is_built and not target.requires_grad

    logits = independent_teacher_logits(cfg, weights, normalised(student, inputs))
    labels = torch.stack([x["sem_seg"] for x in inputs])
    size = (64, 64) if resolution == "label" else (8, 8)  # the student's logits: stride 8
    if resolution == "output":
        labels = sample_labels(labels, size)
    if logits.shape[-2:] != size:  # the FPN teacher has stride 4
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    expected = F.softmax(logits / temperature, dim=1) * (labels != 255)[:, None]
    assert target.shape == pred.shape == (2, 4, *size)
    assert torch.allclose(target, expected, atol=1e-6)
    assert not torch.allclose(target, pred.detach(), atol=1e-3)


def test_teacher_stays_out_of_the_student(tmp_path):
    config_file, weights = write_model(str(tmp_path), wider_teacher_cfg())
    cfg = teacher_cfg_of(tiny_semseg_cfg(), config_file, weights)
    student = build(cfg)
    plain_keys = list(build(tiny_semseg_cfg(percep=False)).state_dict())
    assert list(student.state_dict()) == plain_keys
    assert list(student.teacher.parameters()) == [] and list(student.teacher.state_dict()) == []

    student.eval()  # inference builds neither the teacher nor the loss network
    with torch.no_grad():
        student(make_inputs())
    assert not student.teacher.is_built
    assert not student.perceptual_loss._loss_network.is_built

    losses = train_step(student, make_inputs())
    student.zero_grad()
    losses["loss_sem_seg_percep"].backward()
    teacher = student.teacher.model()
    assert not teacher.training
    assert_frozen_outside(student, teacher)
    assert student.sem_seg_head.predictor.weight.grad.abs().sum() > 0
    assert list(student.state_dict()) == plain_keys


def test_a_perceptual_student_can_be_a_teacher(tmp_path):
    """A teacher whose own config is a perceptual student (with its own teacher) is built
    without its teacher: teachers never nest."""
    first = write_model(str(tmp_path), wider_teacher_cfg(), name="first")
    middle_cfg = teacher_cfg_of(tiny_semseg_cfg(), *first)
    middle = write_model(str(tmp_path), middle_cfg, name="middle")
    student = build(teacher_cfg_of(tiny_semseg_cfg(), *middle))
    losses = train_step(student, make_inputs())
    assert torch.isfinite(losses["loss_sem_seg_percep"])
    assert student.teacher.model().teacher is None


@pytest.mark.parametrize(
    "key, value",
    [
        ("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 5),
        ("MODEL.PIXEL_MEAN", [0.0, 0.0, 0.0]),
        ("MODEL.PIXEL_STD", [2.0, 2.0, 2.0]),
        ("INPUT.FORMAT", "RGB"),
    ],
)
def test_teacher_must_match_the_student(key, value, tmp_path):
    teacher_cfg = wider_teacher_cfg()
    teacher_cfg.merge_from_list([key, value])
    if key.endswith("NUM_CLASSES"):
        teacher_cfg = tiny_semseg_cfg(num_classes=5, percep=False)
    config_file, weights = write_model(str(tmp_path), teacher_cfg)
    with pytest.raises(ValueError, match=key):
        build(teacher_cfg_of(tiny_semseg_cfg(), config_file, weights))


def test_missing_teacher_files_name_their_key(tmp_path):
    config_file, weights = write_model(str(tmp_path), wider_teacher_cfg())
    with pytest.raises(FileNotFoundError, match="MODEL.SEM_SEG_PERCEPTUAL.TEACHER.WEIGHTS"):
        build(teacher_cfg_of(tiny_semseg_cfg(), config_file, str(tmp_path / "nope.pth")))
    with pytest.raises(FileNotFoundError, match="MODEL.SEM_SEG_PERCEPTUAL.TEACHER.CONFIG_FILE"):
        build(teacher_cfg_of(tiny_semseg_cfg(), str(tmp_path / "nope.yaml"), weights))
    with pytest.raises(ValueError, match="MODEL.SEM_SEG_PERCEPTUAL.TEACHER.WEIGHTS"):
        build(teacher_cfg_of(tiny_semseg_cfg(), config_file, ""))


def test_teacher_weights_of_another_model_are_an_error_naming_the_key(tmp_path):
    config_file, _ = write_model(str(tmp_path), wider_teacher_cfg())
    _, other = write_model(str(tmp_path), tiny_semseg_cfg(percep=False), name="other")
    student = build(teacher_cfg_of(tiny_semseg_cfg(), config_file, other))
    with pytest.raises(RuntimeError, match="MODEL.SEM_SEG_PERCEPTUAL.TEACHER.WEIGHTS"):
        train_step(student, make_inputs())


def test_teacher_must_be_a_semantic_segmentor(tmp_path):
    from tests.helpers import tiny_condinst_cfg

    config_file, weights = write_model(str(tmp_path), tiny_condinst_cfg())
    with pytest.raises(ValueError, match="MODEL.META_ARCHITECTURE"):
        build(teacher_cfg_of(tiny_semseg_cfg(), config_file, weights))
