"""What detectron2 will read from a dataset, checked before training or evaluation.

detectron2 trusts its datasets: a bad entry crashes a data-loader worker with a traceback that
names neither the file nor the entry (a truncated PNG, an RLE of the wrong size, a missing key), or
trains on wrong data without any error (a 16-bit PNG read as an image of 255s, boxes in
``[x0, y0, x1, y1]`` instead of ``[x, y, width, height]``, ``iscrowd`` "0" as a string, duplicated
image ids), and an uncompressed RLE whose counts do not sum to ``height * width`` makes pycocotools'
evaluation hang. :func:`check_dataset` reads what detectron2 reads and reports each problem with the
file, the image id and the annotation id, and what to fix:

* a COCO json (the metadata's ``json_file`` of an ``evaluator_type`` "coco" dataset): readable
  UTF-8 JSON without a byte order mark, ``images`` / ``annotations`` lists, non-empty
  ``categories``, every image with ``id``, ``file_name``, ``height``, ``width``, every annotation
  with a unique ``id``, a known ``image_id`` and ``category_id``, a box, and (for evaluation)
  ``area`` and ``iscrowd``;
* every record (the dataset's loader output, or the json's images): ``file_name``, ``height``,
  ``width``, a unique ``image_id``; the image file exists, is an image PIL reads, is not 16- or
  32-bit (detectron2 would read it as 255s), is not truncated and has the record's size;
* every annotation: ``bbox`` of 4 finite numbers with a positive size inside the image (up to a
  tolerance), ``bbox_mode``, an int ``category_id`` of the dataset, ``iscrowd`` the int 0 or 1,
  polygons of >= 3 points inside the image, RLEs of the image's size whose counts cover it exactly,
  and a box that agrees with its mask (IoU of the box with the mask's bounding box);
* semantic labels (``sem_seg_file_name``): exist, single-channel (:func:`check_label_file`), the
  image's size; the label values found are returned for the caller to compare with the model;
* depth maps (``depth_file_name``): exist, 16-bit PNG or .npy (:func:`read_depth`), the image's
  size.

Speed: images are checked from their header (``PIL.Image.open`` without ``load``) and their last
kilobyte (the PNG ``IEND`` / JPEG end-of-image marker that a truncated file lacks); label and depth
files from their header too, and ``SAMPLE_DECODE`` of them, evenly spaced, are decoded. ``deep``
decodes every file (``verify`` + ``load``), which is much slower. A result is cached under
``$PERCEP_DET_CACHE/dataset_checks``, keyed by the dataset's name, a fingerprint of its data (the
json file's path, size and mtime, or a hash of the records) and :data:`CHECK_VERSION`: checking the
same data again costs a file read. Files changed in place under an unchanged json are not noticed:
pass ``use_cache=False`` (``tools/check_dataset.py --no-cache``) after editing images.

:func:`skip_bad_entries` replaces a dataset's registration with a view without the images that
have problems (an image with one bad annotation is dropped whole: training it without that
annotation would teach the object as background), and points the metadata's ``json_file`` at a
filtered copy, so that the training loader, the test loader and ``COCOEvaluator`` all see the same
images.
"""

import codecs
import hashlib
import json
import logging
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode
from PIL import Image

from .builtin import shapes_root
from .depth_io import read_depth
from .sem_seg import LABEL_MODE, LabelFormatError, check_label_file

__all__ = [
    "CHECK_VERSION",
    "CheckSettings",
    "DatasetCheckError",
    "DatasetCheckReport",
    "DatasetProblem",
    "check_dataset",
    "check_cache_dir",
    "original_loader",
    "record_key",
    "skip_bad_entries",
]

logger = logging.getLogger(__name__)

# Bump when a check changes what it reports: cached results of older versions are not reused.
CHECK_VERSION = 1
# Label and depth files decoded per dataset when not ``deep`` (evenly spaced over the records).
SAMPLE_DECODE = 50
# PIL modes of 16- and 32-bit images: detectron2's read_image converts them to "RGB" as 255s.
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# PIL modes read_depth accepts for a PNG depth map.
DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")
# Bytes at the end of an image searched for its end marker.
_TAIL = 1024
_MISSING = object()


class DatasetCheckError(ValueError):
    """A dataset has problems that stop training or evaluation (the message lists them)."""


@dataclass
class DatasetProblem:
    """One problem found by :func:`check_dataset`.

    ``fatal``: the dataset as a whole cannot be read (the json file, its categories); such a problem
    stops a run under every policy. Other problems belong to one image (``record``, the key of
    :func:`record_key`), which the "skip" policy drops.
    """

    message: str
    kind: str
    fatal: bool = False
    image_id: Any = None
    file_name: Optional[str] = None
    annotation_id: Any = None
    record: Optional[str] = None


@dataclass
class CheckSettings:
    """What :func:`check_dataset` checks, and how strictly (all part of the cache key)."""

    # decode every image / label / depth file instead of reading headers
    deep: bool = False
    # pixels a box or polygon may extend beyond the image
    tolerance: float = 2.0
    # report a box whose IoU with its mask's bounding box is below this (0 = off)
    box_mask_iou: float = 0.5
    # training reads semantic labels with convert("L"): palette PNGs are wrong there
    for_training: bool = True
    # COCOEvaluator reads the json: its annotations need 'area' and 'iscrowd'
    for_evaluation: bool = True


@dataclass
class DatasetCheckReport:
    """The result of :func:`check_dataset` (what the cache stores)."""

    dataset: str
    fingerprint: str
    settings: Dict
    num_images: int = 0
    num_annotations: int = 0
    # number of categories (the json's 'categories' or the metadata's thing_classes), if known
    num_categories: Optional[int] = None
    # largest (contiguous) category_id of the records' annotations, if they were read
    max_category_id: Optional[int] = None
    # semantic label value (as a string) -> [first file holding it, number of decoded files]
    label_values: Dict[str, List] = field(default_factory=dict)
    problems: List[DatasetProblem] = field(default_factory=list)
    # the json's image and annotation list indices without a usable entry (for skip_bad_entries)
    drop_images: List[int] = field(default_factory=list)
    drop_annotations: List[int] = field(default_factory=list)
    # the json's image folder (records are keyed by image id and path) and the cache key
    image_root: str = ""
    cache_key: str = ""
    decoded_files: int = 0
    seconds: float = 0.0
    from_cache: bool = False

    @property
    def fatal(self) -> List[DatasetProblem]:
        return [p for p in self.problems if p.fatal]

    def bad_records(self) -> Set[str]:
        """Keys (:func:`record_key`) of the records that have a problem."""
        return {p.record for p in self.problems if p.record is not None}

    def to_dict(self) -> Dict:
        out = asdict(self)
        out.pop("from_cache")
        return out

    @classmethod
    def from_dict(cls, data: Dict) -> "DatasetCheckReport":
        data = dict(data)
        data["problems"] = [DatasetProblem(**p) for p in data.get("problems", [])]
        return cls(**data)


