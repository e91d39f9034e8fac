"""The embedded dataset: seeded synthetic scenes of textured shapes, in COCO format.

Every scene is one consistent 2.5-D layout, so the same images carry three kinds of labels:

* instance masks (the visible part of each object, COCO RLE) and boxes,
* a semantic map (``0`` = background, ``k`` = class ``k - 1``; PNG, uint8),
* a depth map (metres, stored as uint16 millimetres in PNG).

Two generators, chosen by ``ShapesSpec.version``:

* **Version 1** (the default, used by ``percep_shapes_*``): objects are fronto-parallel plates at
  random depths in front of a slanted background plane, painted from far to near. Their depth has
  no image cue (size and position are random), so it suits instance and semantic segmentation.
* **Version 2** (``percep_shapes_depth_*``): a pinhole camera (``camera_intrinsics``: f = image
  size, principal point at the image centre) at 1.1-1.7 m above a tiled floor, pitched down by
  10-20 degrees, looking at a far wall 8-10.5 m away. The shapes are planar objects of 0.4-1.2 m
  standing on the floor: their bottom touches the floor at the image row of their depth, their
  image size is f * S / Z, half of them are slanted (turned by 20-60 degrees about the vertical,
  leaning back by up to 35 degrees). Textures are fixed to the surfaces in metres, so they shrink
  with distance; light falls off and haze grows with depth. Every surface is a plane
  ``n . X = rho``, whose depth is ``Z(u, v) = rho / (n . K^-1 [u, v, 1])``, and one z-buffer (the
  argmin over the per-surface depth fields) gives the instance masks, the semantic map and the
  depth map at once, so the three agree even where slanted planes cross. Depth is in
  ``V2_DEPTH_RANGE`` (0.5-12 m). The RGB image is rendered at twice the resolution and averaged
  (anti-aliasing); the labels are not anti-aliased.

In both versions objects that end up mostly hidden are removed from the scene before it is drawn,
so every annotated instance is clearly visible.

The generator is deterministic: image ``i`` of a split depends only on ``(seed, split, i, version)``
through its own ``numpy.random.Generator``, so the same seed gives the same bytes on every machine
with the same OpenCV/numpy versions, regardless of how many images are made or in which order.

Layout of a generated split directory (``split_dir_name``: ``<split>_v<version>_seed<seed>``)::

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

__all__ = [
    "SHAPE_CLASSES",
    "V2_DEPTH_RANGE",
    "ShapesSpec",
    "camera_intrinsics",
    "ensure_split",
    "generate_split",
    "render_scene",
    "split_dir_name",
]

SHAPE_CLASSES = ["circle", "triangle", "rectangle", "star"]
# The renderers; a new look is a new version, so an old cache is never read as the new dataset.
GENERATOR_VERSIONS = (1, 2)
# The default version (ShapesSpec.version), the one of percep_shapes_* and their caches.
GENERATOR_VERSION = 1
DEPTH_SCALE = 1000.0  # depth PNG unit: millimetres
# Depth of every pixel of a version-2 scene lies in this range (metres).
V2_DEPTH_RANGE = (0.5, 12.0)


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of one split of the synthetic dataset.

    ``min_object_size`` / ``max_object_size`` are pixel sizes of version 1; version 2 draws metric
    sizes, whose pixel size follows from the depth. The other fields apply to both versions.
    """

    num_images: int
    image_size: int = 128
    min_instances: int = 2
    max_instances: int = 6
    min_object_size: int = 14  # px, diameter of the shape's circumscribed circle
    max_object_size: int = 64
    min_visible_fraction: float = 0.35  # objects hidden more than this are dropped from the scene
    min_visible_area: int = 40  # px
    version: int = GENERATOR_VERSION  # the renderer (see the module docstring)


