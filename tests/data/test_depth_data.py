"""Depth data: version-2 synthetic scenes, NYU Depth v2 preparation and loading, the mapper."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from PIL import Image

import percep_det  # noqa: F401  (registers the datasets)
from percep_det import add_percep_det_config
from percep_det.data import (
    NYU_V2_INTRINSICS,
    SHAPE_CLASSES,
    DepthDatasetMapper,
    ShapesSpec,
    apply_depth_transforms,
    camera_intrinsics,
    generate_split,
    load_nyu_v2_depth,
    read_depth,
    register_nyu_v2_depth,
    render_scene,
    write_depth_png,
)
from percep_det.data.shapes import V2_DEPTH_RANGE
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V2 = ShapesSpec(num_images=40, version=2)


def _spearman(a, b) -> float:
    """Spearman rank correlation (no ties in continuous data)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def v2_scenes():
    return [render_scene(0, "val", i, V2) for i in range(V2.num_images)]


# ---- version-2 synthetic scenes -------------------------------------------------------------


def test_v2_depth_is_valid_and_in_range(v2_scenes):
    lo, hi = V2_DEPTH_RANGE
    for image, semantic, depth, objects in v2_scenes:
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert depth.shape == (128, 128) and depth.dtype == np.float32
        assert (depth > 0).all() and np.isfinite(depth).all()
        assert depth.min() >= lo and depth.max() <= hi
        # fits a 16-bit millimetre PNG
        assert depth.max() * 1000 < 65535


def test_v2_labels_agree_with_one_zbuffer(v2_scenes):
    counts, classes = [], set()
    for image, semantic, depth, objects in v2_scenes:
        counts.append(len(objects))
        union = np.zeros(semantic.shape, bool)
        for obj in objects:
            m = obj["mask"]
            assert m.sum() >= V2.min_visible_area
            assert not (union & m).any()  # visible parts do not overlap
            union |= m
            assert (semantic[m] == obj["category_id"] + 1).all()
            classes.add(obj["category_id"])
        assert (semantic[~union] == 0).all()  # floor and wall are background
        depths = [o["depth"] for o in objects]
        assert depths == sorted(depths, reverse=True)  # far to near
    assert min(counts) >= 1 and max(counts) <= V2.max_instances and len(set(counts)) > 1
    assert classes == set(range(len(SHAPE_CLASSES)))


def test_v2_depth_is_learnable_from_monocular_cues(v2_scenes):
    """Objects stand on the floor: the lower their bottom in the image, the nearer they are."""
    bottom_rows, object_depths = [], []
    floor_correlations = []
    for image, semantic, depth, objects in v2_scenes:
        for obj in objects:
            rows = np.nonzero(obj["mask"])[0]
            bottom_rows.append(rows.max())
            object_depths.append(np.median(depth[obj["mask"]]))
            # the bottom edge touches the floor at the depth given by its row
            u, v = obj["contact"]
            assert 0 < u < 128 and 0 < v < 128
        # the floor below the horizon: depth falls monotonically with the row
        floor_rows = [i for i in range(64, 128) if (semantic[i] == 0).sum() > 10]
        row_depth = [np.median(depth[i][semantic[i] == 0]) for i in floor_rows]
        floor_correlations.append(_spearman(floor_rows, row_depth))
    assert len(bottom_rows) > 80
    assert _spearman(bottom_rows, object_depths) < -0.8
    assert np.median(floor_correlations) < -0.95


def test_v2_objects_have_perspective_size_and_varied_normals(v2_scenes):
    # pixel size = f * S / Z with S in 0.4-1.2 m: sqrt(area) * depth / f stays within a metric range
    fx = camera_intrinsics(V2)[0]
    metric = [
        np.sqrt(o["mask"].sum()) * o["depth"] / fx for _, _, _, objs in v2_scenes for o in objs
    ]
    assert 0.1 < np.median(metric) < 1.2
    # slanted planes: the depth inside some objects varies along the rows (not fronto-parallel)
    slanted = 0
    for _, _, depth, objects in v2_scenes:
        for obj in objects:
            ys, xs = np.nonzero(obj["mask"])
            if len(xs) > 100 and np.ptp(depth[ys, xs]) > 0.2 and np.ptp(xs) > 5:
                fit = np.polyfit(xs, depth[ys, xs], 1)[0]
                slanted += abs(fit) > 0.01
    assert slanted >= 5


