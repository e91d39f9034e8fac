"""tools/run_experiment.py tabulation on synthetic metrics.json files (no training), and when a run
counts as finished (percep_det/utils/experiment.py, which the tool uses)."""

import json
import os

import pytest
import torch
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    module = load_script(os.path.join(ROOT, "tools", "run_experiment.py"), "run_experiment")
    return module


def _write_final_checkpoint(out, max_iter, iteration=None, name="model_final.pth"):
    """What train_net leaves in a finished OUTPUT_DIR: config.yaml, checkpoint, last_checkpoint."""
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(f"SOLVER:\n  MAX_ITER: {max_iter}\n")
    iteration = max_iter - 1 if iteration is None else iteration
    torch.save({"model": {"w": torch.zeros(3)}, "iteration": iteration}, os.path.join(out, name))
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write(name)


def _write_run(root, variant, seed, evals, step_time, last_iter, max_iter=1000):
    out = os.path.join(root, variant, f"seed{seed}")
    os.makedirs(out)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(f"SOLVER:\n  MAX_ITER: {max_iter}\n")
    with open(os.path.join(out, "metrics.json"), "w") as f:
        for it in range(19, last_iter + 1, 20):
            f.write(json.dumps({"iteration": it, "total_loss": 1.0, "time": step_time}) + "\n")
        for it, (mask, box) in evals.items():
            f.write(json.dumps({"iteration": it, "segm/AP": mask, "bbox/AP": box}) + "\n")
        f.write('{"iteration": 99, "total_lo')  # a line cut by an interrupted run


def test_summary_final_and_at_iteration(tmp_path):
    tool = _tool()
    variants = [("baseline", "a.yaml"), ("percep", "b.yaml")]
    _write_run(tmp_path, "baseline", 1, {499: (10, 11), 999: (20, 21)}, 0.2, 999)
    _write_run(tmp_path, "baseline", 2, {499: (12, 13), 999: (22, 23)}, 0.2, 999)
    _write_run(tmp_path, "percep", 1, {499: (14, 15)}, 0.3, 599)  # unfinished: no final eval
    _write_run(tmp_path, "percep", 2, {499: (16, 17)}, 0.3, 599)

    table, raw = tool.summarize(variants, [1, 2], str(tmp_path), at_iteration=499)
    assert raw["baseline"][1]["segm/AP"] == 10 and raw["percep"][2]["bbox/AP"] == 17
    assert "| baseline | a.yaml | 1,2 | 11.00 ± 1.41 | 12.00 ± 1.41 |" in table
    assert "| percep | b.yaml | 1,2 | 15.00 ± 1.41 | 16.00 ± 1.41 |" in table
    assert "| 1.50x | 499 |" in table  # step time 0.3 vs 0.2, evaluated at 499

    # final evaluation (at MAX_ITER - 1 of the run's config.yaml): the unfinished runs, whose
    # last evaluation is at 499, are named apart instead of being mixed into a row
    table, raw = tool.summarize(variants, [1, 2], str(tmp_path))
    assert raw["baseline"][2]["segm/AP"] == 22 and raw["baseline"][2]["iteration"] == 999
    assert "| 1.00x | 999 |" in table and raw["percep"] == {}
    assert "| percep | b.yaml | - |" in table
    assert "Not in the tables: percep seed 1 (no checkpoint yet); percep seed 2" in table
    assert tool.read_metrics(os.path.join(tmp_path, "percep", "seed1"), at_iteration=999) is None
    assert tool.read_metrics(os.path.join(tmp_path, "nothing")) is None