def record_key(image_id: Any, file_name: Any) -> str:
    """The key that identifies a record across runs: image id and image path."""
    return f"{image_id!r}|{file_name}"


def check_cache_dir() -> str:
    """Where check results and filtered jsons are kept: next to the generated datasets
    (``$PERCEP_DET_CACHE``, default ``~/.cache/percep_det``)."""
    return os.path.join(os.path.dirname(shapes_root()), "dataset_checks")


# ---------------------------------------------------------------------------- small predicates


def _is_int(value: Any) -> bool:
    # type() first: the ABC isinstance checks are slow, and this runs per coordinate
    return type(value) is int or (isinstance(value, Integral) and not isinstance(value, bool))


def _is_number(value: Any) -> bool:
    t = type(value)
    return t is float or t is int or (isinstance(value, Real) and not isinstance(value, bool))


def _all_numbers(values: Sequence) -> bool:
    for v in values:
        t = type(v)
        if t is not float and t is not int and not _is_number(v):
            return False
    return True


def _number_sum(values: Sequence) -> Optional[float]:
    """The sum of ``values`` if they are all numbers (NaN or inf if one is), else None. One C
    loop: ``sum`` raises TypeError on a string, None or a list, and NaN and inf propagate."""
    try:
        total = sum(values)
    except TypeError:
        return None
    return total if _is_number(total) else None


def _is_key(value: Any) -> bool:
    """An image or annotation id: an int or a string."""
    return type(value) is str or _is_int(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _rle_string_counts(counts: str) -> Optional[List[int]]:
    """The run lengths of a compressed COCO RLE string, or None if it is malformed.

    pycocotools has no validating parser: its C decoder trusts the string and writes as many pixels
    as the runs add up to, past the end of the mask if they add up to more. This is the same
    format as pycocotools' ``rleFrString`` (5 bits per character, offset 48, 0x20 = more
    characters follow, 0x10 = sign; runs from the third on are stored as differences)."""
    out: List[int] = []
    value = shift = 0
    for char in counts:
        c = ord(char) - 48
        if c < 0 or c > 63:
            return None
        value |= (c & 0x1F) << (5 * shift)
        shift += 1
        if c & 0x20:
            continue
        if c & 0x10:
            value |= -1 << (5 * shift)
        if len(out) > 2:
            value += out[-2]
        out.append(value)
        value = shift = 0
    return None if shift else out


# ---------------------------------------------------------------------------- annotations


def _polygon_messages(
    segm: List, height: Optional[int], width: Optional[int], tol: float
) -> Tuple[Optional[Tuple[float, float, float, float]], List[Tuple[str, str]]]:
    msgs = []
    if not segm:
        return None, [("segmentation", "segmentation is an empty list; give polygons or drop it")]
    if _all_numbers(segm):
        return None, [
            (
                "segmentation",
                "segmentation is a flat list of numbers; polygons are a list of lists "
                "[[x1, y1, x2, y2, ...], ...]: wrap it in another list",
            )
        ]
    xs: List[float] = []
    ys: List[float] = []
    for j, poly in enumerate(segm):
        if isinstance(poly, np.ndarray):
            poly = poly.tolist()
        total = _number_sum(poly) if isinstance(poly, (list, tuple)) else None
        if total is None:
            msgs.append(("segmentation", f"polygon {j} is {_short(poly)}, not a list of numbers"))
            continue
        if not math.isfinite(total):
            msgs.append(("segmentation", f"polygon {j} has NaN or infinite coordinates"))
            continue
        if len(poly) % 2 or len(poly) < 6:
            msgs.append(
                (
                    "segmentation",
                    f"polygon {j} has {len(poly)} coordinates; a polygon is x, y pairs of at "
                    "least 3 points (detectron2 drops shorter ones, and the instance with them)",
                )
            )
            continue
        px, py = poly[0::2], poly[1::2]
        x0, x1, y0, y1 = min(px), max(px), min(py), max(py)
        if width is not None and height is not None:
            if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
                msgs.append(
                    (
                        "segmentation",
                        f"polygon {j} spans x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, outside the "
                        f"{width} x {height} image (tolerance {tol:g} px); its coordinates are "
                        "pixels of this image, not of another size",
                    )
                )
                continue
        xs += (x0, x1)
        ys += (y0, y1)
    box = (min(xs), min(ys), max(xs), max(ys)) if xs and not msgs else None
    return box, msgs


def _rle_messages(
    segm: Dict, height: Optional[int], width: Optional[int]
) -> Tuple[Optional[Tuple[float, float, float, float]], List[Tuple[str, str]]]:
    size = segm.get("size")
    counts = segm.get("counts")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) for v in size):
        return None, [("rle", f"RLE 'size' is {_short(size)}; expected [height, width] (ints)")]
    h, w = int(size[0]), int(size[1])
    if height is not None and width is not None and (h, w) != (height, width):
        return None, [
            (
                "rle",
                f"RLE size [{h}, {w}] differs from the image's [height, width] = [{height}, "
                f"{width}] (detectron2 fails on it in training, and evaluation compares masks of "
                "different sizes); encode the mask at the image's size",
            )
        ]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        runs = _rle_string_counts(counts)
        if runs is None or any(r < 0 for r in runs):
            return None, [("rle", "RLE 'counts' is not a valid compressed COCO RLE string")]
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    elif isinstance(counts, list):
        if not all(_is_int(r) and r >= 0 for r in counts):
            return None, [("rle", "uncompressed RLE 'counts' must be non-negative ints")]
        runs = counts
        rle = None
    else:
        return None, [("rle", f"RLE 'counts' is {_short(counts)}; expected a string or a list")]
    total = sum(runs)
    if total != h * w:
        return None, [
            (
                "rle",
                f"RLE counts sum to {total}, not height x width = {h} x {w} = {h * w} (pycocotools "
                "reads past the mask or hangs in evaluation); re-encode the mask with "
                "pycocotools.mask.encode",
            )
        ]
    if rle is None:  # safe now that the runs cover the mask exactly
        rle = mask_util.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    x, y, bw, bh = mask_util.toBbox(rle).tolist()
    if bw <= 0 or bh <= 0:
        return None, [("rle", "the RLE mask is empty (no pixel set); remove the annotation")]
    return (x, y, x + bw, y + bh), []


