"""Visualisation and plotting utilities."""
from .plot import plot_metrics
from .visualize import draw_dataset_predictions, draw_depth_comparison

__all__ = ["draw_dataset_predictions", "draw_depth_comparison", "plot_metrics"]

# the figures and the statistic of seeded comparisons (tools/study_loss_networks.py); the run
# machinery itself is percep_det.utils.experiment
from .plot import plot_cost, plot_depth, plot_levels  # noqa: E402
from .stats import pareto_front  # noqa: E402

__all__ += ["pareto_front", "plot_cost", "plot_depth", "plot_levels"]