def test_curves_png_and_resumed_metrics(tmp_path):
    tool = _tool()
    _write_run(tmp_path, "baseline", 1, {499: (10, 11), 999: (20, 21)}, 0.2, 999)
    _write_run(tmp_path, "baseline", 2, {499: (12, 13)}, 0.2, 599)
    # a resumed run re-logs iteration 499 after its cut line: the resumed value wins
    with open(os.path.join(tmp_path, "baseline", "seed2", "metrics.json"), "a") as f:
        f.write("\n" + json.dumps({"iteration": 499, "segm/AP": 13.5, "bbox/AP": 14.5}) + "\n")
    assert tool.read_metrics(os.path.join(tmp_path, "baseline", "seed2"))["segm/AP"] == 13.5

    runs = {
        "baseline": [
            os.path.join(tmp_path, "baseline", f"seed{s}", "metrics.json") for s in (1, 2, 3)
        ]
    }
    out = tool.plot_experiment(runs, os.path.join(tmp_path, "curves.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(out + ".tmp.png")

    with pytest.raises(ValueError, match="no run of"):
        tool.plot_experiment(
            {"none": [os.path.join(tmp_path, "missing.json")]}, str(tmp_path / "x.png")
        )


def test_semseg_metrics_and_paired_differences(tmp_path):
    tool = _tool()
    preset = tool.PRESETS["semseg-shapes-cpu"]
    assert [m.key for m in preset.metrics] == ["sem_seg/mIoU", "sem_seg/pACC"]
    for _, config in preset.variants:
        assert os.path.isfile(os.path.join(ROOT, config)), config
    variants = [("baseline", "a.yaml"), ("percep", "b.yaml")]
    miou = {"baseline": {1: 50.0, 2: 40.0, 3: 45.0}, "percep": {1: 52.0, 2: 41.0, 3: 44.0}}
    for name in variants:
        for seed, value in miou[name[0]].items():
            out = os.path.join(tmp_path, name[0], f"seed{seed}")
            os.makedirs(out)
            with open(os.path.join(out, "metrics.json"), "w") as f:
                f.write(
                    json.dumps({"iteration": 19, "time": 0.1 if name[0] == "baseline" else 0.25})
                    + "\n"
                )
                f.write(
                    json.dumps({"iteration": 39, "time": 0.1 if name[0] == "baseline" else 0.25})
                    + "\n"
                )
                f.write(
                    json.dumps({"iteration": 39, "sem_seg/mIoU": value, "sem_seg/pACC": 90.0})
                    + "\n"
                )
            _write_final_checkpoint(out, max_iter=40)
    keys = [m.key for m in preset.metrics]
    assert tool.is_finished(os.path.join(tmp_path, "percep", "seed1"), keys)
    assert not tool.is_finished(os.path.join(tmp_path, "percep", "seed1"))  # no segm/AP there
    table, raw = tool.summarize(variants, [1, 2, 3], str(tmp_path), metrics=preset.metrics)
    assert raw["percep"][2]["sem_seg/mIoU"] == 41.0
    assert (
        "| baseline | a.yaml | 1,2,3 | 45.00 ± 5.00 | 90.00 ± 0.00 | 0.10 | 1.00x | 39 |" in table
    )
    assert "| percep | b.yaml | 1,2,3 | 45.67 ± 5.69 | 90.00 ± 0.00 | 0.25 | 2.50x | 39 |" in table
    # per-seed differences +2, +1, -1: mean 0.67, sample std 1.53, better in 2 of 3 seeds
    assert "| percep | +0.67 ± 1.53 (better in 2/3) | +0.00 ± 0.00 (better in 0/3) |" in table


def test_parse_metrics_and_paired_difference_direction():
    tool = _tool()
    m = tool.parse_metrics("depth/AbsRel:AbsRel:lower,depth/delta1")
    assert m[0] == tool.Metric("depth/AbsRel", "AbsRel", False) and m[1].label == "depth/delta1"
    with pytest.raises(ValueError, match="'lower' or 'higher'"):
        tool.parse_metrics("a:b:sideways")
    assert tool.parse_metrics("depth/AbsRel:AbsRel:lower:4")[0].digits == 4
    with pytest.raises(ValueError, match="decimals"):
        tool.parse_metrics("a:b:lower:many")

    from percep_det.utils.stats import paired_difference

    d = paired_difference(
        {1: 0.20, 2: 0.30, 4: 0.1}, {1: 0.18, 2: 0.31, 3: 0.5}, higher_is_better=False
    )
    assert d.seeds == [1, 2] and d.better == 1  # seed 1 lower (better); seed 4/3 unpaired
    assert abs(d.mean - (-0.005)) < 1e-9


def test_finished_means_a_loadable_last_checkpoint_at_max_iter_and_a_final_eval(tmp_path):
    from percep_det.utils.experiment import prepare_resume, run_state

    tool = _tool()
    keys = ["sem_seg/mIoU"]
    out = str(tmp_path / "run")
    os.makedirs(out)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        f.write(json.dumps({"iteration": 39, "sem_seg/mIoU": 50.0}) + "\n")
    assert "config.yaml" in run_state(out, keys).reason  # never started
    _write_final_checkpoint(out, max_iter=40)
    assert tool.is_finished(out, keys)

    # a final checkpoint cut short (a killed save) does not count, and is set aside on resume
    path = os.path.join(out, "model_final.pth")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    state = run_state(out, keys)
    assert not state.finished and "incomplete or corrupt" in state.reason
    torch.save({"iteration": 19}, os.path.join(out, "model_0000019.pth"))
    assert prepare_resume(out)  # resumes from the last good periodic checkpoint
    assert open(os.path.join(out, "last_checkpoint")).read() == "model_0000019.pth"
    assert os.path.isfile(path + ".incomplete") and not os.path.exists(path)
    assert run_state(out, keys).reason == "checkpoint at iteration 19 of 40"

    # a checkpoint at MAX_ITER - 1 without the final evaluation is not finished either
    _write_final_checkpoint(out, max_iter=60, iteration=59)
    assert "no final evaluation" in run_state(out, keys).reason
    # nothing good to resume from: last_checkpoint goes, the run starts over
    open(path, "w").close()
    os.remove(os.path.join(out, "model_0000019.pth"))
    assert not prepare_resume(out) and not os.path.exists(os.path.join(out, "last_checkpoint"))


def test_depth_preset_lower_absrel_is_better():
    tool = _tool()
    preset = tool.PRESETS["depth-shapes-cpu"]
    assert [name for name, _ in preset.variants] == [
        "wce",
        "wce-percep",
        "wce-vnl",
        "wce-vnl-percep",
    ]
    for _, config in preset.variants:
        assert os.path.isfile(os.path.join(ROOT, config)), config
    absrel = preset.metrics[0]
    assert absrel.key == "depth/AbsRel" and not absrel.higher_is_better

    # fractions get 4 decimals: AbsRel 0.0943 vs 0.0931 would both read 0.09 at 2
    from percep_det.utils.experiment import mean_table, paired_table

    raw = {
        "wce": {1: {"depth/AbsRel": 0.0943, "depth/delta1": 0.93, "time": 0.1, "iteration": 9}},
        "wce-percep": {
            1: {"depth/AbsRel": 0.0931, "depth/delta1": 0.9312, "time": 0.2, "iteration": 9}
        },
    }
    rows = [("wce", ["wce"]), ("wce-percep", ["wce-percep"])]
    table = "\n".join(mean_table(rows, ["variant"], raw, preset.metrics, "wce"))
    assert "| wce-percep | 1 | 0.0931 | 0.9312 | 0.20 | 2.00x |" in table
    paired = "\n".join(paired_table(["wce-percep"], raw, preset.metrics, "wce"))
    assert "| wce-percep | -0.0012 (better in 1/1) | +0.0012 (better in 1/1) |" in paired


def test_cpu_time_columns_when_runs_logged_it(tmp_path):
    tool = _tool()
    for name, wall, cpu in (("baseline", 0.5, 0.2), ("percep", 0.9, 0.5)):
        out = os.path.join(tmp_path, name, "seed1")
        os.makedirs(out)
        with open(os.path.join(out, "metrics.json"), "w") as f:
            for it in (19, 39, 59):  # the first record (warm-up) is left out of both means
                f.write(
                    json.dumps(
                        {
                            "iteration": it,
                            "time": 9.0 if it == 19 else wall,
                            "cpu_time": 9.0 if it == 19 else cpu,
                        }
                    )
                    + "\n"
                )
            f.write(json.dumps({"iteration": 59, "segm/AP": 1.0, "bbox/AP": 2.0}) + "\n")
        with open(os.path.join(out, "config.yaml"), "w") as f:
            f.write("SOLVER:\n  MAX_ITER: 60\n")
    table, raw = tool.summarize([("baseline", "a.yaml"), ("percep", "b.yaml")], [1], str(tmp_path))
    assert raw["percep"][1]["cpu_time"] == 0.5 and raw["percep"][1]["time"] == 0.9
    assert "| CPU s/step | CPU vs baseline |" in table
    assert "| 0.90 | 1.80x | 0.50 | 2.50x | 59 |" in table


def test_archive_keeps_finished_and_diverged_runs_without_checkpoints_and_resume_skips_them(
    tmp_path,
):
    from percep_det.utils.experiment import RUN_STATS, archive_runs, run_state

    src, dst = str(tmp_path / "out"), str(tmp_path / "archive")
    keys = ("segm/AP", "bbox/AP")
    _write_run(src, "base", 1, {99: (20, 21)}, 0.2, 99, max_iter=100)  # finished
    _write_final_checkpoint(os.path.join(src, "base", "seed1"), 100)
    _write_run(src, "percep", 1, {49: (10, 11)}, 0.3, 59, max_iter=100)  # interrupted
    _write_final_checkpoint(os.path.join(src, "percep", "seed1"), 100, 49, "model_0000049.pth")
    _write_run(src, "percep", 2, {}, 0.3, 19, max_iter=100)  # diverged at its start
    with open(os.path.join(src, "percep", "seed2", RUN_STATS), "w") as f:
        f.write(json.dumps({"exit_code": 1, "diverged": True, "wall_s": 3.0}) + "\n")
    with open(os.path.join(src, "results.md"), "w") as f:
        f.write("| table |\n")

    report = archive_runs(src, dst)  # keys found per run: the instance metrics here
    assert report["archived"] == [os.path.join("base", "seed1")]
    assert report["diverged"] == [os.path.join("percep", "seed2")]
    assert (
        len(report["skipped"]) == 1 and "checkpoint at iteration 49 of 100" in report["skipped"][0]
    )
    archived = os.path.join(dst, "base", "seed1")
    assert sorted(os.listdir(archived)) == ["ARCHIVED", "config.yaml", "metrics.json"]
    assert not os.path.exists(os.path.join(dst, "percep", "seed1"))
    assert os.path.isfile(os.path.join(dst, "results.md"))
    assert os.path.isfile(os.path.join(dst, "percep", "seed2", RUN_STATS))
    # copied back, the archived run is finished without a checkpoint: resume does not retrain it
    assert run_state(archived, keys).finished
    assert not run_state(os.path.join(dst, "percep", "seed2"), keys).finished
    # an archived run whose final evaluation is missing is not finished (it trains again)
    with open(os.path.join(archived, "metrics.json"), "w") as f:
        f.write(json.dumps({"iteration": 49, "segm/AP": 1.0, "bbox/AP": 1.0}) + "\n")
    state = run_state(archived, keys)
    assert not state.finished and "archived without a final evaluation" in state.reason
    with pytest.raises(ValueError, match="source folder itself"):
        archive_runs(src, src)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        archive_runs(str(tmp_path / "missing"), dst)
