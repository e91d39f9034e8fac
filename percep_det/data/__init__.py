"""Built-in datasets and data utilities."""
from . import builtin  # noqa: F401  (registers percep_shapes_*, percep_voc_2012_sem_seg_*)
from .builtin import ensure_generated, load_shapes, load_shapes_sem_seg, shapes_root
from .sem_seg import LabelFormatError, check_label_file, convert_palette_label, label_palette
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_split, render_scene
from .voc import VOC_SEM_SEG_CLASSES, load_voc_sem_seg, register_voc_sem_seg

__all__ = [
    "LabelFormatError",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "VOC_SEM_SEG_CLASSES",
    "check_label_file",
    "convert_palette_label",
    "ensure_generated",
    "generate_split",
    "label_palette",
    "load_shapes",
    "load_shapes_sem_seg",
    "load_voc_sem_seg",
    "register_voc_sem_seg",
    "render_scene",
    "shapes_root",
]
