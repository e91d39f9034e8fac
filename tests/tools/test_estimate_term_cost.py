"""tools/estimate_term_cost.py and percep_det/utils/cost.py: the term's inputs per task and its
FLOPs against the model's, on the CPU quick configs at small sizes."""

import os

import pytest
from detectron2.modeling import build_model
from tests.helpers import load_script

from percep_det.config import get_percep_cfg
from percep_det.utils.cost import input_size, loss_net_cost, model_forward_flops, term_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "configs", "quick_schedules")


def _cfg(name, opts=()):
    return get_percep_cfg(os.path.join(QUICK, name), list(opts))


def test_term_inputs_per_task():
    semseg = _cfg("semseg_psp_R18_percep_gt_shapes_cpu.yaml")
    model = build_model(semseg)
    assert term_inputs(semseg, model, 64, 96) == (1, 5, 64, 96, "label resolution")
    semseg.defrost()
    semseg.MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION = "output"  # PSP: stride 8, rounded up
    assert term_inputs(semseg, model, 64, 100)[:4] == (1, 5, 8, 13)

    depth = _cfg("depth_R18_wce_percep_shapes_cpu.yaml")
    assert term_inputs(depth, None, 64, 64)[:4] == (1, 1, 64, 64)

    condinst = _cfg("condinst_percep_gt_R18_shapes_cpu.yaml")
    got = term_inputs(condinst, None, 128, 130, images_per_gpu=4)
    n = condinst.MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES
    assert got[:4] == (n / 4, 1, 32, 33) and "MAX_INSTANCES" in got.note

    with pytest.raises(ValueError, match="no perceptual term"):
        term_inputs(_cfg("depth_R18_wce_shapes_cpu.yaml"), None, 64, 64)
    assert input_size(semseg) == (128, 128)  # short side 128, long side capped at 128


def test_model_flops_scale_with_pixels_and_the_table(capsys):
    cfg = _cfg("depth_R18_wce_percep_shapes_cpu.yaml")
    model = build_model(cfg)
    small, large = model_forward_flops(model, 64, 64), model_forward_flops(model, 128, 128)
    assert small > 0 and large == pytest.approx(4 * small, rel=0.05)  # a dense net: per pixel

    tool = load_script(os.path.join(ROOT, "tools", "estimate_term_cost.py"), "estimate_term_cost")
    config = os.path.join(QUICK, "depth_R18_wce_percep_shapes_cpu.yaml")
    blocks = "MODEL.PERCEPTUAL_LOSS.BLOCKS [1,1,1,1,1]"
    tool.main(["--config-file", config, "--input-size", "64x64", "--variant", "vgg16=",
               "--variant", f"b11111={blocks}"])  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| vgg16")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    per_px = loss_net_cost(cfg)["flops_per_px"]
    assert float(cells[4]) == pytest.approx(per_px * 64 * 64 / 1e9, rel=1e-2)  # term GFLOP
    assert float(cells[5]) == pytest.approx(small / 1e9, rel=1e-2)  # model GFLOP
    assert cells[6] == "-"  # no teacher with depth
    assert float(cells[8].rstrip("x")) == pytest.approx(1 + per_px * 64 * 64 / small, rel=2e-2)

    with pytest.raises(SystemExit, match="trains no perceptual term"):
        tool.main(["--config-file", os.path.join(QUICK, "depth_R18_wce_shapes_cpu.yaml")])
    with pytest.raises(SystemExit, match="KEY VALUE pairs"):
        tool.main(["--config-file", config, "--variant", "x=MODEL.PERCEPTUAL_LOSS.BLOCKS"])
