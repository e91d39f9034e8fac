"""CondInst end to end on CPU with a tiny R18 model: training losses and gradients, empty images,
inference outputs, AdelaiDet state_dict compatibility, registry extension points."""

import os
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances

from percep_det.modeling.condinst.dynamic_mask_head import (
    PERCEP_MASK_HEAD_REGISTRY,
    PercepDynamicMaskHead,
)
from percep_det.modeling.layers import aligned_bilinear, dice_loss
from tests.helpers import (
    NO_OBJECT,
    TWO_OBJECTS,
    build,
    get_condinst_cfg,
    make_inputs,
    tiny_condinst_cfg,
    train_step,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# state_dict key lists (name, shape, dtype) of AdelaiDet's CondInst models, taken from AdelaiDet
KEYS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "condinst_keys")


@pytest.mark.parametrize("semantic", [False, True])
def test_training_step_returns_finite_losses_and_grads_reach_every_parameter(semantic):
    model = build(tiny_condinst_cfg(semantic=semantic))
    losses = train_step(model, make_inputs([TWO_OBJECTS, TWO_OBJECTS]))
    expected = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"}
    if semantic:
        expected.add("loss_sem")
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    # Every trainable parameter takes part (FREEZE_AT 0, BN): none is allowed to miss a gradient.
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.mask_head._iter.item() == 1


@pytest.mark.parametrize("mask_format", ["polygon", "bitmask"])
def test_batches_with_empty_images_train(mask_format):
    model = build(tiny_condinst_cfg(semantic=True))
    for gts in ([NO_OBJECT, NO_OBJECT], [TWO_OBJECTS, NO_OBJECT, TWO_OBJECTS]):
        losses = train_step(model, make_inputs(gts, mask_format=mask_format))
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        # also with no positive at all, the mask branch and controller stay in the graph (DDP)
        assert model.controller.weight.grad is not None
        assert model.mask_branch.tower[-1].weight.grad is not None


