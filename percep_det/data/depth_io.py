"""Depth maps on disk and the depth dataset conventions shared by loaders, mapper and evaluator.

A depth dataset record (detectron2's standard dataset dict) has::

    file_name          the RGB image
    depth_file_name    the depth map: a 16-bit PNG (value / depth_scale = metres; 0 = invalid) or a
                       float32 .npy in metres (0 or non-finite = invalid)
    height, width      of the image (the depth map has the same size)
    image_id

and its dataset's metadata (``MetadataCatalog.get(name)``) has::

    evaluator_type     "depth"
    depth_scale        PNG value per metre (1000 for millimetre PNGs, the NYUv2/BTS convention)
    intrinsics         (fx, fy, cx, cy) in pixels of the stored image size
    min_depth, max_depth
                       the valid range in metres (evaluation clips predictions into it and ignores
                       ground truth outside it; the perceptual term divides depth by max_depth)
    eigen_crop         True for NYUv2 (evaluation on rows 45:471, cols 41:601 of 480 x 640)

Invalid ground-truth pixels are 0 after reading, whatever the file stored.
"""

import os

import numpy as np
from PIL import Image

__all__ = ["read_depth", "write_depth_png"]


def read_depth(path: str, depth_scale: float = 1000.0) -> np.ndarray:
    """A depth map in metres, (H, W) float32, invalid pixels 0.

    ``.npy``: float metres. Anything else is read as a single-channel integer image divided by
    ``depth_scale``; an 8-bit or colour image is refused (depth that was saved as a picture has
    lost its values)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"depth file '{path}' does not exist")
    if path.endswith(".npy"):
        depth = np.load(path).astype(np.float32)
    else:
        with Image.open(path) as img:
            if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ValueError(
                    f"depth file '{path}' is a '{img.mode}' image; expected a 16-bit single-channel "
                    "PNG (value / depth_scale = metres, 0 = invalid) or a float32 .npy in metres. "
                    "An 8-bit or colour depth picture cannot be read back as depth"
                )
            depth = np.asarray(img).astype(np.float32) / float(depth_scale)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError(f"depth file '{path}' has shape {depth.shape}; expected (H, W)")
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def write_depth_png(path: str, depth: np.ndarray, depth_scale: float = 1000.0) -> None:
    """Write ``depth`` (metres, 0 = invalid) as a 16-bit PNG, completely or not at all."""
    value = np.round(np.nan_to_num(depth, nan=0.0, posinf=0.0) * depth_scale)
    if value.max(initial=0) > 65535:
        raise ValueError(
            f"depth up to {depth.max():.2f} m does not fit a 16-bit PNG at depth_scale "
            f"{depth_scale} (max {65535 / depth_scale:.2f} m) for '{path}'"
        )
    tmp = path + ".tmp.png"
    Image.fromarray(np.clip(value, 0, 65535).astype(np.uint16)).save(tmp)
    os.replace(tmp, path)
