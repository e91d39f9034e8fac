"""Datasets registered without code: ``DATASETS.CUSTOM`` (see docs/custom_datasets.md).

Each entry is one string, fields separated by ``:``::

    name:coco:<json file>:<image dir>
    name:sem_seg:<image dir>:<label dir>[:classes=a,b,c][:ignore_label=255]
    name:depth:<image dir>:<depth dir>:intrinsics=fx,fy,cx,cy[:depth_scale=1000]
        [:min_depth=0.1][:max_depth=10]

* ``coco``: a COCO instances json and its image folder, registered with detectron2's
  ``register_coco_instances`` (category names and ids come from the json);
* ``sem_seg``: every image under ``<image dir>`` (recursively; .jpg, .jpeg, .png, .bmp, .tif, .tiff,
  .webp) is paired with the label ``<label dir>/<same relative path, same stem>.png``, a
  single-channel PNG of class indices (``ignore_label`` for "don't care"). ``classes`` names them
  (default: ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` classes "0", "1", ...); ``ignore_label`` defaults to
  ``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``;
* ``depth``: images paired the same way with ``<depth dir>/<stem>.png`` (16-bit, value /
  ``depth_scale`` = metres, 0 = invalid) or ``<stem>.npy`` (float metres); ``intrinsics`` (pixels of
  the stored images) are required, ``min_depth`` / ``max_depth`` (metres, the evaluation range)
  default to ``MODEL.DEPTH.MIN_DEPTH`` / ``MAX_DEPTH``. The metadata follows
  :mod:`percep_det.data.depth_io`.

A missing label or depth file is not an error here: the record names the expected path, and the
dataset check (``DATASETS.CHECK.POLICY``) reports it (or skips the image). The metadata's
``custom_entry`` holds the entry, for messages. Paths may not contain
``:``; relative paths are relative to the current directory. The image id of a folder dataset's
record is the image's relative path without extension.
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from .sem_seg import label_palette

__all__ = [
    "CUSTOM_KINDS",
    "CustomDatasetSpec",
    "load_folder_depth",
    "load_folder_sem_seg",
    "parse_custom_dataset",
    "register_custom_dataset",
    "register_custom_datasets",
]

CUSTOM_KINDS = ("coco", "sem_seg", "depth")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# options each kind accepts
_OPTIONS = {
    "coco": (),
    "sem_seg": ("classes", "ignore_label"),
    "depth": ("intrinsics", "depth_scale", "min_depth", "max_depth"),
}
_KEY = "DATASETS.CUSTOM"
_FORMATS = (
    "'name:coco:<json file>:<image dir>', 'name:sem_seg:<image dir>:<label dir>[:classes=a,b]"
    "[:ignore_label=255]' or 'name:depth:<image dir>:<depth dir>:intrinsics=fx,fy,cx,cy"
    "[:depth_scale=1000][:min_depth=..][:max_depth=..]'"
)
# name -> metadata of the datasets registered here (a second identical registration is a no-op)
_REGISTERED: Dict[str, Dict] = {}


@dataclass(frozen=True)
class CustomDatasetSpec:
    """One parsed ``DATASETS.CUSTOM`` entry."""

    name: str
    kind: str
    paths: Tuple[str, str]
    options: Tuple[Tuple[str, str], ...] = ()


def parse_custom_dataset(text: str) -> CustomDatasetSpec:
    """Parse ``name:kind:path:path[:key=value...]``.

    Raises:
        ValueError: naming ``DATASETS.CUSTOM``, the entry and the expected formats.
    """
    fields = [f.strip() for f in str(text).split(":")]
    bad = f"{_KEY} entry '{text}'"
    if len(fields) < 4 or not fields[0]:
        raise ValueError(f"{bad} has {len(fields)} ':'-separated fields; expected {_FORMATS}")
    name, kind, first, second, rest = fields[0], fields[1], fields[2], fields[3], fields[4:]
    if kind not in CUSTOM_KINDS:
        raise ValueError(f"{bad}: kind '{kind}' is not one of {CUSTOM_KINDS}; expected {_FORMATS}")
    if "=" in first or "=" in second or not first or not second:
        raise ValueError(f"{bad}: a {kind} dataset takes two paths before its options; {_FORMATS}")
    options = []
    for field in rest:
        key, sep, value = field.partition("=")
        if not sep or key not in _OPTIONS[kind]:
            allowed = ", ".join(_OPTIONS[kind]) or "none"
            raise ValueError(
                f"{bad}: '{field}' is not a key=value option of a {kind} dataset (options: "
                f"{allowed}); paths may not contain ':'"
            )
        options.append((key, value))
    paths = tuple(os.path.abspath(os.path.expanduser(p)) for p in (first, second))
    return CustomDatasetSpec(name, kind, paths, tuple(options))


def _image_stems(image_dir: str) -> List[Tuple[str, str]]:
    """(image path, relative path without extension) of every image under ``image_dir``."""
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"image folder '{image_dir}' does not exist")
    out = []
    for folder, dirs, files in os.walk(image_dir):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(folder, name)
                out.append((path, os.path.splitext(os.path.relpath(path, image_dir))[0]))
    if not out:
        raise FileNotFoundError(
            f"image folder '{image_dir}' has no image ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return out


def load_folder_sem_seg(image_dir: str, label_dir: str) -> List[Dict]:
    """Records (``file_name``, ``sem_seg_file_name``, ``image_id``) of the images under
    ``image_dir``, each paired with ``<label_dir>/<relative stem>.png``."""
    return [
        {
            "file_name": path,
            "sem_seg_file_name": os.path.join(label_dir, stem + ".png"),
            "image_id": stem,
        }
        for path, stem in _image_stems(image_dir)
    ]


def load_folder_depth(image_dir: str, depth_dir: str) -> List[Dict]:
    """Records (``file_name``, ``depth_file_name``, ``image_id``) of the images under
    ``image_dir``, each paired with ``<depth_dir>/<relative stem>.png`` (or ``.npy`` if that
    exists instead)."""
    records = []
    for path, stem in _image_stems(image_dir):
        depth = os.path.join(depth_dir, stem + ".png")
        if not os.path.isfile(depth) and os.path.isfile(os.path.join(depth_dir, stem + ".npy")):
            depth = os.path.join(depth_dir, stem + ".npy")
        records.append({"file_name": path, "depth_file_name": depth, "image_id": stem})
    return records


def _number(spec: CustomDatasetSpec, key: str, value: str, count: int = 1) -> List[float]:
    try:
        values = [float(v) for v in value.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(
            f"{_KEY} entry '{spec.name}': {key}={value} is not {count} number(s)"
            + (" fx,fy,cx,cy (pixels of the stored images)" if count == 4 else "")
        )
    return values


def _metadata(
    spec: CustomDatasetSpec,
    num_classes: Optional[int],
    ignore_label: int,
    depth_range: Tuple[float, float],
) -> Dict:
    options = dict(spec.options)
    first, second = spec.paths
    if spec.kind == "coco":
        return dict(json_file=first, image_root=second, evaluator_type="coco")
    if spec.kind == "sem_seg":
        if "classes" in options:
            classes = [c.strip() for c in options["classes"].split(",") if c.strip()]
        elif num_classes:
            classes = [str(i) for i in range(num_classes)]
        else:
            raise ValueError(f"{_KEY} entry '{spec.name}': give its classes=a,b,c")
        ignore = int(ignore_label)
        if "ignore_label" in options:
            ignore = int(_number(spec, "ignore_label", options["ignore_label"])[0])
        return dict(
            image_root=first,
            sem_seg_root=second,
            evaluator_type="sem_seg",
            stuff_classes=classes,
            stuff_colors=label_palette(len(classes)),
            ignore_label=ignore,
        )
    if "intrinsics" not in options:
        raise ValueError(
            f"{_KEY} entry '{spec.name}': a depth dataset needs its camera, e.g. "
            "':intrinsics=518.9,519.5,325.6,253.7' (fx, fy, cx, cy in pixels of the stored images)"
        )

    def value(key: str, default: float) -> float:
        return _number(spec, key, options[key])[0] if key in options else float(default)

    meta = dict(
        image_root=first,
        depth_root=second,
        evaluator_type="depth",
        intrinsics=tuple(_number(spec, "intrinsics", options["intrinsics"], 4)),
        depth_scale=value("depth_scale", 1000.0),
        min_depth=value("min_depth", depth_range[0]),
        max_depth=value("max_depth", depth_range[1]),
        eigen_crop=False,
    )
    if not 0 <= meta["min_depth"] < meta["max_depth"] or meta["depth_scale"] <= 0:
        raise ValueError(
            f"{_KEY} entry '{spec.name}': needs 0 <= min_depth < max_depth and depth_scale > 0, "
            f"got {meta['min_depth']}, {meta['max_depth']}, {meta['depth_scale']}"
        )
    return meta


def register_custom_dataset(
    text: str,
    *,
    num_classes: Optional[int] = None,
    ignore_label: int = 255,
    depth_range: Tuple[float, float] = (0.1, 10.0),
) -> str:
    """Register one ``DATASETS.CUSTOM`` entry (see the module docstring); returns its name.

    ``num_classes`` / ``ignore_label`` / ``depth_range``: the defaults of a semantic dataset's
    classes and ignore label and of a depth dataset's range. Registering the same entry again is
    a no-op.

    Raises:
        ValueError: a malformed entry, or a name that is registered already with other data.
    """
    spec = parse_custom_dataset(text)
    meta = _metadata(spec, num_classes, ignore_label, depth_range)
    if spec.name in _REGISTERED:
        if _REGISTERED[spec.name] != meta:
            raise ValueError(
                f"{_KEY}: dataset '{spec.name}' was registered with {_REGISTERED[spec.name]}; "
                f"'{text}' registers it with {meta}. Give it another name"
            )
        return spec.name
    if spec.name in DatasetCatalog.list():
        raise ValueError(
            f"{_KEY}: dataset '{spec.name}' is registered already (a built-in or a project's "
            "dataset); give the custom dataset another name"
        )
    first, second = spec.paths
    if spec.kind == "coco":
        register_coco_instances(spec.name, {"custom_entry": text}, first, second)
    else:
        loader = load_folder_sem_seg if spec.kind == "sem_seg" else load_folder_depth
        DatasetCatalog.register(spec.name, lambda: loader(first, second))
        MetadataCatalog.get(spec.name).set(custom_entry=text, **meta)
    _REGISTERED[spec.name] = meta
    return spec.name


def register_custom_datasets(cfg: CfgNode, entries: Sequence[str] = ()) -> List[str]:
    """Register ``cfg.DATASETS.CUSTOM`` (and ``entries``), with the defaults of ``cfg``
    (``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` / ``IGNORE_VALUE``, ``MODEL.DEPTH.MIN_DEPTH`` /
    ``MAX_DEPTH``); returns the names."""
    return [
        register_custom_dataset(
            text,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            ignore_label=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            depth_range=(cfg.MODEL.DEPTH.MIN_DEPTH, cfg.MODEL.DEPTH.MAX_DEPTH),
        )
        for text in list(cfg.DATASETS.CUSTOM) + list(entries)
    ]
