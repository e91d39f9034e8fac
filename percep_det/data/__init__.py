"""Built-in datasets and data utilities."""
from . import builtin  # noqa: F401  (registers percep_shapes_{train,val})
from .builtin import ensure_generated, load_shapes, shapes_root
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_split, render_scene

__all__ = [
    "SHAPE_CLASSES",
    "ShapesSpec",
    "ensure_generated",
    "generate_split",
    "load_shapes",
    "render_scene",
    "shapes_root",
]
