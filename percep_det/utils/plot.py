"""Training curves from detectron2's ``metrics.json`` and the figures of seeded comparisons
(metric per setting with error bars, metric against extraction depth, metric against cost)."""

import json
import logging
import math
import os
from collections import defaultdict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .stats import mean_std, pareto_front

__all__ = [
    "load_metrics",
    "plot_cost",
    "plot_depth",
    "plot_experiment",
    "plot_levels",
    "plot_metrics",
]

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
        raise FileNotFoundError(
            f"metrics file '{path}' does not exist (it is OUTPUT_DIR/metrics.json)"
        )
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
                its,
                [min(per_it[i]) for i in its],
                [max(per_it[i]) for i in its],
                color=line.get_color(),
                alpha=0.2,
            )
            for i, m in zip(its, means):
                if len(per_it[i]) < n_runs:
                    ax.annotate(
                        f"n={len(per_it[i])}",
                        (i, m),
                        fontsize=7,
                        textcoords="offset points",
                        xytext=(3, -10),
                    )
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


# --------------------------------------------------------------------------------------------
# Seeded comparisons. Values are per-seed lists; a point is drawn at their mean with an error bar
# of one sample std (none with a single seed); nan values (runs without the evaluation) are left
# out. ``baseline`` maps a metric to the per-seed values of the run without the compared term:
# drawn as a horizontal line with a +-1 std band.
# --------------------------------------------------------------------------------------------
def _draw_baseline(ax, values: Optional[Sequence[float]]) -> None:
    if not values:
        return
    mean, std = mean_std(values)
    if math.isnan(mean):
        return
    ax.axhline(mean, color="gray", ls="--", lw=1, label=f"baseline ({len(values)} seeds)")
    if not math.isnan(std):
        ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15)


def plot_levels(
    values: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    out_png: str,
    baseline: Optional[Mapping[str, Sequence[float]]] = None,
    xlabel: str = "",
    title: str = "",
) -> str:
    """One panel per metric: x = levels (in the order first seen), one series per entry of
    ``values[metric]`` ({series: {level: per-seed values}}), mean +- std error bars, the series
    side by side at each level."""
    plt = _pyplot()

    metrics = list(values)
    if not metrics:
        raise ValueError("plot_levels: no metric to plot")
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(max(6, 1.2 * _num_levels(values)) * len(metrics), 4.8),
        squeeze=False,
    )
    for ax, metric in zip(axes[0], metrics):
        series = values[metric]
        levels: List[str] = []
        for per_level in series.values():
            levels += [lv for lv in per_level if lv not in levels]
        width = 0.6 / max(len(series), 1)
        for k, (name, per_level) in enumerate(series.items()):
            xs, means, stds = [], [], []
            for i, level in enumerate(levels):
                if level not in per_level:
                    continue
                mean, std = mean_std(per_level[level])
                if math.isnan(mean):
                    continue
                xs.append(i + (k - (len(series) - 1) / 2) * width)
                means.append(mean)
                stds.append(0.0 if math.isnan(std) else std)
            if xs:
                ax.errorbar(xs, means, yerr=stds, fmt="o", capsize=4, label=name or None)
        _draw_baseline(ax, (baseline or {}).get(metric))
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels(levels, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(levels) - 0.4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{metric} (mean ± std over seeds)")
        ax.grid(alpha=0.3, axis="y")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png)


def _num_levels(values) -> int:
    return max(
        (len(per_level) for series in values.values() for per_level in series.values()), default=1
    )