def test_inference_outputs_at_the_requested_size():
    cfg = tiny_condinst_cfg()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # random weights: keep detections
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 7
    model = build(cfg)
    model.eval()
    inputs = make_inputs([NO_OBJECT, NO_OBJECT], size=(64, 48), with_instances=False)
    inputs[0]["height"], inputs[0]["width"] = 100, 80  # original image 100x80, resized to 64x48
    del inputs[1]["height"], inputs[1]["width"]  # defaults to the image size
    with torch.no_grad():
        outputs = model(inputs)
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(100, 80), (64, 48)]):
        inst = out["instances"]
        assert isinstance(inst, Instances) and inst.image_size == (h, w)
        assert 0 < len(inst) <= 7
        assert inst.pred_masks.shape == (len(inst), h, w) and inst.pred_masks.dtype == torch.bool
        boxes = inst.pred_boxes.tensor
        assert (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all() and (boxes >= 0).all()
        assert inst.scores.shape == inst.pred_classes.shape == (len(inst),)
        assert ((inst.scores >= 0) & (inst.scores <= 1)).all()


def test_inference_without_detections():
    model = build(tiny_condinst_cfg())
    model.eval()
    with torch.no_grad():
        out = model(make_inputs([NO_OBJECT], with_instances=False))[0]["instances"]
    assert len(out) == 0 and out.pred_masks.shape == (0, 64, 64)


def read_tsv(name):
    with open(os.path.join(KEYS_DIR, name)) as f:
        return [tuple(line.rstrip("\n").split("\t")) for line in f if line.strip()]


@pytest.mark.parametrize(
    "config, tsv",
    [
        ("condinst_R50_1x_coco.yaml", "MS_R_50_1x.tsv"),
        ("condinst_R50_3x_sem_coco.yaml", "MS_R_50_3x_sem.tsv"),
        ("condinst_R101_3x_coco.yaml", "MS_R_101_3x.tsv"),
    ],
)
def test_state_dict_equals_adelaidet(config, tsv):
    cfg = get_condinst_cfg(os.path.join(REPO, "configs/InstanceSegmentation", config))
    with torch.device("meta"):  # shapes only, no memory or init cost
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    got = [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in model.state_dict().items()]
    assert got == read_tsv(tsv)


def test_checkpoint_round_trip_in_detectron2_format(tmp_path):
    src = build(tiny_condinst_cfg(), seed=1)
    torch.save({"model": src.state_dict()}, tmp_path / "model_final.pth")
    dst = build(tiny_condinst_cfg(), seed=2)
    DetectionCheckpointer(dst).load(str(tmp_path / "model_final.pth"))
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


def test_import_next_to_adelaidet_registrations():
    code = (
        "import torch\n"
        "from detectron2.modeling import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY\n"
        "META_ARCH_REGISTRY.register(type('CondInst', (torch.nn.Module,), {}))\n"
        "PROPOSAL_GENERATOR_REGISTRY.register(type('FCOS', (torch.nn.Module,), {}))\n"
        "import percep_det\n"
        "assert META_ARCH_REGISTRY.get('PercepCondInst').__name__ == 'PercepCondInst'\n"
        "assert PROPOSAL_GENERATOR_REGISTRY.get('PercepFCOS')\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


class _RecordingMaskHead(PercepDynamicMaskHead):
    """What a perceptual variant does: reuse predict_train, add a loss term in losses()."""

    seen = []

    def losses(self, predictions, instances):
        losses = super().losses(predictions, instances)
        _RecordingMaskHead.seen.append((predictions, instances))
        losses["loss_mask_extra"] = (
            predictions["mask_scores"].mean()
            if len(instances)
            else (predictions["mask_scores"].sum())
        )
        return losses


def test_mask_head_is_chosen_by_name_and_subclass_adds_a_loss():
    name = "_TestRecordingMaskHead"
    if name not in PERCEP_MASK_HEAD_REGISTRY:
        PERCEP_MASK_HEAD_REGISTRY._do_register(name, _RecordingMaskHead)
    cfg = tiny_condinst_cfg()
    cfg.MODEL.CONDINST.MASK_HEAD.NAME = name
    cfg.MODEL.CONDINST.MAX_PROPOSALS = 5
    model = build(cfg)
    assert type(model.mask_head) is _RecordingMaskHead
    _RecordingMaskHead.seen.clear()
    losses = train_step(model, make_inputs([TWO_OBJECTS, NO_OBJECT, TWO_OBJECTS]))
    assert "loss_mask_extra" in losses and "loss_mask" in losses
    predictions, instances = _RecordingMaskHead.seen[-1]
    # the sampled instances carry what a teacher needs to find and re-run them
    assert len(instances) == 5
    for field in ("im_inds", "fpn_levels", "locations", "gt_inds", "mask_head_params"):
        assert instances.has(field), field
    assert set(instances.im_inds.tolist()) <= {0, 2}
    assert predictions["mask_logits"].shape == predictions["gt_bitmasks"].shape == (5, 1, 16, 16)

    # a teacher runs the same dynamic head with its own features / params
    teacher_feats = torch.randn(3, 8, 8, 8)
    teacher = Instances(instances.image_size, **instances.get_fields())
    teacher.mask_head_params = torch.randn(5, model.mask_head.num_gen_params)
    logits = model.mask_head.mask_logits(teacher_feats, 8, teacher)
    assert logits.shape == (5, 1, 16, 16) and torch.isfinite(logits).all()


def test_topk_proposals_per_image_sampling():
    cfg = tiny_condinst_cfg()
    cfg.MODEL.CONDINST.MAX_PROPOSALS = -1
    cfg.MODEL.CONDINST.TOPK_PROPOSALS_PER_IM = 4
    head = build(cfg).mask_head
    inst = Instances((64, 64))
    inst.im_inds = torch.tensor([0] * 6 + [1] * 3)
    inst.gt_inds = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    inst.logits_pred = torch.arange(9.0)[:, None].repeat(1, 3)
    inst.ctrness_pred = torch.zeros(9)
    kept = head.sample_instances(inst)
    # image 0: 2 gts -> 2 each (the best-scored); image 1: 1 gt -> all 3 (<= 4)
    assert sorted(kept.logits_pred[:, 0].tolist()) == [1, 2, 4, 5, 6, 7, 8]


def test_aligned_bilinear_and_dice():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    up = aligned_bilinear(x, 2)
    assert up.shape == (1, 1, 4, 4)
    assert up[0, 0, 1, 1] == x[0, 0, 0, 0]  # the input point (0, 0) lands on output (1, 1)
    assert aligned_bilinear(x, 1) is x
    g = torch.zeros(2, 1, 4, 4)
    g[:, :, :2] = 1
    assert torch.allclose(dice_loss(g, g), torch.zeros(2), atol=1e-5)
    assert torch.allclose(dice_loss(1 - g, g), torch.ones(2))
