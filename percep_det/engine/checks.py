"""Early checks of user input, each with an error that says what to fix."""
import os

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["check_config_file", "check_datasets", "check_device"]


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


def check_datasets(cfg: CfgNode, train: bool = True) -> None:
    """Fail early and clearly if a dataset named in cfg.DATASETS is unknown or not on disk."""
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
        for key in ("image_root", "json_file"):
            path = meta.get(key, None)
            if path is not None and not os.path.exists(path):
                root = os.environ.get("DETECTRON2_DATASETS", "datasets")
                raise FileNotFoundError(
                    f"dataset '{name}': {key} '{path}' does not exist. Set DETECTRON2_DATASETS to "
                    f"the directory that contains coco/ (now: '{root}'), or prepare the data as "
                    "described in datasets/README.md"
                )