def _mask_messages(
    segm: Any, height: Optional[int], width: Optional[int], tol: float
) -> Tuple[Optional[Tuple[float, float, float, float]], List[Tuple[str, str]]]:
    """The bounding box (x0, y0, x1, y1) of a segmentation and its problems."""
    if isinstance(segm, list):
        return _polygon_messages(segm, height, width, tol)
    if isinstance(segm, dict):
        return _rle_messages(segm, height, width)
    if isinstance(segm, np.ndarray):
        if segm.ndim != 2 or (height is not None and segm.shape != (height, width)):
            return None, [("segmentation", f"mask array of shape {segm.shape}; expected (H, W)")]
        ys, xs = np.nonzero(segm)
        if not len(xs):
            return None, [("segmentation", "the mask array is empty; remove the annotation")]
        return (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0), []
    return None, [
        (
            "segmentation",
            f"segmentation is a {type(segm).__name__}; expected polygons (a list of lists of "
            "x, y) or a COCO RLE dict with 'size' and 'counts'",
        )
    ]


def _annotation_messages(
    ann: Dict,
    height: Optional[int],
    width: Optional[int],
    settings: CheckSettings,
    *,
    json_format: bool,
    category_ids: Optional[Set] = None,
    num_categories: Optional[int] = None,
) -> List[Tuple[str, str]]:
    """(kind, message) for each problem of one annotation.

    ``json_format``: a raw COCO json annotation (box [x, y, w, h], category ids of
    ``category_ids``), else a detectron2 record's (``bbox_mode``, contiguous category ids below
    ``num_categories``)."""
    tol = settings.tolerance
    msgs: List[Tuple[str, str]] = []
    box = None
    xywh = True
    x0 = y0 = x1 = y1 = None
    raw = ann.get("bbox", _MISSING)
    if raw is _MISSING:
        what = "[x, y, width, height]" if json_format else "'bbox' with its 'bbox_mode'"
        msgs.append(("bbox", f"has no 'bbox'; every annotation needs {what}"))
    else:
        b = raw.tolist() if isinstance(raw, np.ndarray) else raw
        mode = BoxMode.XYWH_ABS if json_format else ann.get("bbox_mode", _MISSING)
        total = _number_sum(b) if isinstance(b, (list, tuple)) and len(b) == 4 else None
        if total is None:
            msgs.append(("bbox", f"bbox is {_short(b)}; expected 4 numbers"))
        elif not math.isfinite(total):
            msgs.append(("bbox", f"bbox {list(b)} has NaN or infinite values; fix or remove it"))
        elif mode is _MISSING:
            msgs.append(
                (
                    "bbox",
                    "has no 'bbox_mode'; give BoxMode.XYWH_ABS for [x, y, width, height] or "
                    "BoxMode.XYXY_ABS for [x0, y0, x1, y1]",
                )
            )
        elif _is_int(mode) and mode in (BoxMode.XYWH_ABS, BoxMode.XYXY_ABS):
            xywh = mode == BoxMode.XYWH_ABS
            x0, y0 = b[0], b[1]
            x1, y1 = (b[0] + b[2], b[1] + b[3]) if xywh else (b[2], b[3])
        else:
            msgs.append(
                (
                    "bbox",
                    f"bbox_mode {mode!r}: detectron2's mapper reads BoxMode.XYWH_ABS or "
                    "BoxMode.XYXY_ABS boxes (absolute pixels)",
                )
            )
        if x0 is not None:
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                msgs.append(
                    (
                        "bbox",
                        f"bbox {list(b)} has zero or negative size ({x1 - x0:g} x {y1 - y0:g}); "
                        "detectron2 drops such instances without a word (the object becomes "
                        "background): fix the box or remove the annotation",
                    )
                )
            elif (
                height is not None
                and width is not None
                and (x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol)
            ):
                fits_as_corners = (
                    xywh
                    and b[2] > b[0]
                    and b[3] > b[1]
                    and (min(b[0], b[1]) >= -tol and b[2] <= width + tol and b[3] <= height + tol)
                )
                msgs.append(
                    (
                        "bbox",
                        f"bbox {list(b)} (corners {x0:g}, {y0:g}, {x1:g}, {y1:g}) extends beyond "
                        f"the {width} x {height} image by more than {tol:g} px; "
                        + (
                            "its numbers fit the image as corners [x0, y0, x1, y1], but COCO "
                            "boxes are [x, y, width, height]"
                            if fits_as_corners
                            else "boxes are pixels of this image"
                        ),
                    )
                )
            else:
                box = (x0, y0, x1, y1)
    cat = ann.get("category_id", _MISSING)
    if cat is _MISSING:
        msgs.append(("category", "has no 'category_id'"))
    elif not _is_int(cat):
        msgs.append(("category", f"category_id {cat!r} is a {type(cat).__name__}; expected an int"))
    elif json_format and category_ids is not None and cat not in category_ids:
        known = sorted(category_ids)
        msgs.append(
            (
                "category",
                f"category_id {cat} is not in the json's 'categories' (ids {known[:10]}"
                f"{'...' if len(known) > 10 else ''}); add the category or fix the id",
            )
        )
    elif not json_format and (cat < 0 or (num_categories is not None and cat >= num_categories)):
        msgs.append(
            (
                "category",
                f"category_id {cat} is outside 0..{(num_categories or 1) - 1}, the contiguous ids "
                "of the dataset's thing_classes",
            )
        )
    crowd = ann.get("iscrowd", _MISSING)
    if crowd is _MISSING:
        if json_format and settings.for_evaluation:
            msgs.append(
                ("iscrowd", "has no 'iscrowd'; COCOEvaluator (pycocotools) needs it: 0 or 1")
            )
    elif not isinstance(crowd, Integral) or crowd not in (0, 1):
        msgs.append(
            (
                "iscrowd",
                f"iscrowd is {crowd!r} ({type(crowd).__name__}); expected the int 0 or 1 (a string "
                "'0' is not 0: detectron2 treats the instance as a crowd region and drops it)",
            )
        )
    if json_format and settings.for_evaluation:
        area = ann.get("area", _MISSING)
        if area is _MISSING:
            msgs.append(
                ("area", "has no 'area', which COCOEvaluator needs (the mask's pixel count)")
            )
        elif not _is_number(area) or not math.isfinite(area) or area < 0:
            msgs.append(("area", f"area is {_short(area)}; expected a number >= 0"))
    if json_format and ann.get("ignore", 0) not in (0, False):
        msgs.append(("ignore", "has 'ignore', which detectron2's load_coco_json refuses"))
    segm = ann.get("segmentation", _MISSING)
    if segm is not _MISSING and segm is not None:
        mask_box, seg_msgs = _mask_messages(segm, height, width, tol)
        msgs.extend(seg_msgs)
        if box is not None and mask_box is not None and settings.box_mask_iou > 0:
            msgs.extend(_agreement_messages(box, mask_box, settings, xywh))
    return msgs


