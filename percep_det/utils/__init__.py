"""Visualisation and plotting utilities."""
from .plot import plot_metrics
from .visualize import draw_dataset_predictions

__all__ = ["draw_dataset_predictions", "plot_metrics"]
