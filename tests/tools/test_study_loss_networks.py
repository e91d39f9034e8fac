"""tools/study_loss_networks.py: spec checks before any run, CSV / tables / plots from synthetic
runs (no training), and a real two-run sweep of 2-iteration schedules that resumes without
redoing finished runs and redoes an interrupted one."""

import csv
import json
import os

import pytest
import torch
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PERCEP_GT = "configs/quick_schedules/semseg_psp_R18_percep_gt_shapes_cpu.yaml"
BASELINE = "configs/quick_schedules/semseg_psp_R18_shapes_cpu.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def _tool():
    path = os.path.join(ROOT, "tools", "study_loss_networks.py")
    module = load_script(path, "study_loss_networks")
    return module


def _spec(tmp_path, factors, name="study", **top):
    """A spec on the semantic quick config with tiny loss-net widths; ``top`` adds/replaces keys."""
    data = {
        "name": name,
        "description": "test",
        "config": PERCEP_GT,
        "baseline": BASELINE,
        "metrics": ["sem_seg/mIoU:mIoU", "sem_seg/pACC:pixel acc"],
        "seeds": [1, 2, 3],
        "term": {"MODEL.PERCEPTUAL_LOSS.WIDTHS": [4, 4, 4, 4, 4]},
        "factors": factors,
        **top,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return str(path)


FACTORS = {
    "depth": {
        "reference": "p5",
        "levels": {
            "p3": {"MODEL.PERCEPTUAL_LOSS.OUT_POINTS": ["pool3"]},
            "p4": {"MODEL.PERCEPTUAL_LOSS.OUT_POINTS": ["pool4"]},
            "p5": {"MODEL": {"PERCEPTUAL_LOSS": {"OUT_POINTS": ["pool5"]}}},  # nested form
        },
    },
    "init": {
        "reference": "paper",
        "levels": {
            "paper": {"MODEL.PERCEPTUAL_LOSS.INIT": "paper"},
            "normal_1": {
                "MODEL.PERCEPTUAL_LOSS.INIT": "normal",
                "MODEL.PERCEPTUAL_LOSS.INIT_PARAM": 1.0,
            },
        },
    },
}


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------
def test_settings_one_at_a_time_and_grid(tmp_path):
    tool = _tool()
    spec = tool.load_spec(_spec(tmp_path, FACTORS, loss_net_seed="run"))
    settings = tool.settings(spec)
    assert [s.name for s in settings] == [
        "baseline", "reference", "depth=p3", "depth=p4", "init=normal_1",
    ]  # fmt: skip
    by_name = {s.name: s for s in settings}
    assert by_name["baseline"].is_baseline and by_name["baseline"].config == BASELINE
    # other factors at their reference, the varied level last
    assert dict(by_name["init=normal_1"].overrides) == {
        "MODEL.PERCEPTUAL_LOSS.WIDTHS": [4, 4, 4, 4, 4],
        "MODEL.PERCEPTUAL_LOSS.OUT_POINTS": ["pool5"],
        "MODEL.PERCEPTUAL_LOSS.INIT": "normal",
        "MODEL.PERCEPTUAL_LOSS.INIT_PARAM": 1.0,
    }
    opts = tool.run_opts(spec, by_name["depth=p3"], 2, ["SOLVER.MAX_ITER", "2"])
    assert opts[:2] == ["MODEL.PERCEPTUAL_LOSS.SEED", "2"]  # loss_net_seed: run
    assert opts[-4:] == ["MODEL.PERCEPTUAL_LOSS.OUT_POINTS", "['pool3']", "SOLVER.MAX_ITER", "2"]
    assert tool.run_opts(spec, by_name["baseline"], 2, []) == []  # no term overrides

    # --factors depth: init stays at its reference, so each setting is the whole spec's (same
    # name, same overrides) and runs of factor groups can share one folder; tables skip init
    only = tool.select(spec, ["depth"])
    kept = {s.name: s for s in tool.settings(only)}
    assert list(kept) == ["baseline", "reference", "depth=p3", "depth=p4"]
    assert all(kept[n].overrides == by_name[n].overrides for n in kept)
    groups = [title for title, _ in tool._table_groups(only, list(kept.values()))]
    assert len(groups) == 1 and groups[0].startswith("Factor `depth`")

    grid = tool.select(spec._replace(design="grid"), None, ["depth=p3,p4"])
    names = [s.name for s in tool.settings(grid)]
    assert names == [
        "baseline", "depth=p3,init=paper", "depth=p3,init=normal_1", "depth=p4,init=paper",
        "depth=p4,init=normal_1",
    ]  # fmt: skip

    # vars and the other factors' level names in string values
    pretrained = {
        "arch": {
            "reference": "vgg11",
            "levels": {"vgg11": {"MODEL.PERCEPTUAL_LOSS.ARCH": "vgg11"}},
        },
        "weights": {
            "reference": "random",
            "levels": {
                "random": {"MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS": ""},
                "pretrained": {"MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS": "{dir}/{arch}.pth"},
            },
        },
    }
    spec = tool.load_spec(_spec(tmp_path, pretrained, name="t1", design="grid", vars={"dir": "w"}))
    cell = tool.settings(spec)[-1]
    assert cell.name == "arch=vgg11,weights=pretrained"
    assert dict(cell.overrides)["MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS"] == "w/vgg11.pth"

    zoo = tool.load_spec(
        _spec(tmp_path, {"net": {"reference": "alexnet.relu2", "zoo": ["alexnet"]}})
    )
    assert list(zoo.factors["net"].levels) == [
        "alexnet.relu1", "alexnet.relu2", "alexnet.relu3", "alexnet.relu5",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "preset",
    sorted(
        os.path.basename(p)[:-5]
        for p in os.listdir(os.path.join(ROOT, "configs", "studies"))
        if p.endswith(".yaml")
    ),
)
def test_every_shipped_preset_checks(preset):
    """Each spec of configs/studies/ loads and every one of its settings merges into its config.
    Presets with pretrained levels stop only at the weight files that the user must provide."""
    tool = _tool()
    spec = tool.load_spec(tool.preset_path(preset))
    all_settings = tool.settings(spec)
    assert all_settings[0].is_baseline and len(all_settings) > 1
    pretrained = any(
        o.get("MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS")
        for f in spec.factors.values()
        for o in f.levels.values()
    )
    if pretrained:
        with pytest.raises(tool.SpecError, match="ImageNet weights that you provide"):
            tool.validate(spec, all_settings, [], {})
        return
    cfgs, costs = tool.validate(spec, all_settings, [], {})
    assert set(cfgs) == {s.name for s in all_settings}
    assert all(costs[s.name]["flops_per_px"] > 0 for s in all_settings if not s.is_baseline)


def _main_error(tool, capsys, argv):
    with pytest.raises(SystemExit) as e:
        tool.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_errors_name_what_is_wrong_before_any_run(tmp_path, capsys):
    tool = _tool()
    out = tmp_path / "out"
    path = _spec(tmp_path, FACTORS)
    base = ["--spec", path, "--out", str(out)]

    err = _main_error(tool, capsys, base + ["--factors", "depth,kernal"])
    assert "unknown factor(s) ['kernal'] in --factors" in err and "'depth', 'init'" in err
    err = _main_error(tool, capsys, base + ["--levels", "depth=p3,p9"])
    assert "unknown level(s) ['p9'] of factor 'depth'" in err
    err = _main_error(tool, capsys, base + ["--levels", "widths=p3"])
    assert "unknown factor 'widths' in --levels" in err

    bad_key = {"depth": {"reference": "a", "levels": {"a": {"MODEL.PERCEPTUAL_LOSS.WIDTH": [4]}}}}
    err = _main_error(
        tool, capsys, ["--spec", _spec(tmp_path, bad_key, name="k"), "--out", str(out)]
    )
    assert "MODEL.PERCEPTUAL_LOSS.WIDTH" in err and "'depth' level 'a'" in err
    bad_value = {"w": {"reference": "a", "levels": {"a": {"MODEL.PERCEPTUAL_LOSS.WIDTHS": "wide"}}}}
    err = _main_error(
        tool, capsys, ["--spec", _spec(tmp_path, bad_value, name="v"), "--out", str(out)]
    )
    assert "MODEL.PERCEPTUAL_LOSS.WIDTHS" in err and "'w' level 'a'" in err
    bad_init = {"i": {"reference": "a", "levels": {"a": {"MODEL.PERCEPTUAL_LOSS.INIT": "gauss"}}}}
    err = _main_error(
        tool, capsys, ["--spec", _spec(tmp_path, bad_init, name="i"), "--out", str(out)]
    )
    assert "setting 'reference'" in err and "Unknown loss-network init scheme 'gauss'" in err
    bad_ref = {"i": {"reference": "b", "levels": {"a": {}}}}
    err = _main_error(
        tool, capsys, ["--spec", _spec(tmp_path, bad_ref, name="r"), "--out", str(out)]
    )
    assert "reference level 'b' is not one of its levels ['a']" in err
    err = _main_error(
        tool, capsys, ["--spec", _spec(tmp_path, FACTORS, name="u", facotrs=1), "--out", str(out)]
    )
    assert "unknown key(s) ['facotrs']" in err

    pretrained = {
        "weights": {
            "reference": "random",
            "levels": {
                "random": {},
                "pretrained": {
                    "MODEL.PERCEPTUAL_LOSS.ARCH": "alexnet",
                    "MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS": "{dir}/alexnet.pth",
                },
            },
        }
    }
    path = _spec(tmp_path, pretrained, name="p", vars={"dir": str(tmp_path / "none")})
    err = _main_error(tool, capsys, ["--spec", path, "--out", str(out)])
    assert "need ImageNet weights that you provide" in err and "none/alexnet.pth" in err
    assert "--levels weights=random" in err
    assert not out.exists()  # nothing was started, not even the output folder


# --------------------------------------------------------------------------------------------
# Results from synthetic runs
# --------------------------------------------------------------------------------------------
def _fake_run(out, evals, step_time, max_iter=1000, finished=True, peak=900.0, diverged=False):
    """What a run leaves behind: metrics.json (training rows with 'time', evaluations),
    config.yaml, and if finished its final checkpoint; run_stats.jsonl as the tool writes it."""
    os.makedirs(out)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        for it in range(19, max_iter, 20):
            f.write(json.dumps({"iteration": it, "total_loss": 1.0, "time": step_time}) + "\n")
        for it, miou in evals.items():
            f.write(
                json.dumps({"iteration": it, "sem_seg/mIoU": miou, "sem_seg/pACC": 90.0}) + "\n"
            )
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(f"SOLVER:\n  MAX_ITER: {max_iter}\n")
    if finished:
        torch.save({"iteration": max_iter - 1}, os.path.join(out, "model_final.pth"))
        with open(os.path.join(out, "last_checkpoint"), "w") as f:
            f.write("model_final.pth")
    with open(os.path.join(out, "run_stats.jsonl"), "w") as f:
        record = {"wall_s": 10.0, "exit_code": 1 if diverged else 0, "peak_rss_mb": peak}
        f.write(json.dumps({**record, "diverged": diverged}) + "\n")


def test_csv_tables_and_plots_from_synthetic_runs(tmp_path, capsys, monkeypatch):
    tool = _tool()
    depth_lines = {}  # what depth.png draws: metric -> line name -> [(depth, point, values)]

    def plot_depth(values, path, **kwargs):
        depth_lines.update(values)
        return real_plot_depth(values, path, **kwargs)

    real_plot_depth = tool.plot_depth
    monkeypatch.setattr(tool, "plot_depth", plot_depth)
    out = tmp_path / "out"
    path = _spec(tmp_path, FACTORS, common={"SOLVER.MAX_ITER": 1000})
    base_miou = {1: 50.0, 2: 40.0, 3: 45.0}
    offsets = {"baseline": 0.0, "reference": 2.0, "depth=p3": 1.0, "depth=p4": -1.0}
    for name, offset in offsets.items():
        for seed, miou in base_miou.items():
            run = os.path.join(out, name, f"seed{seed}")
            step = 0.1 if name == "baseline" else 0.2
            if name == "depth=p4" and seed == 3:  # interrupted after the first evaluation
                _fake_run(run, {499: miou - 5}, step, finished=False)
            else:
                _fake_run(run, {499: miou - 5, 999: miou + offset}, step, peak=900 + 10 * offset)
    for seed in base_miou:  # N(0, 1): the loss explodes (seed 000 Table 4 "fails to converge")
        _fake_run(os.path.join(out, "init=normal_1", f"seed{seed}"), {}, 0.2, finished=False,
                  diverged=True)  # fmt: skip

    tool.main(["--spec", path, "--out", str(out), "--summary-only"])
    printed = capsys.readouterr().out
    assert "5 settings (baseline included) x 3 seeds = 15 runs: 11 finished, 4 to run" in printed
    assert "3 diverged before and are skipped" in printed
    assert "estimated time: about 3 min with 1 in parallel" in printed  # 1000 x 0.2 s, p4 seed 3

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15
    row = {(r["setting"], r["seed"]): r for r in rows}
    ref = row[("reference", "2")]
    assert ref["status"] == "finished" and float(ref["sem_seg/mIoU"]) == 42.0
    assert float(ref["sem_seg/mIoU@499"]) == 35.0 and ref["evaluated_at"] == "999"
    assert float(ref["step_time_s"]) == 0.2 and float(ref["peak_rss_mb"]) == 920.0
    assert ref["loss_net:OUT_POINTS"] == "pool5" and ref["loss_net_depth"] == "32"
    assert ref["level:depth"] == "p5" and ref["level:init"] == "paper"
    assert (
        float(ref["loss_net_flops_per_px"])
        > 0
        == float(row[("baseline", "1")]["loss_net_flops_per_px"])
    )
    assert row[("depth=p3", "1")]["loss_net_depth"] == "8"
    assert row[("depth=p4", "3")]["status"] == "unfinished: no checkpoint yet"
    assert row[("init=normal_1", "1")]["status"] == "diverged"

    md = (out / "results.md").read_text()
    assert "## Factor `depth` (reference level: p5)" in md
    base_row = (
        "| baseline | (no perceptual term) | 1,2,3 | 45.00 ± 5.00 | 90.00 ± 0.00 | 0.10 | 1.00x |"
    )
    assert base_row + " 900 |" in md
    assert (
        "| reference: depth=p5, init=paper | OUT_POINTS=['pool5'] INIT=paper | 1,2,3 | 47.00 ± 5"
        in md
    )
    assert (
        "| p3 | OUT_POINTS=['pool3'] | 1,2,3 | 46.00 ± 5.00 | 90.00 ± 0.00 | 0.20 | 2.00x |" in md
    )
    # paired to the baseline: +2 in every seed
    assert "| reference | +2.00 ± 0.00 (better in 3/3) | +0.00 ± 0.00 (better in 0/3) |" in md
    # final evaluations only: the interrupted seed is counted apart, not mixed in at iteration 499
    assert "| p4 | OUT_POINTS=['pool4'] | 1,2 | 44.00 ± 7.07 |" in md
    assert "unfinished: 1 | 999 |" in md
    assert "| p4 | -1.00 ± 0.00 (better in 0/2) |" in md
    assert "| normal_1 | INIT=normal INIT_PARAM=1.0 | - | - | - |" in md and "diverged: 3" in md
    # and paired to the factor's reference (one_at_a_time): p3 is 1 below it in every seed
    assert "Paired per-seed differences to reference (level - reference" in md
    assert "| p3 | -1.00 ± 0.00 (better in 0/3) |" in md
    assert "| p4 | -3.00 ± 0.00 (better in 0/2) |" in md

    # one line: the VGG net at its three points, named by its blocks (all VGGs share ARCH "vgg")
    line = depth_lines["mIoU"]
    assert list(line) == ["vgg 2,2,3,3,3"], list(line)
    assert sorted((d, p) for d, p, _ in line["vgg 2,2,3,3,3"]) == [
        (8, "pool3"), (16, "pool4"), (32, "pool5"),
    ]  # fmt: skip

    for png in ("levels_depth.png", "levels_init.png", "depth.png", "cost.png"):
        with open(out / png, "rb") as f:
            assert f.read(8) == PNG, png
        assert not (out / (png + ".tmp.png")).exists()
    study = json.loads((out / "study.json").read_text())
    assert study["settings"]["depth=p3"]["overrides"][-2:] == [
        "MODEL.PERCEPTUAL_LOSS.OUT_POINTS", "['pool3']",
    ]  # fmt: skip

    # the same folder with other overrides under a setting's name would mix two settings
    changed = json.loads(open(path).read())
    changed["factors"]["depth"]["levels"]["p3"] = {"MODEL.PERCEPTUAL_LOSS.OUT_POINTS": ["pool2"]}
    other = tmp_path / "changed.yaml"
    other.write_text(json.dumps(changed))
    err = _main_error(tool, capsys, ["--spec", str(other), "--out", str(out), "--summary-only"])
    assert "already holds runs of setting 'depth=p3'" in err
    # ... and so would other overrides common to every run (a longer schedule would count the old
    # runs as finished); --summary-only launches nothing, so it does not mind them
    err = _main_error(tool, capsys, ["--spec", path, "--out", str(out), "SOLVER.MAX_ITER", "2000"])
    assert "common to every run" in err and "'SOLVER.MAX_ITER', '2000'" in err
    tool.main(["--spec", path, "--out", str(out), "--summary-only", "SOLVER.MAX_ITER", "2000"])
    recorded = json.loads((out / "study.json").read_text())["settings"]["reference"]["common"]
    assert recorded == ["SOLVER.MAX_ITER", "1000"]


def test_cost_plot_labels_of_nearby_points_are_lifted_apart():
    from percep_det.utils.plot import _label_lifts

    # three settings at one cost and nearly one value (e.g. init levels), one far away
    xs, ys = [19.7, 19.7, 19.7, 1.4], [40.0, 40.1, 40.05, 50.0]
    assert _label_lifts(xs, ys) == [0, 1, 2, 0]
    # equal costs but values far apart keep their labels in place
    assert _label_lifts([5.0, 5.0], [30.0, 45.0]) == [0, 0]


def test_pareto_front():
    from percep_det.utils.stats import pareto_front

    costs = [0.1, 0.2, 0.3, 0.25, float("nan"), 0.2]
    values = [40.0, 45.0, 47.0, 44.0, 99.0, 45.0]
    assert pareto_front(costs, values) == [0, 1, 2, 5]  # 3 is beaten by 1; nan is never on it
    assert pareto_front([1, 2], [0.3, 0.2], higher_is_better=False) == [0, 1]
    assert pareto_front([1, 2], [0.2, 0.3], higher_is_better=False) == [0]


# --------------------------------------------------------------------------------------------
# A real sweep
# --------------------------------------------------------------------------------------------
TINY_SCHEDULE = {
    "SOLVER.MAX_ITER": 2, "SOLVER.WARMUP_ITERS": 1, "SOLVER.IMS_PER_BATCH": 2,
    "SOLVER.CHECKPOINT_PERIOD": 1000, "TEST.EVAL_PERIOD": 0, "PERCEP_DET.VIS_NUM_IMAGES": 0,
    "DATALOADER.NUM_WORKERS": 0, "INPUT.MIN_SIZE_TEST": 64, "INPUT.MAX_SIZE_TEST": 64,
}  # fmt: skip


def test_two_run_sweep_redoes_an_interrupted_run_and_resumes_without_redoing(tmp_path, capsys):
    from percep_det.data import ensure_generated
    from percep_det.utils.experiment import checkpoint_iteration

    for name in ("percep_shapes_sem_seg_train", "percep_shapes_sem_seg_val"):
        ensure_generated(name)  # once, before two runs would generate it side by side
    tool = _tool()
    out = tmp_path / "out"
    factors = {"widths": {"reference": "tiny", "levels": {"tiny": {}}}}
    path = _spec(tmp_path, factors, seeds=[1], common=TINY_SCHEDULE, loss_net_seed="run")
    argv = ["--spec", path, "--out", str(out), "--parallel", "2"]

    # one run was interrupted while saving its final checkpoint: all there but a file cut short
    # (the same state as a truncated real checkpoint; a second real run here would cost a minute)
    interrupted = out / "reference" / "seed1"
    _fake_run(str(interrupted), {2: 1.0}, 0.1, max_iter=2)
    final = interrupted / "model_final.pth"
    final.write_bytes(final.read_bytes()[:100])

    tool.main(argv)
    printed = capsys.readouterr().out
    assert "2 runs: 0 finished, 2 to run (0 of them resume" in printed
    assert "estimated time: unknown" in printed
    assert printed.count("[start]") == 2 and printed.count("[done]") == 2, printed[-3000:]
    assert checkpoint_iteration(str(final)) == (1, "")  # redone from scratch: MAX_ITER 2
    assert (interrupted / "model_final.pth.incomplete").exists()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["status"], r["launches"]) for r in rows] == [
        ("baseline", "finished", "1"), ("reference", "finished", "2"),
    ]  # fmt: skip
    assert float(rows[1]["sem_seg/mIoU"]) > 1.0  # the real evaluation, not the fake one
    assert float(rows[1]["peak_rss_mb"]) > 100
    assert rows[1]["loss_net:SEED"] == "1" and rows[1]["loss_net:WIDTHS"] == "4 4 4 4 4"
    assert "| reference |" in (out / "results.md").read_text()
    for png in ("levels_widths.png", "cost.png"):
        assert (out / png).read_bytes()[:8] == PNG

    # everything finished: nothing is run again
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/seed1/model_final.pth")}
    assert len(mtimes) == 2
    tool.main(argv)
    printed = capsys.readouterr().out
    assert "2 runs: 2 finished, 0 to run" in printed and "[start]" not in printed
    assert "[skip] baseline seed 1: finished" in printed and printed.count("[skip]") == 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
