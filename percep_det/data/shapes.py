"""The embedded dataset: seeded synthetic scenes of textured shapes, in COCO format.

Every scene is one consistent 2.5-D layout, so the same images carry three kinds of labels:

* instance masks (the visible part of each object, COCO RLE) and boxes,
* a semantic map (``0`` = background, ``k`` = class ``k - 1``; PNG, uint8),
* a depth map (metres, stored as uint16 millimetres in PNG).

Objects are fronto-parallel plates in front of a slanted background plane. They are painted from far
to near, so occlusion always agrees with depth. Objects that end up mostly hidden are removed from the
scene before it is drawn, so every annotated instance is clearly visible.

The generator is deterministic: image ``i`` of a split depends only on ``(seed, split, i)`` through
its own ``numpy.random.Generator``, so the same seed gives the same bytes on every machine with the
same OpenCV/numpy versions, regardless of how many images are made or in which order.

Layout of a generated split directory::

    <root>/<split>/images/000000.png      RGB image (written as PNG, 8-bit)
    <root>/<split>/semantic/000000.png    uint8 class map
    <root>/<split>/depth/000000.png       uint16 depth in millimetres
    <root>/<split>/annotations.json       COCO instances (RLE masks, xywh boxes, areas)
"""
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util

__all__ = ["SHAPE_CLASSES", "ShapesSpec", "render_scene", "generate_split", "ensure_split"]

SHAPE_CLASSES = ["circle", "triangle", "rectangle", "star"]
# Bumped whenever the rendering changes, so an old cache is never read as the new dataset.
GENERATOR_VERSION = 1
DEPTH_SCALE = 1000.0  # depth PNG unit: millimetres


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of one split of the synthetic dataset."""

    num_images: int
    image_size: int = 128
    min_instances: int = 2
    max_instances: int = 6
    min_object_size: int = 14  # px, diameter of the shape's circumscribed circle
    max_object_size: int = 64
    min_visible_fraction: float = 0.35  # objects hidden more than this are dropped from the scene
    min_visible_area: int = 40  # px


def _texture(rng: np.random.Generator, size: int, base: np.ndarray, strength: float) -> np.ndarray:
    """A smooth random texture around colour ``base``: two oriented gratings plus blurred noise.

    Returns (size, size, 3) float32 in [0, 255].
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    tex = np.zeros((size, size), np.float32)
    for _ in range(2):
        theta = rng.uniform(0, math.pi)
        freq = rng.uniform(0.05, 0.5)
        phase = rng.uniform(0, 2 * math.pi)
        tex += np.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=float(rng.uniform(0.7, 2.5)))
    tex = tex / 2.0 + 1.5 * noise
    tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    img = base[None, None, :] + strength * tex[:, :, None] * tint[None, None, :]
    return np.clip(img, 0, 255)


