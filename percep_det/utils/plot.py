"""Training curves from detectron2's ``metrics.json``."""
import json
import math
import os
from collections import defaultdict
from typing import Dict, List, Tuple

__all__ = ["load_metrics", "plot_metrics"]


def load_metrics(path: str) -> Dict[str, List[Tuple[int, float]]]:
    """Read a ``metrics.json`` (one json object per line) into {name: [(iteration, value)]}.

    A restarted run (``--resume``) appends to the same file; for repeated iterations the last
    value wins, so the curves show what the resumed run did.
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
                raise ValueError(f"{path}:{line_no} is not valid json: {e}") from e
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


def plot_metrics(metrics_json: str, out_png: str, smooth: int = 3) -> str:
    """Plot losses (left) and evaluation APs (right) against iteration into ``out_png``.

    detectron2 already logs losses as medians over its logging window (20 iterations); ``smooth``
    averages a few logged points more (a long trailing window would show a step when the first,
    high losses leave it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = load_metrics(metrics_json)
    losses = sorted(k for k in series if k.startswith("loss_") or k == "total_loss")
    aps = sorted(k for k in series if k.split("/")[-1] in ("AP", "AP50", "AP75") and "/" in k)
    if not losses and not aps:
        raise ValueError(f"'{metrics_json}' has no loss_* or */AP entries to plot")
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
    axes[1].set_ylabel("COCO AP (%)")
    axes[1].grid(alpha=0.3)
    if aps:
        axes[1].legend(fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "no evaluation yet", ha="center", transform=axes[1].transAxes)
    fig.suptitle(os.path.dirname(os.path.abspath(metrics_json)), fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    tmp = out_png + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png