def test_v2_is_deterministic_and_differs_from_v1():
    a = render_scene(3, "train", 5, V2)
    b = render_scene(3, "train", 5, V2)
    for x, y in zip(a[:3], b[:3]):
        assert np.array_equal(x, y)
    v1 = render_scene(3, "train", 5, ShapesSpec(num_images=40))
    assert not np.array_equal(a[0], v1[0])


def test_camera_intrinsics_need_version_2():
    assert camera_intrinsics(ShapesSpec(num_images=1, version=2, image_size=64)) == (
        64.0,
        64.0,
        32.0,
        32.0,
    )
    with pytest.raises(ValueError, match="version"):
        camera_intrinsics(ShapesSpec(num_images=1))


def test_v2_split_on_disk_round_trips(tmp_path):
    spec = ShapesSpec(num_images=3, version=2)
    generate_split(str(tmp_path / "s"), "train", spec, seed=1)
    with open(tmp_path / "s" / "annotations.json") as f:
        coco = json.load(f)
    assert coco["info"]["version"] == "2"
    for info in coco["images"]:
        _, semantic, depth, _ = render_scene(1, "train", info["id"] - 1, spec)
        stored = read_depth(str(tmp_path / "s" / "depth" / info["depth_file_name"]))
        assert np.abs(stored - depth).max() <= 0.0005 + 1e-6


def test_registered_shapes_depth_split():
    records = DatasetCatalog.get("percep_shapes_depth_val")
    assert len(records) == 100
    r = records[0]
    assert set(r) >= {"file_name", "depth_file_name", "height", "width", "image_id"}
    assert (r["height"], r["width"]) == (128, 128)
    for key in ("file_name", "depth_file_name", "sem_seg_file_name"):
        assert os.path.isfile(r[key])
    assert "_v2_seed0" in r["file_name"]
    meta = MetadataCatalog.get("percep_shapes_depth_val")
    assert meta.evaluator_type == "depth" and meta.depth_scale == 1000
    assert tuple(meta.intrinsics) == (128.0, 128.0, 64.0, 64.0)
    assert meta.eigen_crop is False
    depth = read_depth(r["depth_file_name"], meta.depth_scale)
    assert depth.min() >= meta.min_depth and depth.max() <= meta.max_depth
    assert MetadataCatalog.get("percep_shapes_depth_train").evaluator_type == "depth"
    from percep_det.data import ensure_generated

    ensure_generated("percep_shapes_depth_val")  # known name, already generated: no error


# ---- NYU Depth v2 ---------------------------------------------------------------------------


def _load_script(name):
    path = os.path.join(ROOT, "datasets", name)
    module = load_script(path, name[:-3])
    return module


def _fake_nyu(folder, n=4, h=8, w=10):
    """A tiny labeled .mat (HDF5, MATLAB's reversed axes) and splits.mat; returns the frames."""
    h5py = pytest.importorskip("h5py")
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.5, (n, h, w)).astype(np.float32)
    depth[0, 0, 0] = 0.0  # an invalid pixel
    with h5py.File(os.path.join(folder, "nyu_depth_v2_labeled.mat"), "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)  # (N, 3, W, H)
        f["depths"] = depth.transpose(0, 2, 1)  # (N, W, H)
    # 1-based indices, as columns, like the real file
    savemat(
        os.path.join(folder, "splits.mat"),
        {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2], [4]])},
    )
    return rgb, depth