def _shape_polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices (K, 2) of a shape of class ``cls`` centred at (cx, cy) with circumradius ``r``."""
    rot = rng.uniform(0, 2 * math.pi)
    if cls == 0:  # circle, slightly elliptic
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        radii = np.full_like(angles, r)
        aspect = rng.uniform(0.8, 1.0)
        pts = np.stack([radii * np.cos(angles), aspect * radii * np.sin(angles)], axis=1)
    elif cls == 1:  # triangle with jittered vertices
        angles = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)
    elif cls == 2:  # rectangle of random aspect ratio
        aspect = rng.uniform(0.35, 1.0)
        half_w = r / math.sqrt(1 + aspect**2)
        half_h = aspect * half_w
        pts = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    elif cls == 3:  # star with 5-7 thin arms: fine structure that coarse masks get wrong
        arms = int(rng.integers(5, 8))
        inner = rng.uniform(0.35, 0.55)
        angles = np.arange(2 * arms) * math.pi / arms
        radii = np.where(np.arange(2 * arms) % 2 == 0, r, inner * r)
        pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    else:
        raise ValueError(f"unknown shape class {cls}; expected 0..{len(SHAPE_CLASSES) - 1}")
    c, s = math.cos(rot), math.sin(rot)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts + np.array([cx, cy])


def _fill(poly: np.ndarray, size: int) -> np.ndarray:
    """Rasterise a polygon into a (size, size) bool mask (sub-pixel accurate vertices)."""
    mask = np.zeros((size, size), np.uint8)
    shift = 4
    pts = np.round(poly * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)


def render_scene(
    seed: int, split: str, index: int, spec: ShapesSpec
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Dict]]:
    """Render scene ``index`` of ``split``.

    Returns:
        image: (H, W, 3) uint8 RGB.
        semantic: (H, W) uint8, 0 = background, k = class k - 1.
        depth: (H, W) float32 metres.
        objects: list of dicts with "category_id" (0-based), "mask" (H, W) bool of the visible part,
            "depth" (metres), ordered from far to near.
    """
    split_key = sum(ord(ch) * 131**i for i, ch in enumerate(split)) % (2**31)
    rng = np.random.default_rng([seed, split_key, index, GENERATOR_VERSION])
    size = spec.image_size

    # Background: textured, with a slanted depth plane 6-10 m away.
    bg_colour = rng.uniform(40, 215, size=3).astype(np.float32)
    image = _texture(rng, size, bg_colour, strength=rng.uniform(15, 45))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    depth = (rng.uniform(6, 10) + rng.uniform(-1.5, 1.5) * xx + rng.uniform(0, 2.5) * yy).astype(
        np.float32
    )

    num = int(rng.integers(spec.min_instances, spec.max_instances + 1))
    candidates = []
    for _ in range(num):
        cls = int(rng.integers(0, len(SHAPE_CLASSES)))
        r = rng.uniform(spec.min_object_size, spec.max_object_size) / 2
        cx, cy = rng.uniform(0.1 * size, 0.9 * size, size=2)
        poly = _shape_polygon(rng, cls, cx, cy, r)
        full = _fill(poly, size)
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        # Keep objects distinguishable from the background on average, not always by much.
        if np.abs(colour - bg_colour).max() < 50:
            colour = 255 - colour
        candidates.append(
            dict(
                category_id=cls,
                full=full,
                depth=float(rng.uniform(1.0, 5.5)),
                colour=colour,
                texture_seed=int(rng.integers(0, 2**31)),
                strength=float(rng.uniform(5, 35)),
            )
        )
    # Far to near; drop objects that are (mostly) hidden by nearer ones, until stable.
    candidates.sort(key=lambda o: -o["depth"])
    while True:
        occluder = np.zeros((size, size), bool)
        for obj in reversed(candidates):
            obj["mask"] = obj["full"] & ~occluder
            occluder |= obj["full"]
        keep = [
            o
            for o in candidates
            if o["full"].sum() > 0
            and o["mask"].sum() >= spec.min_visible_area
            and o["mask"].sum() >= spec.min_visible_fraction * o["full"].sum()
        ]
        if len(keep) == len(candidates):
            break
        candidates = keep

    semantic = np.zeros((size, size), np.uint8)
    for obj in candidates:
        tex_rng = np.random.default_rng(obj["texture_seed"])
        tex = _texture(tex_rng, size, obj["colour"], strength=obj["strength"])
        # A little shading with depth: nearer objects are slightly brighter.
        tex = np.clip(tex * (1.15 - 0.05 * obj["depth"]), 0, 255)
        m = obj["full"]
        image[m] = tex[m]
        depth[m] = obj["depth"]
        semantic[m] = obj["category_id"] + 1
    # Soft object borders (antialiasing-like blur) and sensor noise.
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    image = image + rng.normal(0, 4.0, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    objects = [
        dict(category_id=o["category_id"], mask=o["mask"], depth=o["depth"]) for o in candidates
    ]
    return image, semantic, depth, objects


def _write_png(path: str, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise IOError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def generate_split(out_dir: str, split: str, spec: ShapesSpec, seed: int) -> str:
    """Write ``spec.num_images`` scenes of ``split`` into ``out_dir`` (which must not exist yet).

    Returns the path of the COCO json.
    """
    for sub in ("images", "semantic", "depth"):
        os.makedirs(os.path.join(out_dir, sub))
    images, annotations = [], []
    ann_id = 1
    for index in range(spec.num_images):
        image, semantic, depth, objects = render_scene(seed, split, index, spec)
        name = f"{index:06d}.png"
        _write_png(os.path.join(out_dir, "images", name), image[:, :, ::-1])  # cv2 wants BGR
        _write_png(os.path.join(out_dir, "semantic", name), semantic)
        depth_mm = np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)
        _write_png(os.path.join(out_dir, "depth", name), depth_mm)
        h, w = semantic.shape
        images.append(
            dict(id=index + 1, file_name=name, height=h, width=w, depth_file_name=name)
        )
        for obj in objects:
            rle = mask_util.encode(np.asfortranarray(obj["mask"].astype(np.uint8)))
            box = mask_util.toBbox(rle).tolist()
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=index + 1,
                    category_id=obj["category_id"] + 1,
                    segmentation=rle,
                    area=float(mask_util.area(rle)),
                    bbox=[round(v, 2) for v in box],
                    iscrowd=0,
                    depth=round(obj["depth"], 4),
                )
            )
            ann_id += 1
    coco = dict(
        info=dict(
            description=f"percep_det synthetic shapes, split {split}, seed {seed}",
            version=str(GENERATOR_VERSION),
        ),
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(SHAPE_CLASSES)
        ],
    )
    json_path = os.path.join(out_dir, "annotations.json")
    with open(json_path, "w") as f:
        json.dump(coco, f, sort_keys=True)
    return json_path


def ensure_split(root: str, split: str, spec: ShapesSpec, seed: int) -> str:
    """Return the directory of a generated split under ``root``, generating it if needed.

    Generation goes to a temporary directory next to the final one and is renamed into place, so a
    split directory is either complete or absent, and concurrent processes (one per GPU) never read
    a half-written split: the first rename wins and the others discard their copy.
    """
    final = os.path.join(root, f"{split}_v{GENERATOR_VERSION}_seed{seed}")
    if os.path.isfile(os.path.join(final, "annotations.json")):
        return final
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{split}_tmp_", dir=root)
    try:
        generate_split(os.path.join(tmp, "split"), split, spec, seed)
        try:
            os.rename(os.path.join(tmp, "split"), final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "annotations.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
