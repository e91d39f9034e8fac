"""The CondInst teacher of the perceptual head: soft masks for the student's sampled instances
equal an independent run of the teacher, config checks, strict loading, and the teacher stays out
of the student (state_dict, optimizer, inference)."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from percep_det.modeling.condinst.teacher import PercepCondInstTeacher
from percep_det.modeling.perceptual import CHECKPOINT_KEY, PerceptualLoss
from tests.helpers import (
    NO_OBJECT,
    TWO_OBJECTS,
    assert_frozen_outside,
    build,
    make_inputs,
    tiny_condinst_cfg,
    train_step,
)
from tests.modeling.condinst.percep_helpers import (
    teacher_student_cfg,
    tiny_percep_cfg,
    tiny_teacher_cfg,
    write_teacher,
)


def load_teacher(cfg):
    """The teacher of ``cfg``, built and loaded independently of the student."""
    tc = cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER
    model = build(tiny_teacher_cfg(), seed=9)
    DetectionCheckpointer(model).load(tc.WEIGHTS)
    return model.eval()


@torch.no_grad()
def reference_masks(teacher, images, instances):
    """Per instance: the teacher's box tower + controller at the instance's level and point,
    its own mask features and dynamic head (one instance at a time, no shared indexing code)."""
    features = teacher.backbone(images)
    mask_feats, _ = teacher.mask_branch(features)
    fcos = teacher.proposal_generator
    head = fcos.fcos_head
    out = []
    for i in range(len(instances)):
        one = instances[i : i + 1]
        level = int(one.fpn_levels)
        stride = fcos.fpn_strides[level]
        x, y = (int(v) for v in one.locations[0].tolist())
        feature = features[fcos.in_features[level]]
        params_map = teacher.controller(head.bbox_tower(head.share_tower(feature)))
        row, col = (y - stride // 2) // stride, (x - stride // 2) // stride
        one.mask_head_params = params_map[int(one.im_inds), :, row, col][None]
        out.append(teacher.mask_head.mask_logits(mask_feats, 8, one).sigmoid())
    return torch.cat(out)


def test_teacher_masks_match_an_independent_run_of_the_teacher(tmp_path):
    cfg = teacher_student_cfg(str(tmp_path))
    student = build(cfg)
    head = student.mask_head
    assert head.target == "teacher" and not student.mask_targets.is_built
    seen, calls = [], []
    original = head.perceptual_targets

    def record(predictions, instances):
        out = original(predictions, instances)
        seen.append((predictions["mask_scores"], instances, out))
        return out

    head.perceptual_targets = record
    student.mask_targets.register_forward_hook(lambda m, inputs, out: calls.append(inputs))
    losses = train_step(student, make_inputs([TWO_OBJECTS, NO_OBJECT, TWO_OBJECTS]))
    assert torch.isfinite(losses["loss_mask_percep"]) and losses["loss_mask_percep"] > 0
    scores, instances, targets = seen[-1]
    images, queried = calls[-1]  # the meta-architecture ran the teacher on its batch
    assert queried is instances and len(instances) > 0
    assert targets.shape == scores.shape and not targets.requires_grad

    teacher = load_teacher(cfg)
    expected = reference_masks(teacher, images, instances)
    assert torch.allclose(targets, expected, atol=1e-6)
    # and the teacher's own masks differ from the student's predictions
    assert not torch.allclose(targets, scores.detach(), atol=1e-3)


def test_teacher_masks_at_its_own_detections_equal_its_inference_masks(tmp_path):
    cfg = teacher_student_cfg(str(tmp_path))
    teacher_obj = PercepCondInstTeacher(cfg)
    model = teacher_obj.model()
    model.proposal_generator.pre_nms_thresh[False] = 0.0  # random weights: keep detections
    inputs = make_inputs([TWO_OBJECTS, TWO_OBJECTS], with_instances=False)
    with torch.no_grad():
        detections = model.inference(inputs, do_postprocess=False)
        images = model.preprocess_image(inputs).tensor
    assert len(detections) > 0 and set(detections.im_inds.tolist()) == {0, 1}
    masks = teacher_obj(images, detections)
    assert torch.allclose(masks, detections.pred_global_masks, atol=1e-6)


def test_teacher_is_frozen_and_outside_the_student(tmp_path):
    cfg = teacher_student_cfg(str(tmp_path), MAX_INSTANCES=4)
    student = build(cfg)
    plain_keys = list(build(tiny_condinst_cfg()).state_dict())
    losses = train_step(student, make_inputs([TWO_OBJECTS]))
    sum(losses.values()).backward()
    teacher = student.mask_targets.model()
    assert not teacher.training
    assert_frozen_outside(student, teacher)
    assert list(student.state_dict()) == plain_keys  # no teacher / loss-net keys
    assert student.controller.weight.grad.abs().sum() > 0
    student.train()  # the student's mode does not reach the teacher
    assert not teacher.training


def test_batch_without_instances_trains_with_a_teacher(tmp_path):
    student = build(teacher_student_cfg(str(tmp_path)))
    losses = train_step(student, make_inputs([NO_OBJECT, NO_OBJECT]))
    assert losses["loss_mask_percep"] == 0
    sum(losses.values()).backward()
    assert student.controller.weight.grad is not None


def test_inference_does_not_build_the_teacher(tmp_path):
    student = build(teacher_student_cfg(str(tmp_path))).eval()
    with torch.no_grad():
        student(make_inputs([TWO_OBJECTS], with_instances=False))
    assert not student.mask_targets.is_built
    assert not student.mask_head.perceptual_loss._loss_network.is_built


@pytest.mark.parametrize(
    "key, value",
    [
        ("MODEL.FCOS.FPN_STRIDES", [8, 16, 32, 64, 256]),
        ("MODEL.CONDINST.MASK_OUT_STRIDE", 2),
        ("MODEL.CONDINST.MASK_BRANCH.IN_FEATURES", ["p4", "p5"]),
        ("MODEL.PIXEL_STD", [57.0, 57.0, 57.0]),
    ],
)
def test_mismatched_teacher_settings_are_named(tmp_path, key, value):
    teacher_cfg = tiny_teacher_cfg()
    teacher_cfg.merge_from_list([key, value])
    config_file, weights = write_teacher(str(tmp_path), teacher_cfg)
    cfg = tiny_percep_cfg("teacher")
    cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE = config_file
    cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS = weights
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build(cfg)


def test_missing_teacher_files_are_reported_with_path_and_key(tmp_path):
    cfg = teacher_student_cfg(str(tmp_path))
    missing = str(tmp_path / "nope.yaml")
    bad = cfg.clone()
    bad.MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE = missing
    with pytest.raises(FileNotFoundError, match="TEACHER.CONFIG_FILE") as e:
        build(bad)
    assert missing in str(e.value)
    bad = cfg.clone()
    bad.MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="TEACHER.WEIGHTS"):
        build(bad)
    bad.MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE = ""
    with pytest.raises(ValueError, match="TEACHER.CONFIG_FILE"):
        build(bad)


def test_teacher_weights_are_loaded_strictly(tmp_path):
    cfg = teacher_student_cfg(str(tmp_path))
    weights = cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS
    state = torch.load(weights)["model"]
    state["extra.weight"] = torch.zeros(1)
    del state["controller.bias"]
    torch.save({"model": state}, weights)
    student = build(cfg)  # the teacher is built on the first training step
    with pytest.raises(
        RuntimeError, match=r"TEACHER.WEIGHTS.*missing keys \['controller.bias'\].*extra"
    ):
        train_step(student, make_inputs([TWO_OBJECTS]))


def test_a_perceptual_teacher_loads_as_plain_and_its_loss_network_record_is_checked(tmp_path):
    teacher_cfg = tiny_teacher_cfg()
    teacher_cfg.MODEL.CONDINST.MASK_HEAD.NAME = "PercepPerceptualDynamicMaskHead"
    teacher_cfg.MODEL.PERCEPTUAL_LOSS.BLOCKS = [1, 1]
    teacher_cfg.MODEL.PERCEPTUAL_LOSS.WIDTHS = [8, 8]
    config_file, weights = write_teacher(str(tmp_path), teacher_cfg)
    record = {"mask_head.perceptual_loss": PerceptualLoss(teacher_cfg, in_channels=1).fingerprint()}
    state = torch.load(weights)
    torch.save({**state, CHECKPOINT_KEY: record}, weights)
    cfg = tiny_percep_cfg("teacher")
    cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE = config_file
    cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS = weights
    losses = train_step(build(cfg), make_inputs([TWO_OBJECTS]))  # plain head, record matches
    assert torch.isfinite(losses["loss_mask_percep"])

    # the teacher's config no longer regenerates the network its checkpoint records
    teacher_cfg.MODEL.PERCEPTUAL_LOSS.INIT = "xavier_normal"
    with open(config_file, "w") as f:
        f.write(teacher_cfg.dump())
    with pytest.raises(ValueError, match="MODEL.PERCEPTUAL_LOSS.INIT.*TEACHER.WEIGHTS|TEACHER"):
        train_step(build(cfg), make_inputs([TWO_OBJECTS]))
