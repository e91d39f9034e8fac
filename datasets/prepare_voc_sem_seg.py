#!/usr/bin/env python
"""Build Pascal VOC 2012 + SBD "aug" semantic segmentation (train_aug 10,582 / val 1,449).

Inputs (see datasets/README.md for the downloads):
  --voc  VOCdevkit/VOC2012 (JPEGImages/, SegmentationClass/ palette PNGs,
         ImageSets/Segmentation/{train,val}.txt), i.e. $DETECTRON2_DATASETS/VOC2012
  --sbd  benchmark_RELEASE/dataset of SBD (cls/*.mat, train.txt, val.txt)

Writes into --voc:
  SegmentationClassAug/<id>.png            'L' PNGs: SBD's labels (from cls/*.mat), then VOC's
                                           own labels (palette -> indices) for every VOC image,
                                           so val and VOC train keep the official labels (with
                                           the 255 object borders; SBD has none)
  ImageSets/Segmentation/train_aug.txt     (SBD train + SBD val + VOC train) - VOC val

    python datasets/prepare_voc_sem_seg.py --voc datasets/VOC2012 --sbd /data/SBD/dataset
"""

import argparse
import os
import sys
from typing import List

import numpy as np
from PIL import Image

from percep_det.data.sem_seg import convert_palette_label
from percep_det.data.voc import LABEL_DIR, LIST_DIR


def _read_ids(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file '{path}' does not exist")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _sbd_label(mat_path: str) -> np.ndarray:
    """(H, W) uint8 class indices of an SBD ``cls/<id>.mat`` (struct GTcls, field Segmentation)."""
    from scipy.io import loadmat  # only this script needs scipy

    return np.asarray(loadmat(mat_path)["GTcls"]["Segmentation"][0][0], dtype=np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--voc", required=True, help="VOCdevkit/VOC2012")
    parser.add_argument("--sbd", required=True, help="benchmark_RELEASE/dataset of SBD")
    args = parser.parse_args(argv)
    lists = os.path.join(args.voc, LIST_DIR)
    try:
        voc_train = _read_ids(os.path.join(lists, "train.txt"))
        voc_val = _read_ids(os.path.join(lists, "val.txt"))
        sbd_ids = _read_ids(os.path.join(args.sbd, "train.txt"))
        sbd_ids += _read_ids(os.path.join(args.sbd, "val.txt"))
        for folder in (os.path.join(args.voc, "SegmentationClass"), os.path.join(args.sbd, "cls")):
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"folder '{folder}' does not exist")
    except FileNotFoundError as e:
        print(f"ERROR: {e}; see the Pascal VOC section of datasets/README.md", file=sys.stderr)
        return 2

    out_dir = os.path.join(args.voc, LABEL_DIR)
    os.makedirs(out_dir, exist_ok=True)
    for image_id in sorted(set(sbd_ids)):
        label = _sbd_label(os.path.join(args.sbd, "cls", f"{image_id}.mat"))
        Image.fromarray(label).save(os.path.join(out_dir, f"{image_id}.png"))
    for image_id in voc_train + voc_val:  # official labels win where both exist
        src = os.path.join(args.voc, "SegmentationClass", f"{image_id}.png")
        convert_palette_label(src, os.path.join(out_dir, f"{image_id}.png"))

    held_out = set(voc_val)
    train_aug = sorted(set(sbd_ids + voc_train) - held_out)
    with open(os.path.join(lists, "train_aug.txt"), "w") as f:
        f.write("".join(f"{image_id}\n" for image_id in train_aug))
    print(
        f"train_aug: {len(train_aug)} ids (standard: 10582), val: {len(voc_val)} (standard: "
        f"1449); labels in {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
