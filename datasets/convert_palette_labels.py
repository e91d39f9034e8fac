#!/usr/bin/env python
"""Convert palette ('P') label PNGs into single-channel ('L') PNGs holding the same class indices.

detectron2's DatasetMapper reads semantic labels with PIL convert("L"): a palette PNG (e.g. the
official Pascal VOC SegmentationClass/*.png) would become the luminance of its colours, i.e. wrong
class ids, without any error. Run this once per label folder:

    python datasets/convert_palette_labels.py VOC2012/SegmentationClass --out VOC2012/SegClassL
    python datasets/convert_palette_labels.py my_labels/          # in place

Folders are walked recursively (the relative paths are kept under --out). Labels that are 'L'
already are left alone (copied with --out); any other mode stops with the file's name.
"""

import argparse
import os
import sys

from percep_det.data.sem_seg import LabelFormatError, convert_palette_label


def _label_files(src: str, ext: str):
    for folder, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            if name.lower().endswith(ext) and not name.startswith(".convert_"):
                yield os.path.relpath(os.path.join(folder, name), src)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("src", help="folder of label PNGs")
    parser.add_argument("--out", default="", help="write here instead of converting in place")
    parser.add_argument("--ext", default=".png", help="label file extension (default .png)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.src):
        print(f"ERROR: label folder '{args.src}' does not exist", file=sys.stderr)
        return 2
    out = args.out or args.src
    converted = unchanged = 0
    for rel in _label_files(args.src, args.ext.lower()):
        try:
            was_palette = convert_palette_label(os.path.join(args.src, rel), os.path.join(out, rel))
        except LabelFormatError as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 2
        converted += int(was_palette)
        unchanged += int(not was_palette)
    if converted + unchanged == 0:
        print(f"ERROR: no *{args.ext} files under '{args.src}'", file=sys.stderr)
        return 2
    print(f"{converted} palette labels converted, {unchanged} already 'L'; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
