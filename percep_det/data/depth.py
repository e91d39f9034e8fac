"""NYU Depth v2 for monocular depth estimation (registered lazily under ``$DETECTRON2_DATASETS``).

Two layouts, both read through a BTS-style list file (one ``rgb_path depth_path focal`` per line,
paths relative to a data folder, depth = 16-bit PNG in millimetres)::

    $DETECTRON2_DATASETS/nyu_depth_v2/
      official/train/rgb_00003.png, depth_00003.png, ...    made by datasets/prepare_nyu_v2.py from
      official/test/rgb_00001.png, depth_00001.png, ...     nyu_depth_v2_labeled.mat + splits.mat
      official/train_files.txt, official/test_files.txt     (795 / 654 frames; the number is the
                                                             frame's 1-based index in the .mat)
      sync/<scene>/rgb_00045.jpg, sync_depth_00045.png      BTS's sync.zip (about 24K raw frames)
      nyudepthv2_train_files_with_gt.txt                    BTS's train list for sync/
      official_splits/test/<scene>/rgb_00001.jpg, sync_depth_00001.png
      nyudepthv2_test_files_with_gt.txt                     BTS's test list (the same 654 frames)

Registered names (``NYU_V2_DEPTH_SPLITS``): ``nyu_v2_depth_official_{train,test}``,
``nyu_v2_depth_bts_{train,test}``. Their metadata (``NYU_V2_METADATA``) follows
:mod:`percep_det.data.depth_io`: ``evaluator_type`` "depth", ``depth_scale`` 1000, the NYU RGB
camera's ``intrinsics`` (fx 518.8579, fy 519.4696, cx 325.5824, cy 253.7362 at 640 x 480),
``min_depth`` 1e-3, ``max_depth`` 10, ``eigen_crop`` True; plus ``image_root`` (the data folder)
and ``list_file``, which ``tools/train_net.py`` checks before training.
"""

import logging
import os
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from .files import require_listed_files

__all__ = [
    "NYU_V2_DEPTH_SPLITS",
    "NYU_V2_INTRINSICS",
    "NYU_V2_METADATA",
    "OFFICIAL_DIR",
    "OFFICIAL_LIST",
    "load_nyu_v2_depth",
    "register_all_nyu_v2_depth",
    "register_nyu_v2_depth",
]

logger = logging.getLogger(__name__)

NYU_V2_DIR = "nyu_depth_v2"  # under $DETECTRON2_DATASETS
OFFICIAL_DIR = "official"  # under NYU_V2_DIR, written by datasets/prepare_nyu_v2.py
OFFICIAL_LIST = "{split}_files.txt"  # under OFFICIAL_DIR
# NYU toolbox calibration of the RGB camera, (fx, fy, cx, cy) in pixels of the 640 x 480 frames.
NYU_V2_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_V2_METADATA = dict(
    evaluator_type="depth",
    depth_scale=1000.0,  # PNG value / 1000 = metres
    intrinsics=NYU_V2_INTRINSICS,
    min_depth=1e-3,  # BTS's evaluation range
    max_depth=10.0,
    eigen_crop=True,  # evaluate on rows 45:471, cols 41:601
)
# name -> (list file, data folder, both relative to $DETECTRON2_DATASETS/nyu_depth_v2; the usual
# number of frames, 0 = not checked)
NYU_V2_DEPTH_SPLITS = {
    "nyu_v2_depth_official_train": (
        os.path.join(OFFICIAL_DIR, OFFICIAL_LIST.format(split="train")),
        OFFICIAL_DIR,
        795,
    ),
    "nyu_v2_depth_official_test": (
        os.path.join(OFFICIAL_DIR, OFFICIAL_LIST.format(split="test")),
        OFFICIAL_DIR,
        654,
    ),
    "nyu_v2_depth_bts_train": ("nyudepthv2_train_files_with_gt.txt", "sync", 0),
    "nyu_v2_depth_bts_test": (
        "nyudepthv2_test_files_with_gt.txt",
        os.path.join("official_splits", "test"),
        654,
    ),
}
HOWTO = (
    "the official 795/654 split is made by `python datasets/prepare_nyu_v2.py` from "
    "nyu_depth_v2_labeled.mat and splits.mat; BTS's sync/ frames and lists are downloaded as they "
    "are; see the NYU Depth v2 section of datasets/README.md"
)


