"""Built-in datasets and data utilities."""

from . import builtin  # noqa: F401  (registers percep_shapes_*, percep_voc_*, nyu_v2_depth_*)
from .builtin import (
    ensure_generated,
    load_shapes,
    load_shapes_depth,
    load_shapes_sem_seg,
    register_shapes,
    shapes_root,
)
from .depth import (
    NYU_V2_INTRINSICS,
    load_nyu_v2_depth,
    register_all_nyu_v2_depth,
    register_nyu_v2_depth,
)
from .depth_io import read_depth, write_depth_png
from .depth_mapper import DepthDatasetMapper, apply_depth_transforms
from .sem_seg import LabelFormatError, check_label_file, convert_palette_label, label_palette
from .shapes import SHAPE_CLASSES, ShapesSpec, camera_intrinsics, generate_split, render_scene
from .voc import VOC_SEM_SEG_CLASSES, load_voc_sem_seg, register_voc_sem_seg
from .checks import (
    CheckSettings,
    DatasetCheckError,
    DatasetCheckReport,
    DatasetProblem,
    check_dataset,
    skip_bad_entries,
)
from .custom import parse_custom_dataset, register_custom_dataset, register_custom_datasets
from .mappers import NameFilesOnError, build_test_mapper

__all__ = [
    "DepthDatasetMapper",
    "LabelFormatError",
    "NYU_V2_INTRINSICS",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "VOC_SEM_SEG_CLASSES",
    "apply_depth_transforms",
    "camera_intrinsics",
    "check_label_file",
    "convert_palette_label",
    "ensure_generated",
    "generate_split",
    "label_palette",
    "load_nyu_v2_depth",
    "load_shapes",
    "load_shapes_depth",
    "load_shapes_sem_seg",
    "load_voc_sem_seg",
    "read_depth",
    "register_all_nyu_v2_depth",
    "register_nyu_v2_depth",
    "register_shapes",
    "register_voc_sem_seg",
    "render_scene",
    "shapes_root",
    "write_depth_png",
    "CheckSettings",
    "DatasetCheckError",
    "DatasetCheckReport",
    "DatasetProblem",
    "NameFilesOnError",
    "build_test_mapper",
    "check_dataset",
    "parse_custom_dataset",
    "register_custom_dataset",
    "register_custom_datasets",
    "skip_bad_entries",
]