def _agreement_messages(
    box: Tuple[float, float, float, float],
    mask_box: Tuple[float, float, float, float],
    settings: CheckSettings,
    xywh: bool,
) -> List[Tuple[str, str]]:
    """A box far from its mask's bounding box; ``xywh``: the box was given as [x, y, w, h]."""
    iou = _iou(box, mask_box)
    if iou >= settings.box_mask_iou:
        return []
    if max(abs(a - b) for a, b in zip(box, mask_box)) <= settings.tolerance:
        return []  # a tiny object whose box is off by a pixel or two
    x0, y0, x1, y1 = box
    # the box's numbers read the other way: [x, y, w, h] as corners, or corners as [x, y, w, h]
    other = (x0, y0, x1 - x0, y1 - y0) if xywh else (x0, y0, x0 + x1, y0 + y1)
    hint = "a box of another image or object, or shifted coordinates"
    if (
        other[2] > other[0]
        and other[3] > other[1]
        and _iou(other, mask_box) >= settings.box_mask_iou
    ):
        hint = (
            "the box fits the mask when its numbers are read as corners [x0, y0, x1, y1]: COCO "
            "json boxes are [x, y, width, height]"
            if xywh
            else "the box fits the mask when read as [x, y, width, height]: fix its bbox_mode"
        )
    box_text = ", ".join(f"{v:g}" for v in box)
    mask_text = ", ".join(f"{v:g}" for v in mask_box)
    return [
        (
            "box_mask",
            f"bbox (corners {box_text}) and the mask's bounding box ({mask_text}) overlap with IoU "
            f"{iou:.2f} < {settings.box_mask_iou:g}; likely {hint}",
        )
    ]


# ---------------------------------------------------------------------------- files


def _tail_ok(path: str, fmt: Optional[str]) -> bool:
    """Whether a PNG / JPEG file ends with its end marker (other formats: True)."""
    marker = {"PNG": b"IEND", "JPEG": b"\xff\xd9", "MPO": b"\xff\xd9"}.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return marker in f.read()


def _exif_transposed(img: Image.Image) -> bool:
    """Whether detectron2's read_image will transpose this image (EXIF orientation 5..8)."""
    if "exif" not in img.info:  # read from the header; never load() for it
        return False
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001  (a broken EXIF block: read_image ignores it too)
        return False


def _image_file_messages(
    path: str, size: Optional[Tuple[int, int]], deep: bool
) -> Tuple[Optional[Tuple[int, int]], List[Tuple[str, str]]]:
    """The (H, W) of the image as detectron2 reads it (EXIF-rotated), and the file's problems
    (``size``: the record's (H, W), if it has one)."""
    if not os.path.isfile(path):
        return None, [("missing_file", f"image file '{path}' does not exist")]
    try:
        with Image.open(path) as img:
            fmt, mode, (w, h) = img.format, img.mode, img.size
            if _exif_transposed(img):
                w, h = h, w
    except (OSError, SyntaxError, ValueError) as e:
        return None, [("bad_file", f"image file '{path}' cannot be read as an image (PIL: {e})")]
    msgs: List[Tuple[str, str]] = []
    if mode in HIGH_BIT_MODES:
        msgs.append(
            (
                "bit_depth",
                f"image file '{path}' is a '{mode}' (16/32-bit) image; detectron2 converts it to "
                "RGB as all 255s. Convert it to 8 bits per channel (e.g. scale to 0..255 and save "
                "as 'L' or 'RGB')",
            )
        )
    if not _tail_ok(path, fmt):
        msgs.append(
            (
                "truncated",
                f"image file '{path}' is truncated ({fmt} without its end marker): reading it "
                "fails with 'image file is truncated'; copy or download it again",
            )
        )
    elif deep:
        try:
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                img.load()
        except Exception as e:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ValueError, ...)
            msgs.append(("bad_file", f"image file '{path}' does not decode: {e}"))
    if size is not None and (h, w) != size:
        msgs.append(
            (
                "size",
                f"image file '{path}' is {w} x {h} (W x H) but its record says width {size[1]}, "
                f"height {size[0]}; fix the record (annotations are in the image's pixels)",
            )
        )
    return (h, w), msgs


def _label_file_messages(
    path: Any, size: Optional[Tuple[int, int]], allow_palette: bool
) -> List[Tuple[str, str]]:
    if not isinstance(path, str):
        return [("label_file", f"sem_seg_file_name is {_short(path)}; expected a path")]
    if not os.path.isfile(path):
        return [("missing_file", f"semantic label file '{path}' does not exist")]
    try:
        with Image.open(path) as img:
            mode, (w, h) = img.mode, img.size
        if mode != LABEL_MODE and not (mode == "P" and allow_palette):
            check_label_file(path, allow_palette=allow_palette)  # raises, saying what to do
    except (OSError, ValueError, SyntaxError) as e:
        return [
            (
                "label_file",
                (
                    str(e)
                    if isinstance(e, LabelFormatError)
                    else f"semantic label file '{path}' cannot be read as an image (PIL: {e})"
                ),
            )
        ]
    if size is not None and (h, w) != size:
        return [
            (
                "size",
                f"semantic label file '{path}' is {w} x {h} (W x H) but its image is "
                f"{size[1]} x {size[0]}; a label map must match its image pixel for pixel",
            )
        ]
    return []


