"""tools/run_experiment.py tabulation on synthetic metrics.json files (no training)."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location("run_experiment", os.path.join(ROOT, "tools", "run_experiment.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(root, variant, seed, evals, step_time, last_iter):
    out = os.path.join(root, variant, f"seed{seed}")
    os.makedirs(out)
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

    # final evaluation: the last one of each run (the unfinished runs stop at 499 here)
    table, raw = tool.summarize(variants, [1, 2], str(tmp_path))
    assert raw["baseline"][2]["segm/AP"] == 22 and raw["baseline"][2]["iteration"] == 999
    assert "| 1.00x | 999 |" in table and "| 1.50x | 499 |" in table  # unfinished runs show it
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

    runs = {"baseline": [os.path.join(tmp_path, "baseline", f"seed{s}", "metrics.json") for s in (1, 2, 3)]}
    out = tool.plot_experiment(runs, os.path.join(tmp_path, "curves.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(out + ".tmp.png")

    with pytest.raises(ValueError, match="no run of"):
        tool.plot_experiment({"none": [os.path.join(tmp_path, "missing.json")]}, str(tmp_path / "x.png"))
