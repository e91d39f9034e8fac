"""Registration of percep_det's built-in datasets with Detectron2's catalogs.

``percep_shapes_train`` / ``percep_shapes_val``: the embedded synthetic dataset of
:mod:`percep_det.data.shapes`, generated on first use (a few seconds) into
``$PERCEP_DET_CACHE/shapes`` (default ``~/.cache/percep_det/shapes``). Records carry
``sem_seg_file_name`` and ``depth_file_name`` besides the COCO instance annotations.
"""
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .shapes import DEPTH_SCALE, GENERATOR_VERSION, SHAPE_CLASSES, ShapesSpec, ensure_split

__all__ = ["SHAPES_SPLITS", "SHAPES_SEED", "shapes_root", "load_shapes", "register_shapes"]

SHAPES_SEED = 0
# name -> (split, spec)
SHAPES_SPLITS = {
    "percep_shapes_train": ("train", ShapesSpec(num_images=500)),
    "percep_shapes_val": ("val", ShapesSpec(num_images=100)),
}


def shapes_root() -> str:
    """Cache directory of the generated dataset (env ``PERCEP_DET_CACHE``; unset or empty: the
    default, never the working directory)."""
    cache = os.environ.get("PERCEP_DET_CACHE") or os.path.join("~", ".cache", "percep_det")
    return os.path.join(os.path.expanduser(cache), "shapes")


def _split_dir(split: str) -> str:
    return os.path.join(shapes_root(), f"{split}_v{GENERATOR_VERSION}_seed{SHAPES_SEED}")


def load_shapes(name: str) -> List[Dict]:
    """Generate the split if needed and return its records in Detectron2's standard format."""
    split, spec = SHAPES_SPLITS[name]
    root = ensure_split(shapes_root(), split, spec, SHAPES_SEED)
    meta = MetadataCatalog.get(name)
    if meta.get("json_file", None) != os.path.join(root, "annotations.json"):
        # PERCEP_DET_CACHE changed after import: point the metadata at the split just loaded.
        del meta.json_file, meta.image_root
        meta.set(json_file=os.path.join(root, "annotations.json"), image_root=os.path.join(root, "images"))
    records = load_coco_json(
        os.path.join(root, "annotations.json"),
        os.path.join(root, "images"),
        name,
        extra_annotation_keys=["depth"],
    )
    for r in records:
        base = os.path.basename(r["file_name"])
        r["sem_seg_file_name"] = os.path.join(root, "semantic", base)
        r["depth_file_name"] = os.path.join(root, "depth", base)
    return records


def register_shapes() -> None:
    for name, (split, _spec) in SHAPES_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: load_shapes(name))
        root = _split_dir(split)
        MetadataCatalog.get(name).set(
            json_file=os.path.join(root, "annotations.json"),
            image_root=os.path.join(root, "images"),
            evaluator_type="coco",
            thing_classes=list(SHAPE_CLASSES),
            # For semantic segmentation of the same scenes: 0 is background.
            stuff_classes=["background"] + list(SHAPE_CLASSES),
            ignore_label=255,
            depth_scale=DEPTH_SCALE,  # depth PNG value / depth_scale = metres
            generated=True,  # prepared by percep_det itself on first use
        )


def ensure_generated(name: str) -> None:
    """Generate a built-in split now (used before evaluators read ``json_file``)."""
    if name in SHAPES_SPLITS:
        split, spec = SHAPES_SPLITS[name]
        load_shapes(name)


register_shapes()
