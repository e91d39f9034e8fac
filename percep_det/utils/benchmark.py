"""The harness shared by the benchmark scripts in tools/ (time and peak memory of a training step).

A benchmark runs every measurement in a fresh child process (:func:`run_in_child`), so that one
measurement cannot inherit another's cached or fragmented memory; the child reports one JSON
object as the last line of its stdout (:func:`emit_result`). Inside the child, a step is a function
without arguments (forward + backward, say): :func:`measure_peak` takes the extra memory and time
of one call, :func:`time_steps` / :func:`time_interleaved` the median time of several calls after
warm-up ones. :func:`print_table` prints the results as a Markdown table, row by row, and
:func:`run_benchmark` is the script's ``main``, for the parent and its children alike.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .memory import PeakMemory

__all__ = [
    "describe_device",
    "describe_peak",
    "emit_result",
    "measure_peak",
    "print_table",
    "run_benchmark",
    "run_in_child",
    "time_interleaved",
    "time_steps",
]

Step = Callable[[], object]


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock reads the work's end (CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_call(step_fn: Step, device: torch.device) -> float:
    """Wall time (seconds) of one call of ``step_fn``, including the device work it queued."""
    _sync(device)
    start = time.perf_counter()
    step_fn()
    _sync(device)
    return time.perf_counter() - start


def run_in_child(script: str, args: Sequence[str]) -> Dict[str, object]:
    """
    Run ``python script *args`` in a fresh process (same interpreter and environment) and return
    the JSON object the child printed last (see :func:`emit_result`).

    Returns:
        the child's result, or ``{"error": message}`` when the child failed (its last stderr line,
        e.g. an out-of-memory error) or printed no JSON object.
    """
    cmd = [sys.executable, os.path.abspath(script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    err_lines = proc.stderr.strip().splitlines()
    if proc.returncode != 0:
        reason = err_lines[-1] if err_lines else f"exit code {proc.returncode}"
        return {"error": reason}
    out_lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(out_lines[-1]) if out_lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        return {"error": f"no JSON object on the last line of {os.path.basename(script)}'s stdout"}
    return result


def emit_result(result: Mapping[str, object]) -> None:
    """The child's side of :func:`run_in_child`: print ``result`` as the last line of stdout."""
    print(json.dumps(dict(result)), flush=True)


def measure_peak(step_fn: Step, device: Union[str, torch.device]) -> Tuple[float, float]:
    """
    Run ``step_fn`` once and measure it with :class:`~percep_det.utils.memory.PeakMemory`.

    Returns:
        (peak MiB, seconds): the extra memory the call needed over what was allocated before it
        (CUDA: ``max_memory_allocated``; CPU: the rise of the process's peak resident set size),
        and its wall time.
    """
    device = torch.device(device)
    with PeakMemory(device) as mem:
        seconds = _timed_call(step_fn, device)
    return mem.peak_bytes / 2**20, seconds


def time_interleaved(
    steps: Mapping[str, Step], reps: int, device: Union[str, torch.device], warmup: int = 1
) -> Dict[str, float]:
    """
    Median wall time of each step over ``reps`` rounds, after ``warmup`` untimed rounds. A round
    calls every step once, in order (a, b, ..., a, b, ...), so that load changes on the machine
    hit all steps alike.

    Returns:
        ``{name: median seconds}``; a step that runs out of CUDA memory is dropped from the
        rounds and from the result (the others are still timed).
    """
    device = torch.device(device)
    times: Dict[str, List[float]] = {name: [] for name in steps}
    failed = set()
    for r in range(warmup + reps):
        for name, step_fn in steps.items():
            if name in failed:
                continue
            try:
                seconds = _timed_call(step_fn, device)
            except torch.cuda.OutOfMemoryError:
                failed.add(name)
                torch.cuda.empty_cache()
                continue
            if r >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items() if t and name not in failed}


def time_steps(
    step_fn: Step, reps: int, device: Union[str, torch.device], warmup: int = 1
) -> float:
    """Median wall time (seconds) of ``reps`` calls of ``step_fn`` after ``warmup`` untimed ones;
    an out-of-memory error propagates."""
    if reps < 1:
        raise ValueError(f"time_steps needs reps >= 1, got {reps}")
    device = torch.device(device)
    times = [_timed_call(step_fn, device) for _ in range(warmup + reps)]
    return statistics.median(times[warmup:])


def describe_device(device: Union[str, torch.device]) -> str:
    """One line naming the device, the torch version and the CPU threads, for a benchmark's
    header."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (
        f"device: {device} ({name}), torch {torch.__version__}, torch threads "
        f"{torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"
    )


def describe_peak(device: Union[str, torch.device]) -> str:
    """One line saying what :func:`measure_peak` measures on ``device``."""
    if torch.device(device).type == "cuda":
        how = "torch.cuda.max_memory_allocated during the step minus what was allocated before it"
    else:
        how = "rise of the peak RSS (VmHWM, reset before the step) over the RSS before the step"
    return f"peak = extra memory of one step (MiB): {how}"


def run_benchmark(
    argv: Optional[Sequence[str]],
    parse_args: Callable[[List[str]], argparse.Namespace],
    child: Callable[[argparse.Namespace], Mapping[str, object]],
    parent: Callable[[argparse.Namespace, List[str]], None],
) -> None:
    """
    A benchmark script's ``main``: parse ``argv`` (default: the command line); in a child
    process (``args.child`` set) emit ``child(args)`` (:func:`emit_result`), otherwise run
    ``parent(args, argv)``, which starts the children with :func:`run_in_child` on ``argv`` plus
    the child's selectors (``--child`` ...), so that they see the user's options.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        emit_result(child(args))
    else:
        parent(args, argv)


def _format_cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:#.3g}"
    return str(value).replace("|", "\\|")  # e.g. an error message


def print_table(rows: Iterable[Mapping[str, object]], columns: Sequence[str]) -> None:
    """
    Print ``rows`` as a Markdown table with the header ``columns``, one row as soon as it is
    produced (``rows`` may be a generator that runs the measurements).

    Args:
        rows: ``{column: value}``; a missing column is an empty cell, a float is written with 3
            significant digits (no decimals from 100 on; NaN as "-"), anything else with ``str``.
        columns: the column names, in order.
    """
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns), flush=True)
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise KeyError(f"row has columns {sorted(unknown)} not in the table's {list(columns)}")
        cells = [_format_cell(row[c]) if c in row else "" for c in columns]
        print("| " + " | ".join(cells) + " |", flush=True)
