"""Early checks of user input, each with an error that says what to fix."""

import json
import logging
import os
from typing import Dict, Iterable, List, Optional

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from ..data.checks import (
    CheckSettings,
    DatasetCheckError,
    DatasetCheckReport,
    DatasetProblem,
    check_dataset,
    skip_bad_entries,
)
from ..data.sem_seg import check_label_file

__all__ = [
    "NUM_CLASSES_KEYS",
    "check_config_file",
    "check_dataset_contents",
    "check_datasets",
    "check_device",
    "check_sem_seg_labels",
    "num_classes_problems",
]

logger = logging.getLogger(__name__)

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
    "depth_root",
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
    entry = MetadataCatalog.get(name).get("custom_entry", None)
    if entry:  # registered from DATASETS.CUSTOM (percep_det/data/custom.py)
        return (
            f"dataset '{name}': {key} '{path}' does not exist; it comes from the DATASETS.CUSTOM "
            f"entry '{entry}' (relative paths are relative to '{os.getcwd()}'): fix the path"
        )
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


def check_datasets(cfg: CfgNode, train: bool = True) -> Dict[str, DatasetCheckReport]:
    """Fail early and clearly if a dataset named in cfg.DATASETS is unknown, not on disk, or has
    bad entries.

    First the paths in each dataset's metadata (roots first), and for Cityscapes semantic
    segmentation that the train-id labels were generated; then the content, by
    :func:`check_dataset_contents` (``DATASETS.TEST`` always, ``DATASETS.TRAIN`` when ``train``),
    which follows ``DATASETS.CHECK.POLICY``. Returns the content checks' reports.
    """
    names = list(cfg.DATASETS.TEST) + (list(cfg.DATASETS.TRAIN) if train else [])
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            builtin = sorted(n for n in registered if n.startswith(("percep_", "coco_2017")))
            raise KeyError(
                f"dataset '{name}' (in DATASETS.TRAIN/TEST) is not registered; register it with "
                "detectron2's DatasetCatalog, or without code with DATASETS.CUSTOM (see "
                f"docs/custom_datasets.md), or use one of: {builtin}"
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
    return check_dataset_contents(cfg, train=train)


# meta-architecture -> the config key of its number of classes (instance or semantic)
NUM_CLASSES_KEYS = {
    "PercepCondInst": "MODEL.FCOS.NUM_CLASSES",
    "GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES",
    "RetinaNet": "MODEL.RETINANET.NUM_CLASSES",
    "PercepSemanticSegmentor": "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "SemanticSegmentor": "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
}
_SEM_SEG_TYPES = ("sem_seg", "cityscapes_sem_seg")
POLICIES = ("stop", "skip", "off")
_LISTED = 10  # problems quoted in an error message


def _cfg_value(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def num_classes_problems(
    cfg: CfgNode, name: str, report: DatasetCheckReport
) -> List[DatasetProblem]:
    """Dataset classes the model cannot hold: categories or label values >= its NUM_CLASSES."""
    meta = MetadataCatalog.get(name)
    task = meta.get("evaluator_type", "coco")
    key = NUM_CLASSES_KEYS.get(cfg.MODEL.META_ARCHITECTURE)
    semantic_key = key == "MODEL.SEM_SEG_HEAD.NUM_CLASSES"
    if key is None or semantic_key != (task in _SEM_SEG_TYPES):
        return []  # a depth model, or a model of another task than the dataset
    num_classes = int(_cfg_value(cfg, key))
    where = f"dataset '{name}'"
    problems = []
    if semantic_key:
        stuff = meta.get("stuff_classes", None)
        count, what = (len(stuff), "stuff_classes") if stuff else (None, "")
        ignore = int(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
        for value, (path, files) in sorted(report.label_values.items(), key=lambda v: int(v[0])):
            if int(value) >= num_classes and int(value) != ignore:
                problems.append(
                    DatasetProblem(
                        f"{where}: label value {value} in '{path}' (and {files - 1} more of the "
                        f"{report.decoded_files} decoded label files) is >= {key} = {num_classes} "
                        f"and is not the ignore value MODEL.SEM_SEG_HEAD.IGNORE_VALUE = {ignore}; "
                        f"set {key} to the number of classes, or IGNORE_VALUE to the labels' "
                        "ignore value",
                        "num_classes",
                        fatal=True,
                        file_name=path,
                    )
                )
    else:
        count = report.num_categories
        if count is None and report.max_category_id is not None:
            count = report.max_category_id + 1
        what = "categories"
    if count is not None and count > num_classes:
        problems.append(
            DatasetProblem(
                f"{where} has {count} {what} but {key} is {num_classes}: class ids >= "
                f"{num_classes} would collide with the background or index past the classifier. "
                f"Set {key} {count}",
                "num_classes",
                fatal=True,
            )
        )
    return problems


def _write_bad_entries(cfg: CfgNode, name: str, report, problems, policy: str) -> str:
    path = os.path.join(cfg.OUTPUT_DIR, f"bad_entries_{name}.json")
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        data = {
            "dataset": name,
            "policy": policy,
            "num_images": report.num_images,
            "num_bad_images": len({p.record for p in problems if p.record is not None}),
            "problems": [vars(p) for p in problems],
        }
        with open(path, "w") as f:
            json.dump(data, f, indent=1, default=repr)
    return path


def check_dataset_contents(cfg: CfgNode, train: bool = True) -> Dict[str, DatasetCheckReport]:
    """Check what detectron2 will read from each non-generated dataset of ``DATASETS.TEST`` (and
    ``DATASETS.TRAIN`` when ``train``) with :func:`percep_det.data.checks.check_dataset`, and
    that the model's number of classes (``NUM_CLASSES_KEYS`` of ``MODEL.META_ARCHITECTURE``)
    holds the dataset's categories / label values.

    ``DATASETS.CHECK.POLICY``: "stop" raises on any problem; "skip" re-registers each dataset
    without its bad images (:func:`percep_det.data.checks.skip_bad_entries`: the training loader,
    the test loader and COCOEvaluator then read the filtered records) and logs a warning with
    their count; "off" checks nothing. Either way the problems are listed in
    ``OUTPUT_DIR/bad_entries_<dataset>.json``. Problems that concern a whole dataset (its json
    file, its categories, NUM_CLASSES) stop the run under "skip" too. The datasets that
    percep_det generates itself (metadata ``generated``) are trusted: only their number of classes
    is compared with the model's. Returns the reports of the datasets checked.

    Raises:
        DatasetCheckError: naming every problem's file, image id and annotation id (the first
            ones; all of them in the bad-entries file).
    """
    c = cfg.DATASETS.CHECK
    policy = str(c.POLICY).lower()
    if policy not in POLICIES:
        raise ValueError(f"DATASETS.CHECK.POLICY is '{c.POLICY}'; expected one of {POLICIES}")
    if policy == "off":
        return {}
    train_names = list(cfg.DATASETS.TRAIN) if train else []
    reports = {}
    for name in dict.fromkeys(list(cfg.DATASETS.TEST) + train_names):
        meta = MetadataCatalog.get(name)
        if meta.get("generated", False):
            # percep_det's own data is trusted: only its classes are compared with the model's
            classes = meta.get("thing_classes", None)
            report = DatasetCheckReport(name, "generated", {}, num_categories=len(classes or []))
        else:
            settings = CheckSettings(
                deep=bool(c.DEEP),
                tolerance=float(c.TOLERANCE),
                box_mask_iou=float(c.BOX_MASK_IOU),
                for_training=name in train_names,
                for_evaluation=name in cfg.DATASETS.TEST,
            )
            report = reports[name] = check_dataset(name, settings, use_cache=bool(c.CACHE))
        problems = list(report.problems) + num_classes_problems(cfg, name, report)
        if not problems:
            continue
        listing = _write_bad_entries(cfg, name, report, problems, policy)
        fatal = [p for p in problems if p.fatal]
        if fatal or policy == "stop":
            shown = fatal or problems
            bad = len({p.record for p in problems if p.record is not None})
            lines = "\n".join(f"  - {p.message}" for p in shown[:_LISTED])
            more = f"\n  ... and {len(shown) - _LISTED} more" if len(shown) > _LISTED else ""
            fix = (
                "Fix the dataset (or the config key named above)."
                if fatal
                else "Fix the entries, or set DATASETS.CHECK.POLICY skip to leave these images "
                "out (DATASETS.CHECK.POLICY off: no content check)."
            )
            raise DatasetCheckError(
                f"dataset '{name}': {len(shown)} problem{'s' * (len(shown) != 1)}"
                + ("" if fatal else f" in {bad} of {report.num_images} images")
                + f" (all listed in {listing}):\n{lines}{more}\n{fix}"
            )
        dropped = skip_bad_entries(name, report)
        logger.warning(
            f"dataset '{name}': skipped {dropped} of {report.num_images} images with problems "
            f"(DATASETS.CHECK.POLICY skip), {len(problems)} problems listed in {listing}"
        )
    return reports


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
