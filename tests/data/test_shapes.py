import filecmp
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO

import percep_det  # noqa: F401
from percep_det.data import SHAPE_CLASSES, ShapesSpec, generate_split
from percep_det.data.shapes import DEPTH_SCALE, ensure_split

SPEC = ShapesSpec(num_images=12)


def _tree_files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "a"
    generate_split(str(out), "train", SPEC, seed=7)
    return str(out)


def test_same_seed_same_bytes(split_dir, tmp_path):
    again = tmp_path / "b"
    generate_split(str(again), "train", SPEC, seed=7)
    files = _tree_files(split_dir)
    assert files == _tree_files(str(again))
    assert len(files) == 3 * SPEC.num_images + 1
    match, mismatch, errors = filecmp.cmpfiles(split_dir, str(again), files, shallow=False)
    assert mismatch == [] and errors == [], (mismatch, errors)


def test_other_seed_or_split_differs(split_dir, tmp_path):
    other_seed = tmp_path / "seed8"
    generate_split(str(other_seed), "train", SPEC, seed=8)
    other_split = tmp_path / "val"
    generate_split(str(other_split), "val", SPEC, seed=7)
    for other in (other_seed, other_split):
        a = open(os.path.join(split_dir, "images", "000000.png"), "rb").read()
        b = open(os.path.join(other, "images", "000000.png"), "rb").read()
        assert a != b


def test_coco_json_loads_with_valid_masks(split_dir):
    coco = COCO(os.path.join(split_dir, "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == SHAPE_CLASSES
    assert len(coco.getImgIds()) == SPEC.num_images
    per_image = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
    assert min(per_image) >= 1 and max(per_image) <= SPEC.max_instances
    assert len(set(per_image)) > 1  # varied instance counts
    cats = set()
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        h, w = info["height"], info["width"]
        sem = _read(os.path.join(split_dir, "semantic", info["file_name"]))
        depth = _read(os.path.join(split_dir, "depth", info["depth_file_name"]))
        assert sem.shape == (h, w) and depth.shape == (h, w) and depth.dtype == np.uint16
        union = np.zeros((h, w), bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])):
            m = coco.annToMask(ann).astype(bool)
            assert m.sum() >= SPEC.min_visible_area
            assert np.isclose(ann["area"], m.sum())
            ys, xs = np.nonzero(m)
            x, y, bw, bh = ann["bbox"]
            assert np.allclose([x, y, x + bw, y + bh], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            # instance masks do not overlap (visible parts) and agree with semantic/depth maps
            assert not (union & m).any()
            union |= m
            assert (sem[m] == ann["category_id"]).all()
            assert np.allclose(depth[m] / DEPTH_SCALE, ann["depth"], atol=1e-3)
            cats.add(ann["category_id"])
        assert (sem[~union] == 0).mean() > 0.9  # mostly background outside the annotated parts
    assert len(cats) >= 3


def _read(path):
    import cv2

    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_ensure_split_is_atomic_and_cached(tmp_path):
    spec = ShapesSpec(num_images=2)
    first = ensure_split(str(tmp_path), "val", spec, seed=3)
    mtime = os.path.getmtime(os.path.join(first, "annotations.json"))
    assert ensure_split(str(tmp_path), "val", spec, seed=3) == first
    assert os.path.getmtime(os.path.join(first, "annotations.json")) == mtime
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temp leftovers


def test_registered_splits_load():
    records = DatasetCatalog.get("percep_shapes_val")
    assert len(records) == 100
    r = records[0]
    assert os.path.isfile(r["file_name"]) and os.path.isfile(r["sem_seg_file_name"])
    assert os.path.isfile(r["depth_file_name"])
    meta = MetadataCatalog.get("percep_shapes_val")
    assert meta.thing_classes == SHAPE_CLASSES
    assert meta.evaluator_type == "coco" and os.path.isfile(meta.json_file)
    with open(meta.json_file) as f:
        assert len(json.load(f)["images"]) == 100


def test_empty_cache_variable_means_the_default(monkeypatch):
    from percep_det.data.builtin import shapes_root

    monkeypatch.setenv("PERCEP_DET_CACHE", "")
    assert shapes_root() == os.path.join(os.path.expanduser("~"), ".cache", "percep_det", "shapes")
    monkeypatch.setenv("PERCEP_DET_CACHE", "/some/cache")
    assert shapes_root() == os.path.join("/some/cache", "shapes")


def _scene_digest(seed, split, index, spec):
    """sha256 of everything render_scene returns (arrays' bytes, classes, masks, depths)."""
    import hashlib

    from percep_det.data import render_scene

    image, semantic, depth, objects = render_scene(seed, split, index, spec)
    h = hashlib.sha256()
    for array in (image, semantic, depth):
        h.update(array.tobytes())
    for obj in objects:
        h.update(str(obj["category_id"]).encode())
        h.update(obj["mask"].tobytes())
        h.update(repr(obj["depth"]).encode())
    return h.hexdigest()


# Digests of version-1 scenes, recorded from the code before version 2 existed (numpy 1.26.4,
# opencv-python-headless 4.11.0.86): version 1 must keep rendering these exact bytes, so that the
# caches and results made with it stay valid. Another numpy/OpenCV may legitimately differ.
V1_DIGESTS = [
    (
        (0, "train", 3, ShapesSpec(num_images=10)),
        "6ae72ab2bf86a4babe81056c1dbdb8536cbd5ad99c5287f2c2a57218a9efce86",
    ),
    (
        (0, "val", 0, ShapesSpec(num_images=100)),
        "f9abe7e07c275eccb3c50b03f1e9d2dcb3b34cd0ae49e6d51f7a5cbe25d8c442",
    ),
    (
        (7, "train", 12, ShapesSpec(num_images=500, image_size=64)),
        "a2cac1981ca746e2da12174f113ade72bbf1e1bb6e6c4a19f31bea7a908633ea",
    ),
]


@pytest.mark.parametrize("args,digest", V1_DIGESTS)
def test_version_1_renders_the_same_bytes_as_before(args, digest):
    import cv2

    versions = (np.__version__, cv2.__version__)
    if versions != ("1.26.4", "4.11.0"):
        pytest.skip(f"digests recorded with numpy 1.26.4 / OpenCV 4.11.0, not {versions}")
    assert _scene_digest(*args) == digest


def test_version_is_part_of_the_cache_name(tmp_path):
    from percep_det.data.shapes import split_dir_name

    assert ShapesSpec(num_images=1).version == 1
    # the historical name of version 1 (existing caches stay valid), another one for version 2
    assert split_dir_name("train", ShapesSpec(num_images=1), 0) == "train_v1_seed0"
    v2 = ShapesSpec(num_images=1, version=2)
    assert split_dir_name("train", v2, 0) == "train_v2_seed0"
    path = ensure_split(str(tmp_path), "val", v2, seed=3)
    assert os.path.basename(path) == "val_v2_seed3"
    with open(os.path.join(path, "annotations.json")) as f:
        assert json.load(f)["info"]["version"] == "2"


def test_unknown_version_is_refused():
    from percep_det.data import render_scene

    with pytest.raises(ValueError, match="version"):
        render_scene(0, "train", 0, ShapesSpec(num_images=1, version=9))
