#!/usr/bin/env python
"""Extract the official NYU Depth v2 train/test split (795 / 654 frames) from the labeled .mat.

Inputs (see the NYU Depth v2 section of datasets/README.md for the downloads):
  --mat     nyu_depth_v2_labeled.mat (MATLAB v7.3, i.e. HDF5: read with h5py); its datasets
            "images" (N, 3, W, H) uint8 and "depths" (N, W, H) float metres (in-painted), stored
            with MATLAB's axes reversed
  --splits  splits.mat with trainNdxs / testNdxs (1-based frame indices; read with scipy)

Writes (into a temporary folder renamed into place at the end: the result is complete or absent):
  <out>/official/{train,test}/rgb_XXXXX.png     RGB, 640 x 480 (--rgb-format jpg: JPEG, quality 95)
  <out>/official/{train,test}/depth_XXXXX.png   16-bit PNG, millimetres (0 = invalid)
  <out>/official/{train,test}_files.txt         'train/rgb_XXXXX.png train/depth_XXXXX.png 518.8579'
XXXXX is the frame's 1-based index in the .mat (BTS's names for the same frames).

    python datasets/prepare_nyu_v2.py      # inputs in $DETECTRON2_DATASETS/nyu_depth_v2/
    python datasets/prepare_nyu_v2.py --mat /data/nyu_depth_v2_labeled.mat --splits /data/splits.mat
"""

import argparse
import os
import shutil
import sys
import tempfile
from typing import Dict

import numpy as np
from PIL import Image

from percep_det.data.depth import NYU_V2_DIR, NYU_V2_INTRINSICS, OFFICIAL_DIR, OFFICIAL_LIST
from percep_det.data.depth_io import write_depth_png

DEPTH_SCALE = 1000.0  # millimetres, the NYU/BTS convention (NYU_V2_METADATA["depth_scale"])
SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}


def _read_splits(splits_path: str, num_frames: int) -> Dict[str, np.ndarray]:
    """1-based frame indices of each split, checked against the .mat's ``num_frames``."""
    from scipy.io import loadmat  # only this script needs scipy

    if not os.path.isfile(splits_path):
        raise FileNotFoundError(
            f"NYU Depth v2 split file (splits.mat) '{splits_path}' does not exist"
        )
    mat = loadmat(splits_path)
    splits = {}
    for split, key in SPLIT_KEYS.items():
        if key not in mat:
            keys = sorted(k for k in mat if not k.startswith("_"))
            raise ValueError(
                f"'{splits_path}' has no '{key}' (has {keys}); expected the NYU Depth v2 "
                "splits.mat with trainNdxs and testNdxs"
            )
        indices = np.asarray(mat[key]).astype(np.int64).ravel()
        bad = indices[(indices < 1) | (indices > num_frames)]
        if len(bad):
            raise ValueError(
                f"'{splits_path}' {key} has indices {bad[:5].tolist()} outside 1..{num_frames} "
                "(the number of frames of the .mat): the two files do not belong together"
            )
        splits[split] = indices
    both = np.intersect1d(splits["train"], splits["test"])
    if len(both):
        raise ValueError(f"'{splits_path}': frames {both[:5].tolist()} are in both splits")
    return splits


def _open_mat(mat_path: str):
    """(h5py file, images, depths) of the labeled .mat, with its layout checked."""
    try:
        import h5py
    except ImportError as e:
        raise ImportError(
            "reading nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5) needs h5py: pip install h5py"
        ) from e
    if not os.path.isfile(mat_path):
        raise FileNotFoundError(f"labeled NYU Depth v2 file '{mat_path}' does not exist")
    try:
        f = h5py.File(mat_path, "r")
    except OSError as e:
        raise ValueError(
            f"'{mat_path}' is not an HDF5 (MATLAB v7.3) file ({e}); expected the labeled "
            "nyu_depth_v2_labeled.mat as downloaded"
        ) from e
    for key in ("images", "depths"):
        if key not in f:
            f.close()
            raise ValueError(
                f"'{mat_path}' has no dataset '{key}' (has {sorted(f.keys())}); expected the "
                "labeled NYU Depth v2 .mat"
            )
    images, depths = f["images"], f["depths"]
    n = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3 or depths.shape != (n,) + images.shape[2:]:
        shapes = (images.shape, depths.shape)
        f.close()
        raise ValueError(
            f"'{mat_path}': images {shapes[0]} and depths {shapes[1]}; expected (N, 3, W, H) and "
            "(N, W, H) (MATLAB's H x W x 3 x N and H x W x N seen through HDF5)"
        )
    return f, images, depths


