"""percep_det.utils.benchmark (the benchmark harness) and the two benchmark scripts' measurement
code, in process and on tiny inputs."""

import os
import sys

import pytest
import torch

from percep_det.modeling.perceptual import PerceptualLoss
from percep_det.utils import benchmark as bench
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool(name: str):
    module = load_script(os.path.join(ROOT, "tools", f"{name}.py"), name)
    return module


def test_run_in_child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(  # what emit_result prints, without importing torch (fast)
        "import json, sys\n"
        "if sys.argv[1] == 'fail':\n"
        "    raise RuntimeError('out of memory')\n"
        "print('some log line')\n"
        "if sys.argv[1] == 'ok':\n"
        "    print(json.dumps({'args': sys.argv[1:], 'x': 1.5}))\n"
    )
    assert bench.run_in_child(str(script), ["ok", 3]) == {"args": ["ok", "3"], "x": 1.5}
    assert bench.run_in_child(str(script), ["fail"]) == {"error": "RuntimeError: out of memory"}
    assert "no JSON object" in bench.run_in_child(str(script), ["silent"])["error"]


def test_emit_result(capsys):
    bench.emit_result({"a": 1})
    assert capsys.readouterr().out == '{"a": 1}\n'


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU peak memory reads /proc")
def test_measure_peak_cpu():
    def step():
        x = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched
        return x.sum()

    # RSS-based: pages freed earlier in this process may be reused, so only half is required
    peak_mib, seconds = bench.measure_peak(step, "cpu")
    assert 128 <= peak_mib < 2048
    assert seconds > 0


def test_time_steps():
    calls = []
    median = bench.time_steps(lambda: calls.append(1), reps=3, device="cpu", warmup=2)
    assert len(calls) == 5 and 0 <= median < 1
    with pytest.raises(ValueError, match="reps >= 1"):
        bench.time_steps(lambda: None, reps=0, device="cpu")


def test_time_interleaved():
    calls = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = bench.time_interleaved(steps, reps=2, device=torch.device("cpu"), warmup=1)
    assert calls == ["a", "b"] * 3
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_print_table(capsys):
    def rows():
        yield {"name": "x", "time (s)": 0.012345, "peak (MiB)": 1234.5}
        yield {"name": "y|z", "time (s)": float("nan")}

    bench.print_table(rows(), ["name", "time (s)", "peak (MiB)"])
    assert capsys.readouterr().out.splitlines() == [
        "| name | time (s) | peak (MiB) |",
        "|---|---|---|",
        "| x | 0.0123 | 1234 |",
        "| y\\|z | - |  |",
    ]
    with pytest.raises(KeyError, match="not in the table"):
        bench.print_table([{"other": 1}], ["name"])


def test_descriptions():
    assert bench.describe_device("cpu").startswith("device: cpu (CPU)")
    assert "VmHWM" in bench.describe_peak("cpu")
    assert "max_memory_allocated" in bench.describe_peak("cuda")


def test_percep_head_options():
    tool = _tool("benchmark_percep_head")
    assert tool.parse_option("full") == (-1, False)
    assert tool.parse_option("max64") == (64, False)
    assert tool.parse_option("crop") == (-1, True)
    assert tool.parse_option("crop_max8") == (8, True)
    with pytest.raises(ValueError, match="unknown option"):
        tool.parse_option("max")
    head = tool.make_head("crop_max8", 4, ["MODEL.PERCEPTUAL_LOSS.LOSS_WEIGHT", "0.5"])
    loss = head.perceptual_loss
    assert isinstance(loss, PerceptualLoss)
    assert (loss.max_inputs, loss.crop, loss.chunk_size, loss.loss_weight) == (8, True, 4, 0.5)


def test_percep_head_child():
    tool = _tool("benchmark_percep_head")
    args = tool.parse_args(
        ["--child", "--option", "crop_max2", "--n", "3", "--height", "64", "--width", "64"]
        + ["--reps", "1", "--device", "cpu", "MODEL.PERCEPTUAL_LOSS.BLOCKS", "[1,1,1,1,1]"]
    )
    assert args.opts == ["MODEL.PERCEPTUAL_LOSS.BLOCKS", "[1,1,1,1,1]"]
    result = tool.child(args)
    assert set(result) == {"time_s", "peak_mib"} and result["time_s"] > 0


def test_loss_benchmark_child():
    tool = _tool("benchmark_loss")
    common = ["--n", "2", "--height", "32", "--width", "32", "--reps", "1", "--warmup", "0"]
    common += ["--device", "cpu", "--chunk-size", "1"]
    memory = tool.child(tool.parse_args(common + ["--child", "memory", "--variant", "chunked"]))
    assert set(memory) == {"peak_mib", "first_s"}
    timed = tool.child(tool.parse_args(common + ["--child", "time", "--variants", "naive,chunked"]))
    assert set(timed) == {"naive", "chunked"}


def test_loss_benchmark_variants_checked(capsys):
    tool = _tool("benchmark_loss")
    with pytest.raises(SystemExit):
        tool.parse_args(["--variants", "chunked"])
    assert "must include 'naive'" in capsys.readouterr().err


def test_loss_benchmark_rows_report_child_errors(monkeypatch):
    tool = _tool("benchmark_loss")
    fake = {"memory": {"peak_mib": 10.0, "first_s": 1.0}, "time": {"naive": 2.0, "chunked": 1.0}}
    mode = lambda argv: argv[argv.index("--child") + 1]  # noqa: E731
    monkeypatch.setattr(bench, "run_in_child", lambda script, argv: dict(fake[mode(argv)]))
    args = tool.parse_args(["--sizes", "4", "--variants", "naive,chunked"])
    rows = list(tool.rows(args, []))
    assert [r["variant"] for r in rows] == ["naive", "chunked"]
    assert rows[1]["time / naive"] == 0.5 and rows[1]["naive peak / peak"] == 1.0
    fake["time"] = {"error": "OutOfMemoryError"}
    assert all("failed" in r["time (s)"] for r in tool.rows(args, []))