def camera_intrinsics(spec: ShapesSpec) -> Tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels of the version-2 camera (the same for every scene).

    Pixel convention (detectron2's): the image spans ``[0, W] x [0, H]`` and pixel ``(row i,
    column j)`` has its centre at ``(u, v) = (j + 0.5, i + 0.5)``, so the centre of the image is
    ``(W / 2, H / 2)``."""
    if spec.version < 2:
        raise ValueError(
            f"ShapesSpec.version {spec.version} scenes have no camera (their depth has no image "
            "cue); camera intrinsics exist from version 2 on"
        )
    f = float(spec.image_size)
    return (f, f, spec.image_size / 2.0, spec.image_size / 2.0)


def split_dir_name(split: str, spec: ShapesSpec, seed: int) -> str:
    """Directory name of a generated split (the version-1 name is the historical one)."""
    return f"{split}_v{spec.version}_seed{seed}"


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


def _shape_polygon(
    rng: np.random.Generator, cls: int, cx: float, cy: float, r: float
) -> np.ndarray:
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
    """Render scene ``index`` of ``split`` with generator ``spec.version``.

    Returns:
        image: (H, W, 3) uint8 RGB.
        semantic: (H, W) uint8, 0 = background, k = class k - 1.
        depth: (H, W) float32 metres (> 0 everywhere).
        objects: list of dicts with "category_id" (0-based), "mask" (H, W) bool of the visible part,
            "depth" (metres), ordered from far to near. Version 1: the plate's constant depth;
            version 2: the depth of the point where the object stands on the floor (the middle of
            its bottom edge), and "contact" (u, v), that point's image coordinates.
    """
    if spec.version not in GENERATOR_VERSIONS:
        raise ValueError(
            f"ShapesSpec.version is {spec.version}; expected one of {GENERATOR_VERSIONS}"
        )
    split_key = sum(ord(ch) * 131**i for i, ch in enumerate(split)) % (2**31)
    rng = np.random.default_rng([seed, split_key, index, spec.version])
    if spec.version == 1:
        return _render_scene_v1(rng, spec)
    return _render_scene_v2(rng, spec)


def _render_scene_v1(
    rng: np.random.Generator, spec: ShapesSpec
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Dict]]:
    """Version 1: fronto-parallel plates at random depths in front of a slanted background (no
    size or position cue to depth). Kept byte for byte: its caches and results stay valid."""
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


# ---- version 2: a pinhole camera over a floor -------------------------------------------------
# World frame: the camera centre is the origin, X right, Y down (gravity), Z forward (horizontal);
# the floor is the plane Y = camera height. Camera frame: x right, y down, z along the optical axis.
_V2_CAM_HEIGHT = (1.1, 1.7)  # metres
_V2_PITCH = (math.radians(10), math.radians(20))  # camera looks down by this angle
_V2_WALL_DIST = (8.0, 10.5)  # metres, horizontal distance of the far wall along its normal
_V2_WALL_YAW = math.radians(15)  # the wall is turned by up to this angle about the vertical
_V2_OBJECT_SIZE = (0.4, 1.2)  # metres, diameter of the shape's circumscribed circle
_V2_SLANT_PROB = 0.5  # share of objects that are turned and leaning (varied normals)
_V2_YAW = (math.radians(20), math.radians(60))
_V2_MAX_LEAN = math.radians(35)
_V2_SUPERSAMPLE = 2  # the RGB image is rendered this many times finer and averaged


def _camera_rotation(pitch: float) -> np.ndarray:
    """(3, 3) world -> camera rotation of a camera looking down by ``pitch`` (rows: its axes)."""
    c, s = math.cos(pitch), math.sin(pitch)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rays(spec: ShapesSpec, factor: int) -> np.ndarray:
    """(S, S, 3) rays ``K^-1 [u, v, 1]`` through the pixel centres of a grid ``factor`` times finer
    than the image (S = image_size * factor)."""
    fx, fy, cx, cy = camera_intrinsics(spec)
    centres = (np.arange(spec.image_size * factor, dtype=np.float64) + 0.5) / factor
    x, y = np.meshgrid((centres - cx) / fx, (centres - cy) / fy)
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def _plane(origin: np.ndarray, e1: np.ndarray, e2: np.ndarray, rotation: np.ndarray) -> Dict:
    """A plane through ``origin`` spanned by unit vectors ``e1``, ``e2`` (world frame), in camera
    coordinates: ``normal . X = rho`` with rho > 0 (the normal points away from the camera), and the
    origin/axes of its texture coordinates."""
    normal = np.cross(e1, e2)
    normal = rotation @ (normal / np.linalg.norm(normal))
    origin, e1, e2 = rotation @ origin, rotation @ e1, rotation @ e2
    rho = float(normal @ origin)
    if rho < 0:
        normal, rho = -normal, -rho
    return dict(normal=normal, rho=rho, origin=origin, e1=e1, e2=e2)


def _material(rng: np.random.Generator, colour: np.ndarray, strength: float, tile: float) -> Dict:
    """Random texture parameters: 5 gratings (metric wavelengths 4 cm - 1 m), a tint, and a tile
    pattern of side ``tile`` metres (0 = none)."""
    k = 5
    return dict(
        colour=colour,
        strength=strength,
        theta=rng.uniform(0, math.pi, k),
        wavelength=np.exp(rng.uniform(math.log(0.04), math.log(1.0), k)),
        phase=rng.uniform(0, 2 * math.pi, k),
        amplitude=rng.uniform(0.3, 1.0, k),
        tint=rng.uniform(0.5, 1.0, size=3),
        tile=tile,
    )


def _fade(period_px: np.ndarray) -> np.ndarray:
    """Weight of a pattern whose period is ``period_px`` pixels: 1 from 4 px up, 0 below 2 px, so
    far textures fade out instead of aliasing (what mip-mapping does)."""
    return np.clip(period_px / 2.0 - 1.0, 0.0, 1.0)


def _shade(material: Dict, a: np.ndarray, b: np.ndarray, px_per_metre: np.ndarray) -> np.ndarray:
    """(N, 3) colours of the surface points with texture coordinates ``a``, ``b`` (N,) metres;
    ``px_per_metre`` (N,): image pixels per metre of the surface there (f / Z)."""
    tex = np.zeros_like(a)
    for theta, wavelength, phase, amp in zip(
        material["theta"], material["wavelength"], material["phase"], material["amplitude"]
    ):
        along = a * math.cos(theta) + b * math.sin(theta)
        weight = _fade(wavelength * px_per_metre)
        tex += amp * weight * np.sin(2 * math.pi * along / wavelength + phase)
    tex /= 2.0
    tile = material["tile"]
    if tile > 0:
        checker = np.tanh(4 * np.sin(math.pi * a / tile) * np.sin(math.pi * b / tile))
        tex += 1.5 * _fade(2 * tile * px_per_metre) * checker
    return material["colour"][None, :] + material["strength"] * tex[:, None] * material["tint"]


def _zbuffer(
    layers: List[Dict], spec: ShapesSpec, factor: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One z-buffer over planar layers on a grid ``factor`` times finer than the image.

    A layer is a plane (``_plane``) with an optional ``polygon`` (K, 2) in image coordinates
    (u, v) that bounds it. Returns ``idx`` (S, S) int, the nearest layer of each pixel, ``depth``
    (S, S) its depth, ``covers`` (L, S, S) bool, where each layer is in front of the camera, and
    the rays (S, S, 3)."""
    rays = _rays(spec, factor)
    n = rays.shape[0]
    z = np.full((len(layers), n, n), np.inf)
    for k, layer in enumerate(layers):
        denom = rays @ layer["normal"]
        covers = denom > 1e-9
        if layer.get("polygon") is not None:
            # pixel centres are at j + 0.5; _fill puts them at integer coordinates
            covers &= _fill(layer["polygon"] * factor - 0.5, n)
        z[k][covers] = layer["rho"] / denom[covers]
    idx = np.argmin(z, axis=0)
    depth = np.take_along_axis(z, idx[None], axis=0)[0]
    return idx, depth, np.isfinite(z), rays