def plot_depth(
    values: Mapping[str, Mapping[str, Sequence[Tuple[float, str, Sequence[float]]]]],
    out_png: str,
    baseline: Optional[Mapping[str, Sequence[float]]] = None,
    title: str = "",
) -> str:
    """One panel per metric, one line per loss network: ``values[metric][net]`` is a list of
    (extraction depth = the point's total downsampling, point name, per-seed values); x is on a
    log2 axis and each point is labelled with its name."""
    plt = _pyplot()

    metrics = list(values)
    if not metrics:
        raise ValueError("plot_depth: no metric to plot")
    fig, axes = plt.subplots(1, len(metrics), figsize=(7 * len(metrics), 5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for net, points in values[metric].items():
            rows = []
            for depth, point, seeds in sorted(points, key=lambda p: p[0]):
                mean, std = mean_std(seeds)
                if not math.isnan(mean):
                    rows.append((depth, point, mean, 0.0 if math.isnan(std) else std))
            if not rows:
                continue
            line = ax.errorbar(
                [r[0] for r in rows], [r[2] for r in rows], yerr=[r[3] for r in rows],
                marker="o", capsize=4, label=net,
            )  # fmt: skip
            color = line[0].get_color()
            for depth, point, mean, _ in rows:
                ax.annotate(point, (depth, mean), fontsize=7, color=color,
                            textcoords="offset points", xytext=(4, 4))  # fmt: skip
        _draw_baseline(ax, (baseline or {}).get(metric))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("extraction depth: downsampling of the point (log2)")
        ax.set_ylabel(f"{metric} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png)


def _label_lifts(xs: Sequence[float], ys: Sequence[float]) -> List[int]:
    """How many label heights to lift each point's label so that labels of nearby points (within 8 %
    of the x range and 4 % of the y range of an earlier point) do not print over each other."""

    def span(v: Sequence[float]) -> float:
        finite = [float(a) for a in v if not math.isnan(float(a))]
        if not finite or max(finite) == min(finite):
            return 1.0
        return max(finite) - min(finite)

    sx, sy = span(xs), span(ys)
    lifts: List[int] = []
    for i in range(len(xs)):
        near = {
            lifts[j]
            for j in range(i)
            if abs(xs[i] - xs[j]) < 0.08 * sx and abs(ys[i] - ys[j]) < 0.04 * sy + 1e-12
        }
        k = 0
        while k in near:
            k += 1
        lifts.append(k)
    return lifts


def plot_cost(
    names: Sequence[str],
    costs: Mapping[str, Sequence[float]],
    values: Mapping[str, Sequence[Sequence[float]]],
    out_png: str,
    higher_is_better: Optional[Mapping[str, bool]] = None,
    title: str = "",
) -> str:
    """Accuracy against cost: one panel per (metric, cost measure), one point per setting of
    ``names`` (mean +- std over seeds of ``values[metric][i]`` against ``costs[measure][i]``).
    The settings that no other beats on both (:func:`~percep_det.utils.stats.pareto_front`) are
    ringed in red and joined by a line; the others are grey. Settings with a nan cost or without
    values are left out of that panel (named in its corner)."""
    plt = _pyplot()

    metrics, measures = list(values), list(costs)
    if not metrics or not measures:
        raise ValueError("plot_cost: needs at least one metric and one cost measure")
    fig, axes = plt.subplots(
        len(metrics), len(measures), figsize=(7 * len(measures), 5 * len(metrics)), squeeze=False
    )
    for r, metric in enumerate(metrics):
        stats = [mean_std(v) for v in values[metric]]
        higher = (higher_is_better or {}).get(metric, True)
        for c, measure in enumerate(measures):
            ax = axes[r][c]
            xs = [float(x) for x in costs[measure]]
            front = set(pareto_front(xs, [m for m, _ in stats], higher))
            shown = [i for i in range(len(names)) if not math.isnan(xs[i] + stats[i][0])]
            missing = [n for i, n in enumerate(names) if i not in shown]
            lift = dict(
                zip(shown, _label_lifts([xs[i] for i in shown], [stats[i][0] for i in shown]))
            )
            for i in shown:
                name = names[i]
                mean, std = stats[i]
                on_front = i in front
                ax.errorbar(
                    xs[i], mean, yerr=0.0 if math.isnan(std) else std, fmt="o", capsize=3,
                    color="tab:red" if on_front else "tab:gray", ms=8 if on_front else 5,
                )  # fmt: skip
                ax.annotate(name, (xs[i], mean), fontsize=7, textcoords="offset points",
                            xytext=(4, 4 + 8 * lift[i]), color="tab:red" if on_front else "black",
                            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if lift[i]
                            else None)  # fmt: skip
            line = sorted((xs[i], stats[i][0]) for i in front)
            if line:
                ax.plot([p[0] for p in line], [p[1] for p in line], color="tab:red", lw=1,
                        label="nothing else is both cheaper and better")  # fmt: skip
                ax.legend(fontsize=8, loc="lower right" if higher else "upper right")
            if missing:
                ax.text(0.01, 0.99, "no value: " + ", ".join(missing[:8])
                        + (" ..." if len(missing) > 8 else ""), transform=ax.transAxes,
                        fontsize=6, va="top")  # fmt: skip
            ax.set_xlabel(measure)
            ax.set_ylabel(
                f"{metric} (mean ± std over seeds)" + ("" if higher else ", lower is better")
            )
            ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png)
