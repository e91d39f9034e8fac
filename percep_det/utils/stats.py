"""Summary statistics of seeded comparisons: mean +- sample std, paired per-seed differences.

Shared by the experiment tools (``tools/run_experiment.py``, ``tools/study_loss_networks.py``):
one definition of "mean +- std over seeds", of "paired difference to the baseline" and of "the
settings that nothing else beats on both accuracy and cost" (:func:`pareto_front`).
"""

import math
from typing import Dict, List, NamedTuple, Sequence, Tuple

__all__ = [
    "mean_std",
    "PairedDifference",
    "paired_difference",
    "format_mean_std",
    "pareto_front",
]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of the finite values; nan when there are none
    (std: nan with fewer than two)."""
    values = [float(v) for v in values if not math.isnan(float(v))]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """ "m ± s", "m" without a std, "-" without a mean."""
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


class PairedDifference(NamedTuple):
    """``other - base`` over the seeds both have. ``better`` counts the seeds where ``other`` is
    better (higher, or lower when ``higher_is_better`` was False); ``seeds`` lists the pairs."""

    mean: float
    std: float
    better: int
    seeds: List[int]

    def format(self, digits: int = 2) -> str:
        if not self.seeds:
            return "-"
        sign = "+" if self.mean >= 0 else ""
        std = "" if math.isnan(self.std) else f" ± {self.std:.{digits}f}"
        return f"{sign}{self.mean:.{digits}f}{std} (better in {self.better}/{len(self.seeds)})"


def paired_difference(
    base: Dict[int, float], other: Dict[int, float], higher_is_better: bool = True
) -> PairedDifference:
    """Per-seed ``other[s] - base[s]`` over the seeds present (and finite) in both: its mean,
    sample std, and in how many seeds ``other`` is better. Seeds share the data order and the
    initialisation of everything the variants have in common, so the paired difference removes
    most of the seed-to-seed spread that the two means carry separately."""
    seeds = sorted(
        s for s in base if s in other and not math.isnan(base[s]) and not math.isnan(other[s])
    )
    diffs = [other[s] - base[s] for s in seeds]
    mean, std = mean_std(diffs)
    better = sum(1 for d in diffs if (d > 0 if higher_is_better else d < 0))
    return PairedDifference(mean, std, better, seeds)


def pareto_front(
    costs: Sequence[float], values: Sequence[float], higher_is_better: bool = True
) -> List[int]:
    """Indices (in input order) of the points that no other point beats on both cost and value.

    Point ``i`` is dominated when some ``j`` costs no more and has a value at least as good, and is
    strictly better in one of the two. Points with a nan cost or value are never on the front and
    dominate nothing. Equal points are all kept.
    """
    if len(costs) != len(values):
        raise ValueError(f"pareto_front: {len(costs)} costs but {len(values)} values")
    sign = 1.0 if higher_is_better else -1.0
    points = [
        (float(c), sign * float(v)) if not (math.isnan(float(c)) or math.isnan(float(v))) else None
        for c, v in zip(costs, values)
    ]
    front = []
    for i, p in enumerate(points):
        if p is None:
            continue
        dominated = any(
            q is not None and q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])
            for q in points
        )
        if not dominated:
            front.append(i)
    return front
