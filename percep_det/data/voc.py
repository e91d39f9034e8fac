"""Pascal VOC 2012 semantic segmentation with the SBD "aug" training set.

detectron2 registers only VOC's detection splits (``voc_2012_*``, box AP). The usual segmentation
setting is VOC 2012 plus the SBD annotations of Hariharan et al.: ``train_aug`` (10,582 images) and
the official ``val`` (1,449 images), 21 classes (background + 20), 255 = ignore (object borders).

Layout under ``$DETECTRON2_DATASETS`` (default ``./datasets``), see datasets/README.md::

    VOC2012/JPEGImages/<id>.jpg
    VOC2012/SegmentationClassAug/<id>.png             single-channel ('L') class indices
    VOC2012/ImageSets/Segmentation/train_aug.txt      one <id> per line
    VOC2012/ImageSets/Segmentation/val.txt
"""

import logging
import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES

from .files import require_listed_files
from .sem_seg import label_palette

__all__ = [
    "VOC_SEM_SEG_CLASSES",
    "VOC_SEM_SEG_SPLITS",
    "load_voc_sem_seg",
    "register_all_voc_sem_seg",
    "register_voc_sem_seg",
]

logger = logging.getLogger(__name__)

VOC_SEM_SEG_CLASSES = ["background"] + list(CLASS_NAMES)
# name -> (list file stem, expected number of images)
VOC_SEM_SEG_SPLITS = {
    "percep_voc_2012_sem_seg_train_aug": ("train_aug", 10582),
    "percep_voc_2012_sem_seg_val": ("val", 1449),
}
IMAGE_DIR = "JPEGImages"
LABEL_DIR = "SegmentationClassAug"
LIST_DIR = os.path.join("ImageSets", "Segmentation")
HOWTO = "see the Pascal VOC section of datasets/README.md (datasets/prepare_voc_sem_seg.py)"


def _paths(voc_root: str, split: str) -> Dict[str, str]:
    return {
        "image_root": os.path.join(voc_root, IMAGE_DIR),
        "sem_seg_root": os.path.join(voc_root, LABEL_DIR),
        "list_file": os.path.join(voc_root, LIST_DIR, f"{split}.txt"),
    }


def load_voc_sem_seg(voc_root: str, split: str, expected: int = 0) -> List[Dict]:
    """Records (``file_name``, ``sem_seg_file_name``, ``image_id``) of the ids in
    ``<voc_root>/ImageSets/Segmentation/<split>.txt``.

    Every listed image and label must exist (checked here, so a missing file stops the run now,
    not in a data-loader worker hours later). ``expected``: the usual number of ids; another count
    is logged as a warning (a subset may be intended). ``height``/``width`` are not read from the
    12K files here; detectron2's mapper fills them in from the decoded image.

    Raises:
        FileNotFoundError: the list file, or listed images or labels, are missing.
    """
    paths = _paths(voc_root, split)
    env = os.environ.get("DETECTRON2_DATASETS", "datasets")
    if not os.path.isfile(paths["list_file"]):
        raise FileNotFoundError(
            f"VOC segmentation list file '{paths['list_file']}' does not exist (DETECTRON2_DATASETS"
            f" is '{env}'; VOC2012/ must be directly under it); {HOWTO}"
        )
    with open(paths["list_file"]) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise FileNotFoundError(f"VOC segmentation list file '{paths['list_file']}' is empty")
    if expected and len(ids) != expected:
        logger.warning(
            f"{paths['list_file']} lists {len(ids)} images; the standard split has {expected}"
        )
    records = [
        {
            "file_name": os.path.join(paths["image_root"], f"{image_id}.jpg"),
            "sem_seg_file_name": os.path.join(paths["sem_seg_root"], f"{image_id}.png"),
            "image_id": image_id,
        }
        for image_id in ids
    ]
    require_listed_files(records, ("file_name", "sem_seg_file_name"), paths["list_file"], HOWTO)
    return records


def register_voc_sem_seg(name: str, voc_root: str, split: str, expected: int = 0) -> None:
    """Register ``name``: the ids of ``<voc_root>/ImageSets/Segmentation/<split>.txt``, with VOC's
    21 ``stuff_classes``, their official colours, ``ignore_label`` 255 and ``SemSegEvaluator``."""
    DatasetCatalog.register(name, lambda: load_voc_sem_seg(voc_root, split, expected))
    MetadataCatalog.get(name).set(
        stuff_classes=list(VOC_SEM_SEG_CLASSES),
        stuff_colors=label_palette(len(VOC_SEM_SEG_CLASSES)),
        ignore_label=255,
        evaluator_type="sem_seg",
        **_paths(voc_root, split),
    )


def register_all_voc_sem_seg(root: str) -> None:
    """Register the ``VOC_SEM_SEG_SPLITS`` of ``<root>/VOC2012`` (not read until used)."""
    for name, (split, expected) in VOC_SEM_SEG_SPLITS.items():
        if name not in DatasetCatalog.list():
            register_voc_sem_seg(name, os.path.join(root, "VOC2012"), split, expected)