def _depth_file_messages(
    path: Any, size: Optional[Tuple[int, int]], decode: bool, depth_scale: float
) -> List[Tuple[str, str]]:
    if not isinstance(path, str):
        return [("depth_file", f"depth_file_name is {_short(path)}; expected a path")]
    if not os.path.isfile(path):
        return [("missing_file", f"depth file '{path}' does not exist")]
    try:
        if decode:
            depth = read_depth(path, depth_scale)
            shape = depth.shape
            if not (depth > 0).any():
                return [("depth_file", f"depth file '{path}' has no valid pixel (all 0)")]
        elif path.endswith(".npy"):
            shape = np.load(path, mmap_mode="r").shape[:2]
        else:
            with Image.open(path) as img:
                if img.mode not in DEPTH_MODES:
                    read_depth(path, depth_scale)  # raises with the explanation for this mode
                shape = (img.size[1], img.size[0])
    except (OSError, ValueError, SyntaxError) as e:
        return [("depth_file", f"depth file '{path}' cannot be read as depth: {e}")]
    if size is not None and tuple(shape) != size:
        return [
            (
                "size",
                f"depth file '{path}' is {shape[1]} x {shape[0]} (W x H) but its image is "
                f"{size[1]} x {size[0]}; a depth map must match its image pixel for pixel",
            )
        ]
    return []


# ---------------------------------------------------------------------------- records


def _has_segmentation(ann: Dict) -> bool:
    segm = ann.get("segmentation")
    return segm is not None and not (isinstance(segm, (list, dict)) and not segm)


class _Checker:
    """Collects the problems of one dataset; see :func:`check_dataset`."""

    def __init__(self, name: str, settings: CheckSettings, depth_scale: float):
        self.name = name
        self.settings = settings
        self.depth_scale = depth_scale
        self.problems: List[DatasetProblem] = []
        self.label_values: Dict[str, List] = {}
        self.decoded = 0

    def add(self, where: str, kind: str, message: str, fatal: bool = False, **ids) -> None:
        self.problems.append(DatasetProblem(f"{where}: {message}", kind, fatal, **ids))

    def records(
        self,
        records: List[Dict],
        *,
        prefix: str,
        id_key: str = "image_id",
        files: bool = True,
        annotations: bool = True,
        num_categories: Optional[int] = None,
    ) -> Tuple[int, Optional[int]]:
        """Check records: keys, and with ``files`` the files they name, with ``annotations`` their
        annotations (``id_key``: "id" for the images of a COCO json, which need id, height and
        width). Returns the number of annotations and the largest category id."""
        n = len(records)
        if n == 0:  # detectron2 says "Dataset '<name>' is empty!" itself
            return 0, None
        decode = set(np.linspace(0, n - 1, min(n, SAMPLE_DECODE)).astype(int).tolist())
        by_id: Dict[Any, List[int]] = defaultdict(list)
        num_annotations, max_cat = 0, None
        with_segm: List[Tuple[Dict, Callable[[], Tuple[str, Dict]]]] = []
        for i, record in enumerate(records):
            image_id, path = record.get(id_key), record.get("file_name")
            ids = dict(
                image_id=image_id,
                file_name=path if isinstance(path, str) else None,
                record=record_key(image_id, path),
            )
            if id_key in record:
                where = f"{prefix}: image id {image_id!r}"
            else:
                where = f"{prefix}: " + (f"images[{i}]" if id_key == "id" else f"record {i}")
            if isinstance(path, str):
                where += f" ('{os.path.basename(path)}')"
            self._record_keys(record, where, id_key, ids)
            if _is_key(image_id):
                by_id[image_id].append(i)
            height, width = record.get("height"), record.get("width")
            size = (height, width) if _is_int(height) and _is_int(width) else None
            if files:
                self._files(record, where, ids, size, self.settings.deep or i in decode)
            if not annotations or "annotations" not in record:
                continue
            anns = record["annotations"]
            if not isinstance(anns, list):
                self.add(
                    where,
                    "annotations",
                    f"'annotations' is a {type(anns).__name__}; expected a list of dicts",
                    **ids,
                )
                continue
            num_annotations += len(anns)
            h, w = size if size is not None else (None, None)
            for j, ann in enumerate(anns):
                ann_where = f"{where}, annotation {j}"
                if not isinstance(ann, dict):
                    self.add(ann_where, "annotation", f"is {_short(ann)}, not a dict", **ids)
                    continue
                for kind, msg in _annotation_messages(
                    ann, h, w, self.settings, json_format=False, num_categories=num_categories
                ):
                    self.add(ann_where, kind, msg, **ids)
                cat = ann.get("category_id")
                if _is_int(cat):
                    max_cat = cat if max_cat is None else max(max_cat, cat)
                if ann.get("iscrowd", 0) in (0, False):
                    with_segm.append((ann, lambda w=ann_where, i=ids: (w, i)))
        self._duplicate_ids(records, by_id, prefix)
        self._mixed_segmentation(with_segm)
        return num_annotations, max_cat

    def _files(
        self, record: Dict, where: str, ids: Dict, size: Optional[Tuple[int, int]], decode: bool
    ) -> None:
        """The image, label and depth files of one record (``size``: the record's (H, W))."""
        path = record.get("file_name")
        if isinstance(path, str):
            actual, msgs = _image_file_messages(path, size, self.settings.deep)
            for kind, msg in msgs:
                self.add(where, kind, msg, **ids)
            size = actual or size  # labels and depth must match the image as it is read
        if "sem_seg_file_name" in record:
            label = record["sem_seg_file_name"]
            for kind, msg in _label_file_messages(label, size, not self.settings.for_training):
                self.add(where, kind, msg, **ids)
            if decode:
                self._label_values(label)
        if "depth_file_name" in record:
            for kind, msg in _depth_file_messages(
                record["depth_file_name"], size, decode, self.depth_scale
            ):
                self.add(where, kind, msg, **ids)
            self.decoded += int(decode)

    def _record_keys(self, record: Dict, where: str, id_key: str, ids: Dict) -> None:
        path = record.get("file_name")
        if not isinstance(path, str) or not path:
            self.add(
                where, "keys", f"'file_name' is {_short(path)}; expected the image path", **ids
            )
        image_id = record.get(id_key, _MISSING)
        if image_id is _MISSING:
            if id_key == "id" or "annotations" in record:  # evaluation matches by image id
                self.add(where, "keys", f"has no '{id_key}'; give every image a unique id", **ids)
        elif not _is_key(image_id):
            self.add(
                where,
                "keys",
                f"{id_key} {_short(image_id)} is a {type(image_id).__name__}; expected an int "
                "(or a string)",
                **ids,
            )
        for key in ("height", "width"):
            value = record.get(key, _MISSING)
            if value is _MISSING:
                if id_key == "id":  # a COCO json image needs them; a record may leave them out
                    self.add(where, "keys", f"has no '{key}' (the image's size in pixels)", **ids)
            elif not _is_int(value) or value <= 0:
                self.add(where, "keys", f"{key} is {_short(value)}; expected a positive int", **ids)

    def _label_values(self, path: Any) -> None:
        if not isinstance(path, str) or not os.path.isfile(path):
            return
        try:
            with Image.open(path) as img:
                values = np.unique(np.asarray(img))
        except Exception:  # noqa: BLE001  (reported by the header check already)
            return
        self.decoded += 1
        for v in values.tolist():
            entry = self.label_values.setdefault(str(v), [path, 0])
            entry[1] += 1

    def _duplicate_ids(self, records: List[Dict], by_id: Dict[Any, List[int]], prefix: str) -> None:
        for image_id, indices in by_id.items():
            if len(indices) < 2:
                continue
            files = [records[i].get("file_name") for i in indices]
            names = ", ".join(f"'{os.path.basename(str(f))}'" for f in files[:5])
            for i, path in zip(indices, files):
                self.add(
                    f"{prefix}: image id {image_id!r} ('{os.path.basename(str(path))}')",
                    "duplicate_id",
                    f"the id is used by {len(indices)} images ({names}); detectron2 and "
                    "COCOEvaluator match annotations and predictions by id, so one image's pixels "
                    "get another's labels. Give every image its own id",
                    image_id=image_id,
                    file_name=path if isinstance(path, str) else None,
                    record=record_key(image_id, path),
                )

    def _mixed_segmentation(self, anns: List[Tuple[Dict, Callable[[], Tuple[str, Dict]]]]) -> None:
        """detectron2 takes masks from every annotation of an image once its first has one: an
        annotation without one then fails with a bare KeyError. ``anns``: (annotation, a function
        returning its message prefix and ids)."""
        has = [_has_segmentation(a) for a, _ in anns]
        if not any(has) or all(has):
            return
        for (ann, context), ok in zip(anns, has):
            if not ok:
                where, ids = context()
                self.add(
                    where,
                    "segmentation",
                    "has no segmentation while other annotations of "
                    "the dataset have one; give it a polygon or RLE",
                    **ids,
                )