def _render_rgb(
    layers: List[Dict], spec: ShapesSpec, haze: float, airlight: np.ndarray, fx: float
) -> np.ndarray:
    """(H, W, 3) float32 image of ``layers`` (each with a ``material``), supersampled."""
    factor = _V2_SUPERSAMPLE
    idx, depth, _, rays = _zbuffer(layers, spec, factor)
    n = idx.shape[0]
    image = np.zeros((n, n, 3))
    for k, layer in enumerate(layers):
        sel = idx == k
        if not sel.any():
            continue
        z = depth[sel]
        rel = z[:, None] * rays[sel] - layer["origin"]  # (N, 3) camera frame
        colour = _shade(layer["material"], rel @ layer["e1"], rel @ layer["e2"], fx * factor / z)
        light = (1.15 - 0.035 * z)[:, None]  # nearer is brighter
        transmission = np.exp(-haze * z)[:, None]  # and clearer
        image[sel] = np.clip(colour, 0, 255) * light * transmission + airlight * (1 - transmission)
    image = image.reshape(spec.image_size, factor, spec.image_size, factor, 3).mean(axis=(1, 3))
    return image.astype(np.float32)


def _render_scene_v2(
    rng: np.random.Generator, spec: ShapesSpec
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[Dict]]:
    """Version 2: objects standing on a floor, seen by a pinhole camera (module docstring)."""
    size = spec.image_size
    fx, fy, cx, cy = camera_intrinsics(spec)
    height = rng.uniform(*_V2_CAM_HEIGHT)
    pitch = rng.uniform(*_V2_PITCH)
    rot = _camera_rotation(pitch)
    up = np.array([0.0, -1.0, 0.0])

    # Floor (tiled) and far wall.
    floor = _plane(
        np.array([0.0, height, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0, 0, 1.0]), rot
    )
    floor_colour = rng.uniform(60, 200, size=3)
    floor["material"] = _material(rng, floor_colour, rng.uniform(15, 35), rng.uniform(0.3, 0.8))
    wall_yaw = rng.uniform(-_V2_WALL_YAW, _V2_WALL_YAW)
    wall_normal = np.array([math.sin(wall_yaw), 0.0, math.cos(wall_yaw)])
    wall_axis = np.array([math.cos(wall_yaw), 0.0, -math.sin(wall_yaw)])
    wall = _plane(wall_normal, wall_axis, up, rot)  # unit distance; scaled below
    # The wall's distance, reduced where needed so that no pixel is deeper than the range allows.
    unit_far = float((1.0 / (_rays(spec, 1) @ wall["normal"])).max())
    distance = min(rng.uniform(*_V2_WALL_DIST), (V2_DEPTH_RANGE[1] - 0.6) / unit_far)
    wall["origin"], wall["rho"] = wall["origin"] * distance, wall["rho"] * distance
    wall_colour = rng.uniform(60, 220, size=3)
    wall["material"] = _material(rng, wall_colour, rng.uniform(10, 30), 0.0)
    haze = rng.uniform(0.04, 0.09)
    airlight = rng.uniform(170, 220) + rng.uniform(-15, 15, size=3)

    # Horizontal distance of the floor seen by the last row: the nearest place an object can stand.
    t = (size - 1 - cy) / fy
    near = (
        height * (math.cos(pitch) - t * math.sin(pitch)) / (math.sin(pitch) + t * math.cos(pitch))
    )
    far = max(near + 1.0, distance - 1.5)

    def sample_objects() -> List[Dict]:
        objects = []
        for _ in range(int(rng.integers(spec.min_instances, spec.max_instances + 1))):
            cls = int(rng.integers(0, len(SHAPE_CLASSES)))
            outline = _shape_polygon(rng, cls, 0.0, 0.0, rng.uniform(*_V2_OBJECT_SIZE) / 2)
            yaw, lean = 0.0, 0.0
            if rng.random() < _V2_SLANT_PROB:
                yaw = rng.uniform(*_V2_YAW) * (1 if rng.random() < 0.5 else -1)
                lean = rng.uniform(0, _V2_MAX_LEAN)
            # Where it stands: log-uniform horizontal distance, any column.
            dist = math.exp(rng.uniform(math.log(near), math.log(far)))
            u = rng.uniform(0.08, 0.92) * size
            z_contact = height * math.sin(pitch) + dist * math.cos(pitch)
            ground = np.array([(u - cx) * z_contact / fx, height, dist])
            facing = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
            e1 = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
            e2 = math.cos(lean) * up + math.sin(lean) * facing  # leaning back
            # The outline (y down in _shape_polygon) raised until its lowest point is on the floor.
            a, b = outline[:, 0], outline[:, 1].max() - outline[:, 1]
            corners = rot @ (ground[:, None] + e1[:, None] * a + e2[:, None] * b)  # (3, K)
            contact = rot @ ground
            if corners[2].min() < V2_DEPTH_RANGE[0]:
                continue  # too near (depth is linear over the plane: its minimum is at a corner)
            layer = _plane(ground, e1, e2, rot)
            layer["polygon"] = np.stack(
                [fx * corners[0] / corners[2] + cx, fy * corners[1] / corners[2] + cy], axis=1
            )
            colour = rng.uniform(0, 255, size=3)
            # Keep objects distinguishable from the background on average, not always by much.
            if min(np.abs(colour - floor_colour).max(), np.abs(colour - wall_colour).max()) < 50:
                colour = 255 - colour
            layer["material"] = _material(rng, colour, rng.uniform(5, 30), 0.0)
            layer.update(
                category_id=cls,
                depth=float(contact[2]),
                contact=(
                    float(fx * contact[0] / contact[2] + cx),
                    float(fy * contact[1] / contact[2] + cy),
                ),
            )
            objects.append(layer)
        return objects

    for _ in range(10):  # redraw a scene whose objects all ended up (nearly) hidden or tiny
        objects = sample_objects()
        # Drop objects that are (mostly) hidden, until stable.
        while True:
            idx, depth, covers, _ = _zbuffer(objects + [floor, wall], spec, 1)
            keep = []
            for k, obj in enumerate(objects):
                obj["mask"] = idx == k
                visible, full = int(obj["mask"].sum()), int(covers[k].sum())
                if visible >= spec.min_visible_area and visible >= spec.min_visible_fraction * full:
                    keep.append(obj)
            if len(keep) == len(objects):
                break
            objects = keep
        if objects:
            break
    objects.sort(key=lambda o: -o["depth"])  # far to near, like version 1
    layers = objects + [floor, wall]
    idx, depth, _, _ = _zbuffer(layers, spec, 1)
    semantic = np.zeros((size, size), np.uint8)
    for k, obj in enumerate(objects):
        obj["mask"] = idx == k
        semantic[obj["mask"]] = obj["category_id"] + 1

    image = _render_rgb(layers, spec, haze, airlight, fx)
    image = cv2.GaussianBlur(image, (3, 3), 0.5)
    image = image + rng.normal(0, 3.0, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    out = [
        dict(category_id=o["category_id"], mask=o["mask"], depth=o["depth"], contact=o["contact"])
        for o in objects
    ]
    return image, semantic, depth.astype(np.float32), out


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
        images.append(dict(id=index + 1, file_name=name, height=h, width=w, depth_file_name=name))
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
            version=str(spec.version),
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
    final = os.path.join(root, split_dir_name(split, spec, seed))
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
