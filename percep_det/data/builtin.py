"""Registration of percep_det's built-in datasets with Detectron2's catalogs.

``percep_shapes_train`` / ``percep_shapes_val``: the embedded synthetic dataset of
:mod:`percep_det.data.shapes`, generated on first use (a few seconds) into
``$PERCEP_DET_CACHE/shapes`` (default ``~/.cache/percep_det/shapes``). Records carry
``sem_seg_file_name`` and ``depth_file_name`` besides the COCO instance annotations.

``percep_shapes_sem_seg_train`` / ``percep_shapes_sem_seg_val``: the same scenes as semantic
segmentation datasets (records with ``file_name``, ``sem_seg_file_name``, ``height``, ``width``;
5 ``stuff_classes`` with background = 0; ``SemSegEvaluator``).

``percep_voc_2012_sem_seg_train_aug`` / ``percep_voc_2012_sem_seg_val``: Pascal VOC 2012 + SBD
under ``$DETECTRON2_DATASETS`` (:mod:`percep_det.data.voc`). Cityscapes and ADE20K semantic
segmentation are detectron2's own registrations (``cityscapes_fine_sem_seg_*``,
``ade20k_sem_seg_*``).
"""
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .sem_seg import label_palette
from .shapes import DEPTH_SCALE, GENERATOR_VERSION, SHAPE_CLASSES, ShapesSpec, ensure_split
from .voc import register_all_voc_sem_seg

__all__ = [
    "SHAPES_SEED",
    "SHAPES_SEM_SEG_SPLITS",
    "SHAPES_SPLITS",
    "ensure_generated",
    "load_shapes",
    "load_shapes_sem_seg",
    "register_shapes",
    "shapes_root",
]

SHAPES_SEED = 0
# name -> (split, spec)
SHAPES_SPLITS = {
    "percep_shapes_train": ("train", ShapesSpec(num_images=500)),
    "percep_shapes_val": ("val", ShapesSpec(num_images=100)),
}
# semantic-segmentation name -> the instance split whose scenes (and files) it shares
SHAPES_SEM_SEG_SPLITS = {
    "percep_shapes_sem_seg_train": "percep_shapes_train",
    "percep_shapes_sem_seg_val": "percep_shapes_val",
}
# 0 is background, k is SHAPE_CLASSES[k - 1] (the values of the generated semantic PNGs)
SHAPES_STUFF_CLASSES = ["background"] + list(SHAPE_CLASSES)


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
        meta.set(
            json_file=os.path.join(root, "annotations.json"),
            image_root=os.path.join(root, "images"),
        )
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


def load_shapes_sem_seg(name: str) -> List[Dict]:
    """The records of the instance split that ``name`` shares its scenes with, reduced to what a
    semantic-segmentation dataset has (no ``annotations``, so the mapper builds no instances)."""
    keys = ("file_name", "sem_seg_file_name", "height", "width", "image_id")
    return [{k: r[k] for k in keys} for r in load_shapes(SHAPES_SEM_SEG_SPLITS[name])]


def register_shapes() -> None:
    """Register the embedded splits (instance and semantic); nothing is generated until used."""
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
            stuff_classes=list(SHAPES_STUFF_CLASSES),
            ignore_label=255,
            depth_scale=DEPTH_SCALE,  # depth PNG value / depth_scale = metres
            generated=True,  # prepared by percep_det itself on first use
        )
    for name, source in SHAPES_SEM_SEG_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: load_shapes_sem_seg(name))
        MetadataCatalog.get(name).set(
            evaluator_type="sem_seg",
            stuff_classes=list(SHAPES_STUFF_CLASSES),
            stuff_colors=label_palette(len(SHAPES_STUFF_CLASSES)),
            ignore_label=255,  # the generated maps have no ignore pixels
            source_dataset=source,  # the instance split with the same scenes
            generated=True,
        )


def ensure_generated(name: str) -> None:
    """Generate a built-in split now (used before evaluators read ``json_file``); other names:
    nothing to do."""
    if name in SHAPES_SPLITS:
        load_shapes(name)
    elif name in SHAPES_SEM_SEG_SPLITS:
        load_shapes(SHAPES_SEM_SEG_SPLITS[name])


register_shapes()
# Like detectron2's builtin datasets: relative to $DETECTRON2_DATASETS (default ./datasets).
register_all_voc_sem_seg(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
