"""Training curves from detectron2's ``metrics.json``."""
import json
import logging
import math
import os
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

__all__ = ["load_metrics", "plot_metrics", "plot_experiment"]

logger = logging.getLogger(__name__)


# evaluation results drawn by plot_metrics (the last part of a metrics.json key: "segm/AP",
# "sem_seg/mIoU"); per-class entries such as "sem_seg/IoU-road" are left out
SUMMARY_METRICS = ("AP", "AP50", "AP75", "mIoU", "fwIoU", "mACC", "pACC")


def load_metrics(path: str) -> Dict[str, List[Tuple[int, float]]]:
    """Read a ``metrics.json`` (one json object per line) into {name: [(iteration, value)]}.

    A restarted run (``--resume``) appends to the same file; for repeated iterations the last
    value wins, so the curves show what the resumed run did. A line that is not valid json (cut
    when a run was killed mid-write) is skipped with a warning.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"metrics file '{path}' does not exist (it is OUTPUT_DIR/metrics.json)")
    series: Dict[str, Dict[int, float]] = defaultdict(dict)
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                logger.warning(f"{path}:{line_no} is not valid json ({e}); skipped")
                continue
            it = row.get("iteration")
            if it is None:
                continue
            for k, v in row.items():
                if k != "iteration" and isinstance(v, (int, float)) and math.isfinite(v):
                    series[k][int(it)] = float(v)
    return {k: sorted(v.items()) for k, v in series.items()}


def _smooth(values: List[float], window: int) -> List[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (training machines have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(metrics_json: str, out_png: str, smooth: int = 3) -> str:
    """Plot losses (left) and evaluation summaries (right: APs, mIoU, ...) against iteration into ``out_png``.

    detectron2 already logs losses as medians over its logging window (20 iterations); ``smooth``
    averages a few logged points more (a long trailing window would show a step when the first,
    high losses leave it).
    """
    plt = _pyplot()

    series = load_metrics(metrics_json)
    losses = sorted(k for k in series if k.startswith("loss_") or k == "total_loss")
    aps = sorted(k for k in series if "/" in k and k.split("/")[-1] in SUMMARY_METRICS)
    if not losses and not aps:
        raise ValueError(
            f"'{metrics_json}' has no loss_* or evaluation entries (*/{{{','.join(SUMMARY_METRICS)}}}) to plot"
        )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for k in losses:
        its, vals = zip(*series[k])
        axes[0].plot(its, _smooth(list(vals), smooth), label=k, lw=2 if k == "total_loss" else 1)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel(f"loss (moving average of {smooth} logged points)")
    axes[0].set_yscale("log")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    for k in aps:
        its, vals = zip(*series[k])
        axes[1].plot(its, vals, marker="o", label=k)
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("evaluation (%)")
    axes[1].grid(alpha=0.3)
    if aps:
        axes[1].legend(fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "no evaluation yet", ha="center", transform=axes[1].transAxes)
    fig.suptitle(os.path.dirname(os.path.abspath(metrics_json)), fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png)


def _save(fig, out_png: str) -> str:
    """Write ``fig`` to ``out_png`` completely or not at all."""
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    tmp = out_png + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)
    os.replace(tmp, out_png)
    return out_png


def plot_experiment(
    runs: Dict[str, Sequence[str]],
    out_png: str,
    keys: Sequence[str] = ("segm/AP", "bbox/AP"),
    title: str = "",
) -> str:
    """Compare variants over seeds: one panel per evaluation key (e.g. ``segm/AP``), one line per
    variant = mean over its seeds at each evaluated iteration, shaded from the lowest to the
    highest seed. ``runs`` maps a variant name to the ``metrics.json`` paths of its seeds (missing
    files are left out; an iteration's mean uses the seeds that reached it, marked with their
    count when fewer than all).
    """
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    plotted = 0
    for name, paths in runs.items():
        series = [load_metrics(p) for p in paths if os.path.isfile(p)]
        for ax, key in zip(axes[0], keys):
            per_it: Dict[int, List[float]] = defaultdict(list)
            for s in series:
                for it, v in s.get(key, []):
                    per_it[it].append(v)
            if not per_it:
                continue
            n_runs = sum(1 for s in series if s.get(key))  # runs with at least one evaluation
            its = sorted(per_it)
            means = [sum(per_it[i]) / len(per_it[i]) for i in its]
            line = ax.plot(its, means, marker="o", label=f"{name} ({n_runs} seeds)")[0]
            ax.fill_between(
                its, [min(per_it[i]) for i in its], [max(per_it[i]) for i in its],
                color=line.get_color(), alpha=0.2,
            )
            for i, m in zip(its, means):
                if len(per_it[i]) < n_runs:
                    ax.annotate(f"n={len(per_it[i])}", (i, m), fontsize=7, textcoords="offset points",
                                xytext=(3, -10))
            plotted += 1
    if not plotted:
        plt.close(fig)
        raise ValueError(f"no run of {sorted(runs)} has any of {list(keys)} in its metrics.json")
    for ax, key in zip(axes[0], keys):
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{key}: mean over seeds, band = min..max")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png)