# ---------------------------------------------------------------------------- COCO json


def _read_json(path: str, checker: _Checker) -> Optional[Dict]:
    where = f"dataset '{checker.name}': json file '{path}'"
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(codecs.BOM_UTF8):
        checker.add(
            where,
            "json",
            "starts with a UTF-8 byte order mark (BOM), which Python's json (and so pycocotools) "
            'refuses; save it as UTF-8 without BOM, e.g. `python -c "import sys; p = sys.argv[1]; '
            "d = open(p, encoding='utf-8-sig').read(); open(p, 'w', encoding='utf-8').write(d)\" "
            f"{path}`",
            fatal=True,
        )
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        checker.add(where, "json", f"is not UTF-8 text (byte {e.start}); save it as UTF-8", True)
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        end = text.rstrip()
        at_end = e.pos >= len(end) - 1 or not end.endswith(("}", "]"))
        fix = (
            "the data stops before its end: the file is truncated (an interrupted download or "
            "write); write or download it again"
            if at_end
            else "fix the JSON there"
        )
        checker.add(
            where,
            "json",
            f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (character {e.pos} "
            f"of {len(text)}); {fix}",
            fatal=True,
        )
        return None
    if not isinstance(data, dict):
        checker.add(
            where,
            "json",
            f"holds a {type(data).__name__}; a COCO json is an object with 'images', "
            "'annotations' and 'categories'",
            True,
        )
        return None
    return data


def _json_categories(data: Dict, where: str, checker: _Checker) -> Optional[Set]:
    cats = data.get("categories", _MISSING)
    if not isinstance(cats, list) or not cats:
        state = "missing" if cats is _MISSING else f"{_short(cats)}"
        checker.add(
            where,
            "json",
            f'\'categories\' is {state}; list every category as {{"id": int, "name": str}} '
            "(detectron2 takes the class names and the contiguous class ids from it)",
            fatal=True,
        )
        return None
    ids: List = []
    for k, cat in enumerate(cats):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or "name" not in cat:
            checker.add(
                where,
                "json",
                f'categories[{k}] is {_short(cat)}; expected {{"id": int, "name": str}}',
                True,
            )
            return None
        ids.append(cat["id"])
    dup = sorted(i for i, c in Counter(ids).items() if c > 1)
    if dup:
        checker.add(
            where, "json", f"category ids {dup} appear more than once in 'categories'", True
        )
        return None
    return set(ids)


def _check_coco_json(
    path: str, image_root: str, checker: _Checker, report: DatasetCheckReport, check_files: bool
) -> None:
    """Check a COCO json (and, with ``check_files``, its images under ``image_root``)."""
    data = _read_json(path, checker)
    where = f"dataset '{checker.name}': json file '{path}'"
    if data is None:
        return
    images = data.get("images", _MISSING)
    if not isinstance(images, list):
        checker.add(
            where,
            "json",
            f"'images' is {'missing' if images is _MISSING else _short(images)}"
            '; expected a list of {"id", "file_name", "height", "width"}',
            True,
        )
        return
    anns = data.get("annotations", [])
    if "annotations" not in data:
        logger.warning(f"{where} has no 'annotations': its images have no instances")
    if not isinstance(anns, list):
        checker.add(
            where,
            "json",
            f"'annotations' is {_short(anns)}; expected a list (an empty list if there are none)",
            True,
        )
        return
    category_ids = _json_categories(data, where, checker)
    if category_ids is None:
        return
    report.num_categories = len(category_ids)
    prefix = path
    # images: keys and types; well-formed ones become records for the file checks
    records, keys_of, image_of = [], defaultdict(list), {}
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            checker.add(f"{prefix}: images[{i}]", "image", f"is {_short(img)}, not an object")
            report.drop_images.append(i)
            continue
        record = {k: img[k] for k in ("id", "height", "width") if k in img}
        name = img.get("file_name", _MISSING)
        if name is not _MISSING:
            record["file_name"] = os.path.join(image_root, name) if isinstance(name, str) else name
        record["_index"] = i
        records.append(record)
        key = record_key(img.get("id"), record.get("file_name"))
        if _is_key(img.get("id")):
            keys_of[img["id"]].append(key)
            image_of.setdefault(img["id"], record)
    checker.records(records, prefix=prefix, id_key="id", files=check_files, annotations=False)
    sizes = {}
    for image_id, record in image_of.items():
        h, w = record.get("height"), record.get("width")
        sizes[image_id] = (h, w) if _is_int(h) and _is_int(w) else (None, None)
    report.num_images = len(images)
    report.num_annotations = len(anns)
    # annotations
    ann_ids = Counter(a["id"] for a in anns if isinstance(a, dict) and _is_key(a.get("id")))
    with_segm = []

    def context(k: int, ann: Dict) -> Tuple[str, Dict]:
        """The message prefix and the ids of annotation ``k`` (built only for a problem)."""
        aid = ann.get("id", _MISSING)
        image_id = ann["image_id"]
        path_ = image_of[image_id].get("file_name")
        where = f"{prefix}: " + (f"annotation id {aid!r}" if _is_key(aid) else f"annotations[{k}]")
        where += f" (image id {image_id!r}"
        where += f", '{os.path.basename(path_)}')" if isinstance(path_, str) else ")"
        ids = dict(
            image_id=image_id,
            file_name=path_ if isinstance(path_, str) else None,
            annotation_id=aid if _is_key(aid) else None,
            record=keys_of[image_id][0],
        )
        return where, ids

    for k, ann in enumerate(anns):
        if not isinstance(ann, dict):
            checker.add(
                f"{prefix}: annotations[{k}]",
                "annotation",
                f"is {_short(ann)}, not an object; remove it",
            )
            report.drop_annotations.append(k)
            continue
        aid = ann.get("id", _MISSING)
        image_id = ann.get("image_id", _MISSING)
        if not _is_key(image_id) or image_id not in image_of:
            what = (
                "has no 'image_id'"
                if image_id is _MISSING
                else f"refers to image_id {image_id!r}, which is not in 'images'"
            )
            name = f"annotation id {aid!r}" if _is_key(aid) else f"annotations[{k}]"
            checker.add(
                f"{prefix}: {name}",
                "image_id",
                f"{what}; detectron2 drops it (COCOEvaluator would count it as a missed object): "
                "fix or remove it",
                annotation_id=aid if _is_key(aid) else None,
            )
            report.drop_annotations.append(k)
            continue
        msgs = []
        if not _is_key(aid):
            what = "has no 'id'" if aid is _MISSING else f"id {_short(aid)} is not an int"
            msgs.append(("keys", f"{what} (detectron2's loader needs unique annotation ids)"))
        elif ann_ids[aid] > 1:
            msgs.append(
                (
                    "duplicate_id",
                    f"the annotation id is used {ann_ids[aid]} times; detectron2's loader needs "
                    "unique ids",
                )
            )
        h, w = sizes[image_id]
        msgs += _annotation_messages(
            ann, h, w, checker.settings, json_format=True, category_ids=category_ids
        )
        if msgs:
            where, ids = context(k, ann)
            for kind, msg in msgs:
                checker.add(where, kind, msg, **ids)
        if ann.get("iscrowd", 0) in (0, False):  # detectron2 needs masks of objects, not crowds
            with_segm.append((ann, lambda k=k, ann=ann: context(k, ann)))
    checker._mixed_segmentation(with_segm)


def _write_filtered_json(src: str, dst: str, report: DatasetCheckReport) -> int:
    """Write the json ``src`` without the images of ``report``'s problems (and their annotations)
    to ``dst``; returns the number of images kept."""
    with open(src, encoding="utf-8") as f:
        data = json.load(f)
    bad = report.bad_records()
    drop = set(report.drop_images)
    kept, kept_ids = [], set()
    for i, img in enumerate(data["images"]):
        if i in drop:
            continue
        name = img.get("file_name")
        path = os.path.join(report.image_root, name) if isinstance(name, str) else name
        if record_key(img.get("id"), path) in bad:
            continue
        kept.append(img)
        kept_ids.add(img.get("id"))
    drop_anns = set(report.drop_annotations)
    data["images"] = kept
    data["annotations"] = [
        a
        for k, a in enumerate(data.get("annotations") or [])
        if k not in drop_anns and a.get("image_id") in kept_ids
    ]
    _atomic_write_json(dst, data)
    return len(data["images"])


# ---------------------------------------------------------------------------- entry points

# dataset name -> (the user's loader, the user's json_file, the filtered loader that replaced it)
_ORIGINALS: Dict[str, Tuple[Callable, Optional[str], Callable]] = {}


def original_loader(name: str) -> Callable[[], List[Dict]]:
    """The loader ``name`` was registered with, even after :func:`skip_bad_entries` replaced it."""
    current = DatasetCatalog[name]
    if name in _ORIGINALS and _ORIGINALS[name][2] is not current:
        del _ORIGINALS[name]  # registered again since: the new registration is the original
    return _ORIGINALS[name][0] if name in _ORIGINALS else current


def _original_json(name: str) -> Optional[str]:
    original_loader(name)  # forgets a replaced registration
    if name in _ORIGINALS:
        return _ORIGINALS[name][1]
    meta = MetadataCatalog.get(name)
    if meta.get("evaluator_type", "coco") != "coco":
        return None
    path = meta.get("json_file", None)
    return path if isinstance(path, str) and os.path.isfile(path) else None


def _is_coco_instances_loader(loader: Callable) -> bool:
    """Whether ``loader`` is the ``load_coco_json`` of detectron2's ``register_coco_instances``
    (whose records follow from the json and the image root alone)."""
    return getattr(loader, "__qualname__", "") == "register_coco_instances.<locals>.<lambda>"


def _fingerprint(name: str, json_file: Optional[str], records: Optional[List[Dict]]) -> str:
    digest = hashlib.sha1()
    if json_file is not None:
        st = os.stat(json_file)
        meta = MetadataCatalog.get(name)
        parts = [os.path.abspath(json_file), st.st_size, st.st_mtime_ns, meta.get("image_root", "")]
        parts.append(getattr(original_loader(name), "__qualname__", ""))
        digest.update(json.dumps(parts, default=str).encode())
    else:
        for record in records or []:
            digest.update(json.dumps(record, sort_keys=True, default=_jsonable).encode())
    return digest.hexdigest()[:20]


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else repr(value)


def _atomic_write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, default=_jsonable)
    os.replace(tmp, path)


