"""Registration of percep_det's built-in datasets with Detectron2's catalogs.

``percep_shapes_train`` / ``percep_shapes_val``: the embedded synthetic dataset of
:mod:`percep_det.data.shapes`, generated on first use (a few seconds) into
``$PERCEP_DET_CACHE/shapes`` (default ``~/.cache/percep_det/shapes``). Records carry
``sem_seg_file_name`` and ``depth_file_name`` besides the COCO instance annotations.

``percep_shapes_sem_seg_train`` / ``percep_shapes_sem_seg_val``: the same scenes as semantic
segmentation datasets (records with ``file_name``, ``sem_seg_file_name``, ``height``, ``width``;
5 ``stuff_classes`` with background = 0; ``SemSegEvaluator``).

``percep_shapes_depth_train`` (500) / ``percep_shapes_depth_val`` (100): version-2 scenes of
:mod:`percep_det.data.shapes` (a pinhole camera over a floor, so depth has monocular cues) as
depth datasets (records with ``file_name``, ``depth_file_name``, ``sem_seg_file_name``,
``height``, ``width``, ``image_id``; metadata per :mod:`percep_det.data.depth_io`:
``evaluator_type`` "depth", ``depth_scale``, the synthetic camera's ``intrinsics``,
``min_depth``/``max_depth`` = ``V2_DEPTH_RANGE``, ``eigen_crop`` False). Generated on first use
into ``<cache>/shapes/{train,val}_v2_seed0``.

NYU Depth v2 (``nyu_v2_depth_*``) under ``$DETECTRON2_DATASETS``: :mod:`percep_det.data.depth`.

``percep_voc_2012_sem_seg_train_aug`` / ``percep_voc_2012_sem_seg_val``: Pascal VOC 2012 + SBD
under ``$DETECTRON2_DATASETS`` (:mod:`percep_det.data.voc`). Cityscapes and ADE20K semantic
segmentation are detectron2's own registrations (``cityscapes_fine_sem_seg_*``,
``ade20k_sem_seg_*``).
"""

import json
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .depth import register_all_nyu_v2_depth
from .sem_seg import label_palette
from .shapes import (
    DEPTH_SCALE,
    SHAPE_CLASSES,
    V2_DEPTH_RANGE,
    ShapesSpec,
    camera_intrinsics,
    ensure_split,
    split_dir_name,
)
from .voc import register_all_voc_sem_seg

__all__ = [
    "SHAPES_DEPTH_SPLITS",
    "SHAPES_SEED",
    "SHAPES_SEM_SEG_SPLITS",
    "SHAPES_SPLITS",
    "ensure_generated",
    "load_shapes",
    "load_shapes_depth",
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
# depth-estimation name -> (split, spec): version-2 scenes, whose depth has monocular cues
SHAPES_DEPTH_SPLITS = {
    "percep_shapes_depth_train": ("train", ShapesSpec(num_images=500, version=2)),
    "percep_shapes_depth_val": ("val", ShapesSpec(num_images=100, version=2)),
}
# 0 is background, k is SHAPE_CLASSES[k - 1] (the values of the generated semantic PNGs)
SHAPES_STUFF_CLASSES = ["background"] + list(SHAPE_CLASSES)


def shapes_root() -> str:
    """Cache directory of the generated dataset (env ``PERCEP_DET_CACHE``; unset or empty: the
    default, never the working directory)."""
    cache = os.environ.get("PERCEP_DET_CACHE") or os.path.join("~", ".cache", "percep_det")
    return os.path.join(os.path.expanduser(cache), "shapes")


def _split_dir(split: str, spec: ShapesSpec) -> str:
    return os.path.join(shapes_root(), split_dir_name(split, spec, SHAPES_SEED))


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


def load_shapes_depth(name: str) -> List[Dict]:
    """Generate the version-2 split ``name`` of ``SHAPES_DEPTH_SPLITS`` if needed and return its
    depth records (``file_name``, ``depth_file_name``, ``sem_seg_file_name``, ``height``,
    ``width``, ``image_id``)."""
    split, spec = SHAPES_DEPTH_SPLITS[name]
    root = ensure_split(shapes_root(), split, spec, SHAPES_SEED)
    with open(os.path.join(root, "annotations.json")) as f:
        images = json.load(f)["images"]
    return [
        {
            "file_name": os.path.join(root, "images", image["file_name"]),
            "depth_file_name": os.path.join(root, "depth", image["depth_file_name"]),
            "sem_seg_file_name": os.path.join(root, "semantic", image["file_name"]),
            "height": image["height"],
            "width": image["width"],
            "image_id": image["id"],
        }
        for image in images
    ]


def register_shapes() -> None:
    """Register the embedded splits (instance, semantic and depth); nothing is generated until
    used."""
    for name, (split, spec) in SHAPES_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: load_shapes(name))
        root = _split_dir(split, spec)
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
    for name, (_split, spec) in SHAPES_DEPTH_SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: load_shapes_depth(name))
        MetadataCatalog.get(name).set(
            evaluator_type="depth",
            depth_scale=DEPTH_SCALE,  # depth PNG value / depth_scale = metres
            intrinsics=camera_intrinsics(spec),  # (fx, fy, cx, cy), the same for every scene
            min_depth=V2_DEPTH_RANGE[0],
            max_depth=V2_DEPTH_RANGE[1],
            eigen_crop=False,
            # the semantic maps of the same scenes (sem_seg_file_name): 0 is background
            stuff_classes=list(SHAPES_STUFF_CLASSES),
            ignore_label=255,
            generated=True,
        )


def ensure_generated(name: str) -> None:
    """Generate a built-in split now (used before evaluators read ``json_file``); other names:
    nothing to do."""
    if name in SHAPES_SPLITS:
        load_shapes(name)
    elif name in SHAPES_SEM_SEG_SPLITS:
        load_shapes(SHAPES_SEM_SEG_SPLITS[name])
    elif name in SHAPES_DEPTH_SPLITS:
        load_shapes_depth(name)


register_shapes()
# Like detectron2's builtin datasets: relative to $DETECTRON2_DATASETS (default ./datasets).
_DATASETS_ROOT = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
register_all_voc_sem_seg(_DATASETS_ROOT)
register_all_nyu_v2_depth(_DATASETS_ROOT)
