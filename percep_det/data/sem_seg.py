"""Semantic-segmentation label files: the format detectron2 needs, a check, a converter, colours.

detectron2's ``DatasetMapper`` reads ``sem_seg_file_name`` with ``read_image(path, "L")``, i.e.
PIL's ``convert("L")``. For a single-channel 8-bit ('L') PNG that is the identity. For a palette
('P') PNG, the format of the official Pascal VOC ``SegmentationClass`` labels, ``convert("L")``
replaces every class index by the luminance of its palette colour: training then sees wrong class
ids without any error (detectron2 issue #1760), while ``SemSegEvaluator`` (``np.asarray(Image.open
(f))``) reads the indices correctly, so the evaluation looks normal. Other modes (RGB colour-coded
maps, 16-bit PNGs) are read wrongly too. Hence: label files must be 'L' PNGs holding one class index
per pixel (``ignore_label``, usually 255, for "don't care"), and :func:`check_label_file` says so,
naming the file and the conversion, before training starts.
"""

import os
import shutil
import tempfile
from typing import List, Tuple

import numpy as np
from PIL import Image

__all__ = [
    "LABEL_MODE",
    "LabelFormatError",
    "check_label_file",
    "convert_palette_label",
    "label_palette",
]

# The only PIL mode that detectron2's DatasetMapper reads as class indices.
LABEL_MODE = "L"
CONVERTER = "datasets/convert_palette_labels.py"


class LabelFormatError(ValueError):
    """A semantic label file that detectron2's ``DatasetMapper`` would read as wrong class ids."""


def _palette_message(path: str, context: str) -> str:
    folder = os.path.dirname(path) or "."
    return (
        f"{context}semantic label file '{path}' is a palette ('P') PNG. detectron2's DatasetMapper "
        "reads labels with PIL convert('L'), which turns the class indices of a palette image into "
        "the luminance of their colours: training would use wrong labels without any error "
        "(detectron2 issue #1760). Convert the folder once into single-channel ('L') PNGs holding "
        f"the indices, e.g. `python {CONVERTER} {folder} --out {folder}_L` (then point the dataset "
        f"at the new folder) or in place with `python {CONVERTER} {folder}`; for one file: "
        "`Image.fromarray(np.array(Image.open(f))).save(f)` (PIL + numpy)"
    )


def check_label_file(path: str, allow_palette: bool = False, context: str = "") -> str:
    """Check that ``path`` is a label image detectron2 reads as class indices; return its mode.

    Only the PNG header is read. ``allow_palette``: accept 'P' too, for readers that take the raw
    indices (``SemSegEvaluator``). ``context`` (e.g. ``"dataset 'x': "``) prefixes the message.

    Raises:
        FileNotFoundError: the file does not exist.
        LabelFormatError: the image is not single-channel 8-bit ('L', or 'P' if allowed).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{context}semantic label file '{path}' does not exist")
    with Image.open(path) as img:
        mode = img.mode
    if mode == LABEL_MODE or (mode == "P" and allow_palette):
        return mode
    if mode == "P":
        raise LabelFormatError(_palette_message(path, context))
    raise LabelFormatError(
        f"{context}semantic label file '{path}' is a '{mode}' image; expected a single-channel "
        "8-bit ('L') PNG with one class index per pixel (255 = ignore). A colour-coded (RGB) map "
        "needs its dataset's colour-to-index table to be converted; a 16-bit map with more than "
        "255 classes is not supported by detectron2's DatasetMapper"
    )


def convert_palette_label(src: str, dst: str) -> bool:
    """Write the class indices of label ``src`` as a single-channel ('L') PNG to ``dst``.

    ``dst`` may equal ``src`` (in place; written to a temporary file and renamed, so an interrupted
    run never leaves a half-written label). Returns True if ``src`` was a palette image, False if it
    was 'L' already (then copied unchanged when ``dst`` differs).

    Raises:
        LabelFormatError: ``src`` is neither 'P' nor 'L' (its indices cannot be recovered here).
    """
    with Image.open(src) as img:
        mode = img.mode
        if mode not in ("P", LABEL_MODE):
            check_label_file(src)  # raises with the explanation for this mode
        indices = np.array(img) if mode == "P" else None  # a palette image gives its indices
    same = os.path.abspath(src) == os.path.abspath(dst)
    if indices is None and same:
        return False
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", prefix=".convert_", dir=folder)
    os.close(fd)
    try:
        if indices is None:
            shutil.copyfile(src, tmp)
        else:
            Image.fromarray(indices.astype(np.uint8, copy=False)).save(tmp, format="PNG")  # 'L'
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return indices is not None


def label_palette(num_classes: int) -> List[Tuple[int, int, int]]:
    """The Pascal VOC colour map: ``num_classes`` distinct RGB colours, class 0 black.

    The bits of each class index are spread over the high bits of R, G and B (bit 0 -> R, bit 1 ->
    G, bit 2 -> B, then the next three bits one position lower), so neighbouring ids get very
    different colours. Classes 1..20 get the colours of the official VOC label PNGs.
    """
    colours = []
    for index in range(num_classes):
        rgb = [0, 0, 0]
        value = index
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= (value & 1) << bit
                value >>= 1
        colours.append((rgb[0], rgb[1], rgb[2]))
    return colours