def _missing(what: str, path: str, dataset_name: str) -> FileNotFoundError:
    env = os.environ.get("DETECTRON2_DATASETS", "datasets")
    name = f"dataset '{dataset_name}': " if dataset_name else ""
    return FileNotFoundError(
        f"{name}{what} '{path}' does not exist (DETECTRON2_DATASETS is '{env}'; {NYU_V2_DIR}/ must "
        f"be directly under it); {HOWTO}"
    )


def load_nyu_v2_depth(
    list_file: str, data_root: str, dataset_name: str = "", expected: int = 0
) -> List[Dict]:
    """Depth records of a BTS-style list file.

    Each line is ``rgb_path depth_path [focal]`` with paths relative to ``data_root`` (a leading
    ``/`` is ignored, as BTS writes them); lines whose depth is ``None`` (no ground truth) are
    skipped. Every listed file must exist (checked here, so a missing file stops the run now, not
    in a data-loader worker later). ``height``/``width`` are those of the first listed image (every
    NYU frame is 640 x 480; detectron2's size check catches any other). ``expected``: the usual
    number of frames; another count is logged as a warning.

    Returns:
        list[dict]: ``file_name``, ``depth_file_name``, ``height``, ``width``, ``image_id`` (the
        image path relative to ``data_root``, without extension).

    Raises:
        FileNotFoundError: the list file, the data folder or listed files are missing; the message
            names the path, the dataset, DETECTRON2_DATASETS and datasets/prepare_nyu_v2.py.
    """
    if not os.path.isdir(data_root):
        raise _missing("NYU Depth v2 data folder", data_root, dataset_name)
    if not os.path.isfile(list_file):
        raise _missing("NYU Depth v2 list file", list_file, dataset_name)
    records, skipped = [], 0
    with open(list_file) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(
                    f"line {line_no} of '{list_file}' is '{line.strip()}'; expected "
                    "'rgb_path depth_path [focal]'"
                )
            if fields[1] == "None":
                skipped += 1
                continue
            rgb, depth = (p.lstrip("/") for p in fields[:2])
            records.append(
                {
                    "file_name": os.path.join(data_root, rgb),
                    "depth_file_name": os.path.join(data_root, depth),
                    "image_id": os.path.splitext(rgb)[0],
                }
            )
    if not records:
        raise FileNotFoundError(f"NYU Depth v2 list file '{list_file}' lists no frames; {HOWTO}")
    if skipped:
        logger.info(f"{list_file}: skipped {skipped} frames without ground-truth depth")
    if expected and len(records) != expected:
        logger.warning(
            f"{list_file} lists {len(records)} frames; the standard split has {expected}"
        )
    require_listed_files(records, ("file_name", "depth_file_name"), list_file, HOWTO, dataset_name)
    with Image.open(records[0]["file_name"]) as img:  # reads the header only
        width, height = img.size
    for r in records:
        r["height"], r["width"] = height, width
    return records


def register_nyu_v2_depth(
    name: str, list_file: str, data_root: str, expected: int = 0, metadata: Optional[Dict] = None
) -> None:
    """Register ``name``: the frames of ``list_file`` under ``data_root`` (not read until used),
    with ``NYU_V2_METADATA`` updated by ``metadata``."""
    DatasetCatalog.register(name, lambda: load_nyu_v2_depth(list_file, data_root, name, expected))
    meta = dict(NYU_V2_METADATA, **(metadata or {}))
    MetadataCatalog.get(name).set(image_root=data_root, list_file=list_file, **meta)


def register_all_nyu_v2_depth(root: str) -> None:
    """Register the ``NYU_V2_DEPTH_SPLITS`` of ``<root>/nyu_depth_v2`` (nothing is read)."""
    for name, (list_file, data_dir, expected) in NYU_V2_DEPTH_SPLITS.items():
        if name not in DatasetCatalog.list():
            base = os.path.join(root, NYU_V2_DIR)
            register_nyu_v2_depth(
                name, os.path.join(base, list_file), os.path.join(base, data_dir), expected
            )
