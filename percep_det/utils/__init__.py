"""Visualisation and plotting utilities."""
from .plot import plot_metrics
from .visualize import draw_dataset_predictions, draw_depth_comparison

__all__ = ["draw_dataset_predictions", "draw_depth_comparison", "plot_metrics"]