def prepare_official(
    mat_path: str, splits_path: str, out_root: str, rgb_format: str = "png", overwrite: bool = False
) -> Dict[str, int]:
    """Write ``<out_root>/official`` (see the module docstring); returns frames per split.

    Raises:
        FileNotFoundError: ``mat_path`` or ``splits_path`` is missing.
        FileExistsError: ``<out_root>/official`` exists and ``overwrite`` is False.
        ValueError: the inputs are not the NYU Depth v2 files.
    """
    if rgb_format not in ("png", "jpg"):
        raise ValueError(f"rgb_format is '{rgb_format}'; expected 'png' or 'jpg'")
    final = os.path.join(out_root, OFFICIAL_DIR)
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(f"'{final}' already exists; pass --overwrite to make it again")
    f, images, depths = _open_mat(mat_path)
    with f:
        splits = _read_splits(splits_path, images.shape[0])
        os.makedirs(out_root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{OFFICIAL_DIR}_tmp_", dir=out_root)
        try:
            for split, indices in splits.items():
                os.makedirs(os.path.join(tmp, split))
                lines = []
                for index in indices:
                    rgb_name = os.path.join(split, f"rgb_{index:05d}.{rgb_format}")
                    depth_name = os.path.join(split, f"depth_{index:05d}.png")
                    # HDF5 holds MATLAB's column-major arrays with the axes reversed
                    rgb = np.ascontiguousarray(images[index - 1].transpose(2, 1, 0))  # (H, W, 3)
                    depth = np.asarray(depths[index - 1], dtype=np.float32).T  # (H, W) metres
                    save_args = {"quality": 95} if rgb_format == "jpg" else {}
                    Image.fromarray(rgb).save(os.path.join(tmp, rgb_name), **save_args)
                    write_depth_png(os.path.join(tmp, depth_name), depth, DEPTH_SCALE)
                    lines.append(f"{rgb_name} {depth_name} {NYU_V2_INTRINSICS[0]}\n")
                with open(os.path.join(tmp, OFFICIAL_LIST.format(split=split)), "w") as out:
                    out.writelines(lines)
            if os.path.exists(final):  # overwrite: swap the new folder in, then drop the old one
                old = tempfile.mkdtemp(prefix=f".{OFFICIAL_DIR}_old_", dir=out_root)
                os.rename(final, os.path.join(old, OFFICIAL_DIR))
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {split: len(indices) for split, indices in splits.items()}


def main(argv=None) -> int:
    default_root = os.path.join(
        os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")), NYU_V2_DIR
    )
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--mat", default="", help="nyu_depth_v2_labeled.mat (default: in the output folder)"
    )
    parser.add_argument("--splits", default="", help="splits.mat (default: in the output folder)")
    parser.add_argument(
        "--out", default=default_root, help="output folder ($DETECTRON2_DATASETS/nyu_depth_v2)"
    )
    parser.add_argument("--rgb-format", choices=("png", "jpg"), default="png")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing official/")
    args = parser.parse_args(argv)
    mat = args.mat or os.path.join(args.out, "nyu_depth_v2_labeled.mat")
    splits = args.splits or os.path.join(args.out, "splits.mat")
    try:
        counts = prepare_official(mat, splits, args.out, args.rgb_format, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"ERROR: {e}; see the NYU Depth v2 section of datasets/README.md", file=sys.stderr)
        return 2
    print(
        f"train: {counts['train']} frames (standard: 795), test: {counts['test']} (standard: "
        f"654) in {os.path.join(args.out, OFFICIAL_DIR)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