def test_prepare_nyu_v2_and_load_round_trip(tmp_path, monkeypatch, capsys):
    datasets = tmp_path / "d2"
    nyu = datasets / "nyu_depth_v2"
    nyu.mkdir(parents=True)
    rgb, depth = _fake_nyu(str(nyu))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    script = _load_script("prepare_nyu_v2.py")
    assert script.main([]) == 0  # inputs and output default to $DETECTRON2_DATASETS/nyu_depth_v2
    assert "train: 2 frames" in capsys.readouterr().out
    assert [p for p in os.listdir(nyu) if p.startswith(".")] == []  # no temp leftovers
    official = nyu / "official"
    for split, indices in (("train", [1, 3]), ("test", [2, 4])):
        records = load_nyu_v2_depth(
            str(official / f"{split}_files.txt"), str(official), f"nyu_{split}"
        )
        assert [os.path.basename(r["file_name"]) for r in records] == [
            f"rgb_{i:05d}.png" for i in indices
        ]
        for r, index in zip(records, indices):
            assert (r["height"], r["width"]) == (8, 10)
            assert r["image_id"] == f"{split}/rgb_{index:05d}"
            assert np.array_equal(np.asarray(Image.open(r["file_name"])), rgb[index - 1])
            d = read_depth(r["depth_file_name"], 1000.0)
            assert np.abs(d - depth[index - 1]).max() <= 0.0005 + 1e-6  # 1 mm steps
        assert Image.open(records[0]["depth_file_name"]).mode.startswith("I")
    # frame 1 has its invalid pixel kept as 0
    assert read_depth(str(official / "train" / "depth_00001.png"))[0, 0] == 0

    # a registration reading that folder, with NYU's metadata
    name = "test_nyu_v2_depth_official_train"
    register_nyu_v2_depth(name, str(official / "train_files.txt"), str(official), 2)
    try:
        assert len(DatasetCatalog.get(name)) == 2
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "depth" and meta.depth_scale == 1000
        assert tuple(meta.intrinsics) == NYU_V2_INTRINSICS
        assert (meta.min_depth, meta.max_depth, meta.eigen_crop) == (1e-3, 10.0, True)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

    # a second run refuses to overwrite, --overwrite replaces atomically
    assert script.main([]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert script.main(["--overwrite", "--rgb-format", "jpg"]) == 0
    assert sorted(os.listdir(official / "test")) == [
        "depth_00002.png",
        "depth_00004.png",
        "rgb_00002.jpg",
        "rgb_00004.jpg",
    ]
    assert [p for p in os.listdir(nyu) if p.startswith(".")] == []


def test_prepare_nyu_v2_names_missing_files(tmp_path, capsys):
    script = _load_script("prepare_nyu_v2.py")
    missing = str(tmp_path / "nope.mat")
    assert script.main(["--mat", missing, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert missing in err and "README" in err
    _fake_nyu(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="x.mat"):
        script.prepare_official(
            str(tmp_path / "nyu_depth_v2_labeled.mat"), str(tmp_path / "x.mat"), str(tmp_path)
        )
    assert not (tmp_path / "official").exists()
    # splits that do not belong to the .mat
    from scipy.io import savemat

    savemat(str(tmp_path / "bad.mat"), {"trainNdxs": [[1], [9]], "testNdxs": [[2]]})
    with pytest.raises(ValueError, match="outside 1..4"):
        script.prepare_official(
            str(tmp_path / "nyu_depth_v2_labeled.mat"), str(tmp_path / "bad.mat"), str(tmp_path)
        )
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_registered_nyu_splits_are_lazy_and_name_what_is_missing(tmp_path):
    from percep_det.data.depth import NYU_V2_DEPTH_SPLITS

    for name in NYU_V2_DEPTH_SPLITS:
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "depth" and tuple(meta.intrinsics) == NYU_V2_INTRINSICS
        assert meta.eigen_crop is True and meta.max_depth == 10.0 and meta.depth_scale == 1000
        assert os.path.basename(os.path.dirname(meta.list_file)) in ("nyu_depth_v2", "official")
    official = MetadataCatalog.get("nyu_v2_depth_official_test")
    assert official.image_root.endswith(os.path.join("nyu_depth_v2", "official"))
    assert official.list_file.endswith(os.path.join("official", "test_files.txt"))
    # registering reads nothing: a root that does not exist is fine until the data is asked for
    data_root = str(tmp_path / "nowhere" / "nyu_depth_v2" / "official")
    list_file = os.path.join(data_root, "train_files.txt")
    name = "test_nyu_v2_depth_missing"
    register_nyu_v2_depth(name, list_file, data_root, 795)
    try:
        assert not (tmp_path / "nowhere").exists()
        with pytest.raises(FileNotFoundError) as e:
            DatasetCatalog.get(name)
        for part in (data_root, name, "DETECTRON2_DATASETS", "prepare_nyu_v2.py"):
            assert part in str(e.value)
        os.makedirs(data_root)
        with pytest.raises(FileNotFoundError) as e:
            DatasetCatalog.get(name)
        for part in (list_file, name, "DETECTRON2_DATASETS", "prepare_nyu_v2.py"):
            assert part in str(e.value)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_bts_list_layout(tmp_path):
    sync = tmp_path / "sync"
    (sync / "kitchen_0028b").mkdir(parents=True)
    Image.fromarray(np.zeros((6, 4, 3), np.uint8)).save(sync / "kitchen_0028b" / "rgb_00045.jpg")
    write_depth_png(str(sync / "kitchen_0028b" / "sync_depth_00045.png"), np.full((6, 4), 2.5))
    lst = tmp_path / "nyudepthv2_train_files_with_gt.txt"
    lst.write_text(
        "/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579\n"
        "/kitchen_0028b/rgb_00046.jpg None 518.8579\n\n"
    )
    records = load_nyu_v2_depth(str(lst), str(sync), "bts")
    assert len(records) == 1
    r = records[0]
    assert r["file_name"] == str(sync / "kitchen_0028b" / "rgb_00045.jpg")
    assert r["image_id"] == "kitchen_0028b/rgb_00045" and (r["height"], r["width"]) == (6, 4)
    assert np.allclose(read_depth(r["depth_file_name"]), 2.5)
    lst.write_text("/kitchen_0028b/rgb_00047.jpg /kitchen_0028b/sync_depth_00047.png 518.8579\n")
    with pytest.raises(FileNotFoundError, match="rgb_00047"):
        load_nyu_v2_depth(str(lst), str(sync), "bts")


def test_import_does_not_load_h5py():
    code = "import sys, percep_det; print('h5py' in sys.modules, 'scipy.io' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# ---- DepthDatasetMapper geometry ------------------------------------------------------------

K = (10.0, 20.0, 2.0, 1.0)  # fx, fy, cx, cy


def test_resize_up_by_two():
    depth = np.array([[1, 2, 0, 4], [5, 6, 7, 8]], np.float32)  # 2 x 4, one invalid pixel
    resize = T.ResizeTransform(2, 4, 4, 8, Image.BILINEAR)
    expected = np.array(
        [
            [1, 1, 2, 2, 0, 0, 4, 4],
            [1, 1, 2, 2, 0, 0, 4, 4],
            [5, 5, 6, 6, 7, 7, 8, 8],
            [5, 5, 6, 6, 7, 7, 8, 8],
        ],
        np.float32,
    )
    d, k, factor = apply_depth_transforms([resize], depth, K, "intrinsics")
    assert np.array_equal(d, expected) and d.dtype == np.float32
    assert np.allclose(k, [20, 40, 4, 2]) and factor == 1
    d, k, factor = apply_depth_transforms([resize], depth, K, "depth")
    assert np.array_equal(d, expected / 2)  # twice as big looks half as far
    assert np.allclose(k, [10, 20, 4, 2]) and factor == 2


def test_resize_down_by_two_samples_pixel_centres():
    depth = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
    depth[1, 3] = 0  # the invalid pixel is picked and stays exactly 0
    resize = T.ResizeTransform(4, 6, 2, 3, Image.BILINEAR)
    # output pixel j covers input [2j, 2j + 2); its centre 2j + 1 lies on input pixel 2j + 1
    d, k, factor = apply_depth_transforms([resize], depth, (10, 10, 3, 2), "intrinsics")
    assert np.array_equal(d, [[8, 0, 12], [20, 22, 24]])
    assert np.allclose(k, [5, 5, 1.5, 1]) and factor == 1
    d, k, factor = apply_depth_transforms([resize], depth, (10, 10, 3, 2), "depth")
    assert np.array_equal(d, [[16, 0, 24], [40, 44, 48]])
    assert np.allclose(k, [10, 10, 1.5, 1]) and factor == 0.5


def test_resize_that_changes_the_aspect_ratio():
    depth = np.full((2, 4), 3.0, np.float32)
    resize = T.ResizeTransform(2, 4, 4, 4, Image.BILINEAR)  # sx = 1, sy = 2
    d, k, _ = apply_depth_transforms([resize], depth, K, "intrinsics")
    assert d.shape == (4, 4) and np.allclose(k, [10, 40, 2, 2]) and np.allclose(d, 3)
    d, k, factor = apply_depth_transforms([resize], depth, K, "depth")
    s = np.sqrt(2)
    assert np.isclose(factor, s) and np.allclose(d, 3 / s)
    assert np.allclose(k, [10 / s, 20 * 2 / s, 2, 2])


def test_crop_then_flips():
    depth = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
    crop = T.CropTransform(1, 2, 3, 2)  # x0, y0, w, h
    d, k, _ = apply_depth_transforms([crop], depth, (10, 10, 3, 2), "depth")
    assert np.array_equal(d, [[14, 15, 16], [20, 21, 22]]) and np.allclose(k, [10, 10, 2, 0])
    d, k, _ = apply_depth_transforms([crop, T.HFlipTransform(3)], depth, (10, 10, 3, 2), "depth")
    assert np.array_equal(d, [[16, 15, 14], [22, 21, 20]])
    assert np.allclose(k, [10, 10, 1, 0])  # cx' = W - cx = 3 - 2
    d, k, _ = apply_depth_transforms([T.VFlipTransform(4)], depth, (10, 10, 3, 1.5), "depth")
    assert np.array_equal(d, depth[::-1]) and np.allclose(k, [10, 10, 3, 2.5])
    with pytest.raises(NotImplementedError, match="RotationTransform"):
        apply_depth_transforms([T.RotationTransform(4, 6, 30)], depth, K, "depth")


@pytest.mark.parametrize("mode", ["intrinsics", "depth"])
def test_back_projection_is_consistent(mode):
    """A 3D point projects, with the returned intrinsics, onto the pixel that carries its depth,
    and that pixel back-projects onto the point (depth mode: the scene with depth divided by s;
    after a flip: the mirrored point)."""
    h, w = 20, 30
    k0 = np.array([25.0, 24.0, 15.3, 9.7])
    rng = np.random.default_rng(0)
    chains = [
        [T.ResizeTransform(h, w, 30, 45, Image.BILINEAR), T.CropTransform(7, 4, 30, 20)],
        [
            T.ResizeTransform(h, w, 30, 45, Image.BILINEAR),
            T.CropTransform(3, 5, 33, 22),
            T.HFlipTransform(33),
        ],
        [T.HFlipTransform(w), T.VFlipTransform(h), T.ResizeTransform(h, w, 40, 60, Image.BILINEAR)],
    ]
    checked = 0
    for chain in chains:
        for _ in range(30):
            i, j = rng.integers(4, h - 4), rng.integers(4, w - 4)
            z = rng.uniform(1, 8)
            point = np.array([(j + 0.5 - k0[2]) * z / k0[0], (i + 0.5 - k0[3]) * z / k0[1], z])
            depth = np.zeros((h, w), np.float32)
            depth[i - 2 : i + 3, j - 2 : j + 3] = z  # a 5 x 5 patch around the point's pixel
            d, k, factor = apply_depth_transforms(chain, depth, k0, mode)
            if mode == "depth":
                point = point * [1, 1, 1 / factor]  # the returned depth is metric / factor
            # a flipped image is the image of the mirrored scene (X -> -X, or Y -> -Y)
            for t in chain:
                if isinstance(t, T.HFlipTransform):
                    point = point * [-1, 1, 1]
                elif isinstance(t, T.VFlipTransform):
                    point = point * [1, -1, 1]
            u, v = k[0] * point[0] / point[2] + k[2], k[1] * point[1] / point[2] + k[3]
            pi, pj = int(np.floor(v)), int(np.floor(u))
            if not (0 <= pi < d.shape[0] and 0 <= pj < d.shape[1]):
                continue  # cropped away
            checked += 1
            assert np.isclose(d[pi, pj], point[2], rtol=1e-6), (chain, i, j)
            back = np.array(
                [(pj + 0.5 - k[2]) * d[pi, pj] / k[0], (pi + 0.5 - k[3]) * d[pi, pj] / k[1]]
            )
            # within the returned pixel's half-size
            assert np.all(np.abs(back - point[:2]) <= 0.5 * d[pi, pj] / k[:2] + 1e-6)
    assert checked > 60


def _write_pair(folder, depth, image=None, name="a"):
    h, w = depth.shape
    if image is None:
        image = np.zeros((h, w, 3), np.uint8)
    Image.fromarray(image).save(os.path.join(folder, f"{name}.png"))
    write_depth_png(os.path.join(folder, f"{name}_depth.png"), depth)
    return {
        "file_name": os.path.join(folder, f"{name}.png"),
        "depth_file_name": os.path.join(folder, f"{name}_depth.png"),
        "height": h,
        "width": w,
        "image_id": name,
    }


def test_mapper_output_with_fixed_transforms(tmp_path):
    depth = np.arange(1, 25, dtype=np.float32).reshape(4, 6) / 4
    depth[0, 0] = 0
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :, 0] = np.arange(6) * 40  # red grows to the right
    record = _write_pair(str(tmp_path), depth, image)
    mapper = DepthDatasetMapper(
        True,
        augmentations=[T.ResizeTransform(4, 6, 8, 12, Image.BILINEAR), T.HFlipTransform(12)],
        image_format="RGB",
        depth_scale=1000.0,
        intrinsics=(10, 10, 3, 2),
        resize_mode="intrinsics",
    )
    out = mapper(record)
    assert out["image"].shape == (3, 8, 12) and out["image"].dtype == torch.uint8
    assert out["image"][0, 0, 0] > out["image"][0, 0, -1]  # flipped: red now grows to the left
    assert out["depth"].shape == (8, 12) and out["depth"].dtype == torch.float32
    expected = np.repeat(np.repeat(depth, 2, 0), 2, 1)[:, ::-1]
    assert np.allclose(out["depth"].numpy(), expected, atol=5e-4)
    assert (out["depth"].numpy()[:2, -2:] == 0).all()  # the invalid pixel, flipped to the right
    assert out["intrinsics"].dtype == torch.float32
    assert np.allclose(out["intrinsics"].numpy(), [20, 20, 12 - 6, 4])
    assert (out["height"], out["width"]) == (4, 6)  # the original size
    assert out["file_name"] == record["file_name"] and out["image_id"] == "a"
    assert out["depth_file_name"] == record["depth_file_name"] and out["depth_factor"] == 1


def test_mapper_refuses_misaligned_depth(tmp_path):
    record = _write_pair(str(tmp_path), np.ones((4, 6), np.float32))
    write_depth_png(record["depth_file_name"], np.ones((4, 5), np.float32))
    mapper = DepthDatasetMapper(
        False, augmentations=[], image_format="RGB", depth_scale=1000.0, intrinsics=K
    )
    with pytest.raises(ValueError) as e:
        mapper(record)
    message = str(e.value)
    assert record["file_name"] in message and record["depth_file_name"] in message
    assert "5 x 4" in message and "6 x 4" in message
    with pytest.raises(ValueError, match="RESIZE_MODE"):
        DepthDatasetMapper(
            True,
            augmentations=[],
            image_format="RGB",
            depth_scale=1.0,
            intrinsics=K,
            resize_mode="nearest",
        )


def _depth_cfg(dataset="percep_shapes_depth_val"):
    cfg = get_cfg()
    add_percep_det_config(cfg)
    cfg.DATASETS.TRAIN = (dataset,)
    cfg.DATASETS.TEST = (dataset,)
    return cfg


def test_mapper_from_config_test_time_only_resizes(tmp_path):
    depth = np.random.default_rng(0).uniform(1, 5, (64, 64)).astype(np.float32)
    record = _write_pair(str(tmp_path), depth)
    cfg = _depth_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.MAX_SIZE_TEST = 1000
    cfg.INPUT.FORMAT = "RGB"
    mapper = DepthDatasetMapper(cfg, is_train=False)
    out = mapper(record)
    assert out["image"].shape == (3, 128, 128) and out["depth"].shape == (128, 128)
    # RESIZE_MODE "depth" (default): focal kept, depth halved, principal point follows the pixels
    assert cfg.INPUT.DEPTH.RESIZE_MODE == "depth"
    assert np.allclose(out["intrinsics"].numpy(), [128, 128, 128, 128])
    assert out["depth_factor"] == 2
    assert np.allclose(out["depth"].numpy()[::2, ::2] * 2, depth, atol=5e-4)
    # a record without depth is fine at test time, not in training
    no_depth = {k: v for k, v in record.items() if k != "depth_file_name"}
    assert "depth" not in mapper(no_depth)
    cfg.INPUT.DEPTH.RESIZE_MODE = "intrinsics"
    out = DepthDatasetMapper(cfg, is_train=False)(record)
    assert np.allclose(out["intrinsics"].numpy(), [256, 256, 128, 128])
    assert out["depth_factor"] == 1
    with pytest.raises(KeyError, match="depth_file_name"):
        DepthDatasetMapper(cfg, is_train=True)(no_depth)


def test_mapper_from_config_training_keeps_image_and_depth_aligned(tmp_path):
    # blocks of 8 x 8 pixels whose red value encodes the block's depth
    rng = np.random.default_rng(1)
    blocks = rng.integers(1, 25, (6, 8))
    depth = np.kron(blocks, np.ones((8, 8))).astype(np.float32) / 4  # (48, 64) metres
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :, 0] = np.kron(blocks * 10, np.ones((8, 8), np.int64))
    record = _write_pair(str(tmp_path), depth, image)
    cfg = _depth_cfg()
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TRAIN = (72, 96)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = [40, 56]
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.INPUT.DEPTH.RESIZE_MODE = "intrinsics"
    mapper = DepthDatasetMapper(cfg, is_train=True)
    kinds = [type(a).__name__ for a in mapper.augmentations.augs]
    assert kinds == ["ResizeShortestEdge", "RandomCrop", "RandomFlip"]  # crop after the resize
    for _ in range(10):
        out = mapper(record)
        assert out["image"].shape == (3, 40, 56) and out["depth"].shape == (40, 56)
        red = out["image"][0].numpy().astype(np.float32)
        d = out["depth"].numpy()
        # block interiors: pixels whose 3 x 3 neighbourhood is constant (bilinear edges are mixed)
        inside = np.zeros(red.shape, bool)
        inside[1:-1, 1:-1] = True
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                inside[1:-1, 1:-1] &= (
                    red[1 + dy : red.shape[0] - 1 + dy, 1 + dx : red.shape[1] - 1 + dx]
                    == red[1:-1, 1:-1]
                )
        assert inside.mean() > 0.3
        assert np.allclose(red[inside] / 10, d[inside] * 4, atol=0.01)
        fx, fy, cx, cy = out["intrinsics"].numpy()
        s = fx / 128  # percep_shapes_depth_val's camera: (128, 128, 64, 64)
        assert s in (72 / 48, 96 / 48) and np.isclose(fy, fx)
        assert -64 * s < cx < 64 * s + 56 and -64 * s < cy < 64 * s + 40


def test_mapper_from_config_needs_depth_metadata():
    cfg = _depth_cfg("percep_shapes_val")  # an instance dataset: no intrinsics
    with pytest.raises(KeyError, match="percep_shapes_val"):
        DepthDatasetMapper(cfg, is_train=True)
    cfg = _depth_cfg()
    cfg.DATASETS.TRAIN = ("percep_shapes_depth_val", "nyu_v2_depth_official_train")
    with pytest.raises(ValueError, match="differ"):
        DepthDatasetMapper(cfg, is_train=True)


def test_check_datasets_names_the_nyu_path_and_how_to_prepare(tmp_path, monkeypatch):
    from percep_det.config import get_percep_cfg
    from percep_det.engine import check_datasets

    cfg = get_percep_cfg(os.path.join(ROOT, "configs/DepthEstimation/depth_R50_wce_30ep_nyuv2.yaml"))
    with pytest.raises(FileNotFoundError, match="nyu_depth_v2.*DETECTRON2_DATASETS.*prepare_nyu_v2.py"):
        check_datasets(cfg)
