"""Early checks of user input, each with an error that says what to fix."""
import os
from typing import Dict, Iterable, List, Optional

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data.sem_seg import check_label_file

__all__ = ["check_config_file", "check_datasets", "check_device", "check_sem_seg_labels"]

# Metadata keys that hold the on-disk location of a dataset, in the order they are checked (roots
# first). detectron2: COCO/LVIS (json_file, image_root), Cityscapes (image_dir, gt_dir), ADE20K
# (image_root, sem_seg_root), COCO panoptic, VOC detection (dirname); percep_det's VOC (list_file).
_PATH_KEYS = (
    "dirname",
    "image_root",
    "image_dir",
    "json_file",
    "gt_dir",
    "sem_seg_root",
    "panoptic_root",
    "panoptic_json",
    "list_file",
)
# dataset name prefix -> how to prepare it (datasets/README.md has the details)
_PREPARE = {
    "cityscapes_fine_": "Cityscapes: leftImg8bit/ and gtFine/ from cityscapes-dataset.com, then "
    "cityscapesscripts' createTrainIdLabelImgs.py for the *_labelTrainIds.png semantic labels",
    "ade20k_sem_seg_": "ADE20K: ADEChallengeData2016.zip, then detectron2's "
    "datasets/prepare_ade20k_sem_seg.py, which writes annotations_detectron2/",
    "percep_voc_2012_sem_seg_": "VOC 2012 + SBD: python datasets/prepare_voc_sem_seg.py",
    "nyu_v2_depth_official_": "NYU Depth v2: python datasets/prepare_nyu_v2.py (from "
    "nyu_depth_v2_labeled.mat and splits.mat)",
    "nyu_v2_depth_bts_": "NYU Depth v2, BTS layout: sync/ and the BTS file lists under "
    "nyu_depth_v2/",
}


def check_config_file(path: str) -> None:
    if not path:
        raise FileNotFoundError(
            "no --config-file given; pick one under configs/, e.g. "
            "configs/quick_schedules/condinst_R18_shapes_cpu.yaml"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config file '{path}' does not exist (resolved to '{os.path.abspath(path)}'); "
            "paths are relative to the current directory, configs live under configs/"
        )


def check_device(cfg: CfgNode) -> None:
    device = str(cfg.MODEL.DEVICE)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is '{device}' but torch sees no CUDA device: run on a GPU machine or "
            "add 'MODEL.DEVICE cpu' to the command line"
        )


def _missing_path_message(name: str, key: str, path: str) -> str:
    root = os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    top = relative.split(os.sep)[0] if not relative.startswith(os.pardir) else ""
    where = f"the directory that contains {top}/" if top else "the directory that holds it"
    prepare = next((how for p, how in _PREPARE.items() if name.startswith(p)), "")
    return (
        f"dataset '{name}': {key} '{path}' does not exist. Set DETECTRON2_DATASETS to {where} "
        f"(now: '{root}'), or prepare the data as described in datasets/README.md"
        + (f" ({prepare})" if prepare else "")
    )


def _check_cityscapes_train_ids(name: str, gt_dir: str) -> None:
    """detectron2's Cityscapes semantic loader reads ``*_labelTrainIds.png``, which the raw download
    lacks: look for one in the first city folder."""
    cities = sorted(d for d in os.listdir(gt_dir) if os.path.isdir(os.path.join(gt_dir, d)))
    if not cities:
        raise FileNotFoundError(f"dataset '{name}': gt_dir '{gt_dir}' has no city folders")
    first = os.path.join(gt_dir, cities[0])
    if not any(f.endswith("_labelTrainIds.png") for f in os.listdir(first)):
        raise FileNotFoundError(
            f"dataset '{name}': no *_gtFine_labelTrainIds.png in '{first}'. Create them with "
            "`CITYSCAPES_DATASET=<cityscapes dir> python -m "
            "cityscapesscripts.preparation.createTrainIdLabelImgs` (pip install cityscapesscripts)"
            "; see datasets/README.md"
        )


def check_datasets(cfg: CfgNode, train: bool = True) -> None:
    """Fail early and clearly if a dataset named in cfg.DATASETS is unknown or not on disk.

    Reads no dataset: it checks the paths in each dataset's metadata (roots first), and for
    Cityscapes semantic segmentation that the train-id labels were generated.
    """
    names = list(cfg.DATASETS.TEST) + (list(cfg.DATASETS.TRAIN) if train else [])
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            builtin = sorted(n for n in registered if n.startswith(("percep_", "coco_2017")))
            raise KeyError(
                f"dataset '{name}' (in DATASETS.TRAIN/TEST) is not registered; "
                f"register it with detectron2's DatasetCatalog or use one of: {builtin}"
            )
        meta = MetadataCatalog.get(name)
        if meta.get("generated", False):
            continue  # percep_det's own datasets are generated on first use
        for key in _PATH_KEYS:
            path = meta.get(key, None)
            if isinstance(path, str) and not os.path.exists(path):
                raise FileNotFoundError(_missing_path_message(name, key, path))
        if meta.get("evaluator_type", None) == "cityscapes_sem_seg":
            _check_cityscapes_train_ids(name, meta.gt_dir)


def check_sem_seg_labels(
    records: Iterable[Dict], allow_palette: bool = False, max_files: int = 100
) -> List[str]:
    """Check the first semantic label file of every label folder of ``records`` (PNG headers only).

    A dataset's label files are written by one preparation step, so one file per folder tells
    whether the folder holds palette ('P') or other non-'L' images, which detectron2's
    DatasetMapper would turn into wrong class ids silently (see :mod:`percep_det.data.sem_seg`).
    ``allow_palette``: for ``SemSegEvaluator``, which reads palette indices correctly. At most
    ``max_files`` folders are checked. Returns the checked paths (none if no record has
    ``sem_seg_file_name``).

    Raises:
        LabelFormatError: naming the file and how to convert it.
    """
    first_per_folder: Dict[str, str] = {}
    for record in records:
        path: Optional[str] = record.get("sem_seg_file_name")
        if path is None:
            continue
        first_per_folder.setdefault(os.path.dirname(path), path)
        if len(first_per_folder) >= max_files:
            break
    for path in first_per_folder.values():
        check_label_file(path, allow_palette=allow_palette)
    return list(first_per_folder.values())