def _cache_path(cache_dir: str, name: str, key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return os.path.join(cache_dir, f"{safe}-{key}.json")


def _load_records(name: str, loader: Callable) -> List[Dict]:
    try:
        records = loader()
    except Exception as e:  # noqa: BLE001  (a user's loader can raise anything)
        raise DatasetCheckError(
            f"dataset '{name}': its registered loader failed ({type(e).__name__}: {e}); fix the "
            "files it reads, or the loader"
        ) from e
    if not isinstance(records, list):
        raise DatasetCheckError(
            f"dataset '{name}': its loader returned a {type(records).__name__}; the checks read "
            "list[dict] datasets (set DATASETS.CHECK.POLICY off for other kinds)"
        )
    return records


def check_dataset(
    name: str,
    settings: Optional[CheckSettings] = None,
    *,
    use_cache: bool = True,
    cache_dir: Optional[str] = None,
) -> DatasetCheckReport:
    """Check the registered dataset ``name`` (see the module docstring); never raises for a bad
    entry: the problems are in the returned report, whose ``from_cache`` says whether it was
    computed before (same name, data fingerprint, settings and :data:`CHECK_VERSION`).

    Raises:
        DatasetCheckError: the dataset's loader fails (for datasets without a COCO json).
    """
    settings = settings or CheckSettings()
    cache_dir = cache_dir or check_cache_dir()
    start = time.perf_counter()
    meta = MetadataCatalog.get(name)
    loader = original_loader(name)
    json_file = _original_json(name)
    image_root = meta.get("image_root", "") if json_file else ""
    records = None if json_file else _load_records(name, loader)
    fingerprint = _fingerprint(name, json_file, records)
    key_parts = [CHECK_VERSION, name, fingerprint, asdict(settings)]
    key = hashlib.sha1(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = _cache_path(cache_dir, name, key)
    if use_cache and os.path.isfile(cache_file):
        try:
            with open(cache_file) as f:
                report = DatasetCheckReport.from_dict(json.load(f))
            report.from_cache = True
            logger.info(
                f"dataset '{name}': check result from cache ({report.num_images} images, "
                f"{len(report.problems)} problems): {cache_file}"
            )
            return report
        except (OSError, ValueError, TypeError) as e:  # a broken cache file: check again
            logger.warning(f"ignoring unreadable check cache {cache_file}: {e}")
    report = DatasetCheckReport(
        dataset=name,
        fingerprint=fingerprint,
        settings=asdict(settings),
        image_root=image_root,
        cache_key=key,
    )
    checker = _Checker(name, settings, float(meta.get("depth_scale", 1000.0)))
    if json_file:
        coco_loader = _is_coco_instances_loader(loader)
        _check_coco_json(json_file, image_root, checker, report, check_files=coco_loader)
        if not coco_loader and not any(p.fatal for p in checker.problems):
            records = _load_records(name, loader)
            report.num_images = len(records)
            checker.records(records, prefix=f"dataset '{name}'", annotations=False)
    else:
        thing_classes = meta.get("thing_classes", None)
        num_categories = len(thing_classes) if thing_classes else None
        report.num_images = len(records)
        report.num_annotations, report.max_category_id = checker.records(
            records, prefix=f"dataset '{name}'", num_categories=num_categories
        )
        report.num_categories = num_categories
    report.problems = checker.problems
    report.label_values = checker.label_values
    report.decoded_files = checker.decoded
    report.seconds = round(time.perf_counter() - start, 3)
    logger.info(
        f"dataset '{name}': checked {report.num_images} images, {report.num_annotations} "
        f"annotations in {report.seconds:.2f} s: {len(report.problems)} problems"
    )
    if use_cache:
        _atomic_write_json(cache_file, report.to_dict())
    return report


def skip_bad_entries(name: str, report: DatasetCheckReport) -> int:
    """Re-register ``name`` without the records that have problems in ``report``; returns how many
    were dropped.

    The new loader is the old one followed by a filter (records are matched by
    :func:`record_key`); a dataset with a COCO json gets a filtered copy of the json in
    :func:`check_cache_dir` (what the new loader reads if the dataset was registered with
    ``register_coco_instances``, and what its metadata's ``json_file`` then points at, for
    ``COCOEvaluator``). Idempotent: a second call starts again from the original registration.

    Raises:
        DatasetCheckError: no record would be left.
    """
    bad = report.bad_records()
    if not bad and not report.drop_images and not report.drop_annotations:
        return 0
    loader = original_loader(name)
    json_file = _original_json(name)
    meta = MetadataCatalog.get(name)
    dropped = 0
    if json_file:
        filtered = _cache_path(check_cache_dir(), name, report.cache_key)
        filtered = filtered[: -len(".json")] + ".filtered.json"
        kept = _write_filtered_json(json_file, filtered, report)
        dropped = report.num_images - kept
        if kept == 0:
            raise DatasetCheckError(f"dataset '{name}': every image of '{json_file}' has problems")
        if meta.get("json_file", None) != filtered:
            del meta.json_file
            meta.json_file = filtered
        if _is_coco_instances_loader(loader):
            image_root = meta.image_root

            def new_loader() -> List[Dict]:
                return load_coco_json(filtered, image_root, name)

        else:

            def new_loader() -> List[Dict]:
                return [
                    r
                    for r in loader()
                    if record_key(r.get("image_id"), r.get("file_name")) not in bad
                ]

    else:
        records = _load_records(name, loader)
        kept = [r for r in records if record_key(r.get("image_id"), r.get("file_name")) not in bad]
        dropped = len(records) - len(kept)
        if not kept:
            raise DatasetCheckError(f"dataset '{name}': every record has problems")

        def new_loader() -> List[Dict]:
            return [
                r for r in loader() if record_key(r.get("image_id"), r.get("file_name")) not in bad
            ]

    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, new_loader)
    _ORIGINALS[name] = (loader, json_file, new_loader)
    return dropped
