"""Dataset checks (percep_det/data/checks.py, engine.check_dataset_contents) on malformed variants
of a tiny COCO dataset (3 generated scenes), folder datasets (DATASETS.CUSTOM), the cache, the
skip policy, NUM_CLASSES, and decode errors that name the file."""

import json
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from PIL import Image

import percep_det  # noqa: F401
from percep_det.config import get_percep_cfg
from percep_det.data import (
    CheckSettings,
    DatasetCheckError,
    NameFilesOnError,
    ShapesSpec,
    check_dataset,
    generate_split,
    parse_custom_dataset,
    register_custom_dataset,
)
from percep_det.engine import check_dataset_contents, check_datasets
from percep_det.engine.resume import PositionSeededDataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONDINST = os.path.join(ROOT, "configs", "quick_schedules", "condinst_R18_shapes_cpu.yaml")
SEMSEG = os.path.join(ROOT, "configs", "quick_schedules", "semseg_psp_R18_shapes_cpu.yaml")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """3 generated scenes: images/, semantic/, depth/, annotations.json (ids 1..3)."""
    out = str(tmp_path_factory.mktemp("checks") / "base")
    generate_split(out, "val", ShapesSpec(num_images=3), seed=0)
    return out


def _copy(base, tmp_path):
    out = str(tmp_path / "data")
    shutil.copytree(base, out)
    with open(os.path.join(out, "annotations.json")) as f:
        return out, json.load(f)


def _write(root, data):
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump(data, f)


def _register(name, root):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(
        name, {}, os.path.join(root, "annotations.json"), os.path.join(root, "images")
    )
    return name


def _ann(data, image_id=2, k=0):
    """The k-th annotation of an image (image id 2: '000001.png', the middle one)."""
    return [a for a in data["annotations"] if a["image_id"] == image_id][k]


# Changes of the json data: each returns the id of the annotation it broke (None: no annotation).


def _set(key, value):
    def change(data):
        _ann(data)[key] = value
        return _ann(data)["id"]

    return change


def _delete(key):
    def change(data):
        del _ann(data)[key]
        return _ann(data).get("id")

    return change


def _set_image(index, key, value):
    def change(data):
        if value is None:
            del data["images"][index][key]
        else:
            data["images"][index][key] = value

    return change


def _set_top(key, value):
    def change(data):
        data[key] = value

    return change


def _null_annotation(data):
    data["annotations"][0] = None


def _xyxy(data):
    a = _ann(data)
    x, y, w, h = a["bbox"]
    a["bbox"] = [x, y, x + w, y + h]
    return a["id"]


def _far_box(data):
    a = _ann(data)
    a["bbox"] = [5.0, 5.0, 20.0, 20.0]
    a["segmentation"] = [[90, 90, 120, 90, 120, 120, 90, 120]]
    return a["id"]


def _rle_size(data):
    _ann(data)["segmentation"]["size"] = [64, 64]
    return _ann(data)["id"]


# Changes of the files.


def _truncate_image(root):
    path = os.path.join(root, "images", "000001.png")
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])


def _sixteen_bit(root):
    path = os.path.join(root, "images", "000001.png")
    gray = np.asarray(Image.open(path).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(path)  # mode I;16, same size


def _remove_image(root):
    os.remove(os.path.join(root, "images", "000001.png"))


def _json_text(change):
    def apply(root):
        path = os.path.join(root, "annotations.json")
        text = open(path, encoding="utf-8").read()
        open(path, "wb").write(change(text))

    return apply


# (variant, change, text the messages must contain, whether ``change`` takes the data's folder
# instead of the json data)
VARIANTS = [
    ("missing_image_width", _set_image(1, "width", None), ["image id 2", "'width'"], False),
    ("missing_annotation_id", _delete("id"), ["annotations[", "image id 2", "no 'id'"], False),
    ("missing_bbox", _delete("bbox"), ["no 'bbox'"], False),
    ("missing_category_id", _delete("category_id"), ["no 'category_id'"], False),
    ("unknown_category_id", _set("category_id", 99), ["category_id 99"], False),
    ("null_annotation_entry", _null_annotation, ["annotations[0]"], False),
    (
        "duplicate_image_id",
        _set_image(2, "id", 2),
        ["image id 2 ('000001.png')", "image id 2 ('000002.png')", "used by 2 images"],
        False,
    ),
    ("string_iscrowd", _set("iscrowd", "0"), ["iscrowd is '0' (str)"], False),
    ("xyxy_box", _xyxy, ["[x, y, width, height]"], False),
    ("box_far_from_mask", _far_box, ["IoU 0.00"], False),
    ("nan_box", _set("bbox", [float("nan"), 3.0, 10.0, 10.0]), ["NaN"], False),
    ("zero_size_box", _set("bbox", [0, 0, 0, 0]), ["zero or negative size"], False),
    ("box_outside", _set("bbox", [500.0, 500.0, 10.0, 10.0]), ["extends beyond"], False),
    (
        "polygon_outside",
        _set("segmentation", [[200, 200, 300, 200, 300, 300]]),
        ["polygon 0 spans", "outside the 128 x 128 image"],
        False,
    ),
    ("short_polygon", _set("segmentation", [[10, 10, 20, 20]]), ["4 coordinates"], False),
    ("rle_size_mismatch", _rle_size, ["RLE size [64, 64]"], False),
    (
        "rle_bad_counts",
        _set("segmentation", {"size": [128, 128], "counts": [10, 20]}),
        ["sum to 30"],
        False,
    ),
    ("missing_area", _delete("area"), ["'area'"], False),
    ("wrong_image_size", _set_image(1, "width", 100), ["000001.png", "says width 100"], False),
    ("truncated_png", _truncate_image, ["000001.png", "is truncated"], True),
    ("sixteen_bit_png", _sixteen_bit, ["000001.png", "16/32-bit"], True),
    ("missing_file", _remove_image, ["000001.png", "does not exist"], True),
]
# problems of the whole json file
FATAL_VARIANTS = [
    ("null_annotations", _set_top("annotations", None), ["'annotations' is None"], False),
    ("empty_categories", _set_top("categories", []), ["'categories' is []"], False),
    ("bom", _json_text(lambda t: b"\xef\xbb\xbf" + t.encode()), ["byte order mark"], True),
    ("truncated_json", _json_text(lambda t: t[: len(t) // 2].encode()), ["truncated"], True),
]


def _make_variant(base, tmp_path, change, files):
    """A copy of ``base`` changed by ``change(root)`` (``files``) or ``change(json data)``;
    returns its folder and the id of the annotation it broke (or None)."""
    root, data = _copy(base, tmp_path)
    if files:
        change(root)
        return root, None
    ann_id = change(data)
    _write(root, data)
    return root, ann_id


@pytest.mark.parametrize("variant,change,expected,files", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_bad_entry_is_named(base, tmp_path, variant, change, expected, files):
    root, ann_id = _make_variant(base, tmp_path, change, files)
    name = _register(f"check_entry_{[v[0] for v in VARIANTS].index(variant)}", root)
    report = check_dataset(name, use_cache=False)
    assert report.problems, f"{variant}: no problem found"
    json_file = os.path.join(root, "annotations.json")
    for problem in report.problems:
        assert not problem.fatal, problem.message
        # every message names the json file or the image file, and the entry
        assert json_file in problem.message or root in problem.message, problem.message
        assert problem.record is not None or problem.kind in ("annotation", "image_id")
    text = "\n".join(p.message for p in report.problems).replace(root, "<root>")
    for part in expected:
        assert part in text, f"{variant}: '{part}' not in:\n{text}"
    if ann_id is not None:
        assert f"annotation id {ann_id} (image id 2, '000001.png')" in text, text


@pytest.mark.parametrize(
    "variant,change,expected,files", FATAL_VARIANTS, ids=[v[0] for v in FATAL_VARIANTS]
)
def test_bad_json_file_is_fatal(base, tmp_path, variant, change, expected, files):
    root, _ = _make_variant(base, tmp_path, change, files)
    name = _register(f"check_file_{[v[0] for v in FATAL_VARIANTS].index(variant)}", root)
    report = check_dataset(name, use_cache=False)
    assert [p.fatal for p in report.problems] == [True]
    message = report.problems[0].message
    assert os.path.join(root, "annotations.json") in message and f"dataset '{name}'" in message
    message = message.replace(root, "<root>")
    for part in expected:
        assert part in message, message
    # a whole-file problem stops the run under "skip" too
    cfg = _cfg(CONDINST, name, tmp_path, policy="skip")
    with pytest.raises(DatasetCheckError, match="1 problem .*\n.*annotations.json"):
        check_dataset_contents(cfg, train=True)


def test_clean_dataset_has_no_problem(base):
    report = check_dataset(_register("check_clean", base), use_cache=False)
    assert report.problems == [] and report.num_images == 3 and report.num_categories == 4


def _cfg(config, name, out, policy="stop", opts=()):
    names = f"('{name}',)"
    cfg = get_percep_cfg(
        config,
        ["DATASETS.TRAIN", names, "DATASETS.TEST", names, "OUTPUT_DIR", str(out)]
        + ["DATASETS.CHECK.POLICY", policy, *opts],
    )
    cfg.freeze()
    return cfg


def test_stop_lists_problems_and_skip_drops_the_images(base, tmp_path):
    root, data = _copy(base, tmp_path)
    _ann(data)["iscrowd"] = "0"  # image 2
    data["annotations"].append(dict(_ann(data, 3), id=999, bbox=[0, 0, 0, 0]))  # image 3
    _write(root, data)
    name = _register("check_skip", root)
    with pytest.raises(DatasetCheckError) as e:
        check_dataset_contents(_cfg(CONDINST, name, tmp_path / "stop"), train=True)
    assert "2 problems in 2 of 3 images" in str(e.value) and "annotation id 999" in str(e.value)
    assert "DATASETS.CHECK.POLICY skip" in str(e.value)
    assert os.path.isfile(tmp_path / "stop" / f"bad_entries_{name}.json")

    out = tmp_path / "skip"
    check_dataset_contents(_cfg(CONDINST, name, out, policy="skip"), train=True)
    records = DatasetCatalog.get(name)  # what the training and test loaders read
    assert [r["image_id"] for r in records] == [1]
    with open(out / f"bad_entries_{name}.json") as f:
        listing = json.load(f)
    assert listing["num_bad_images"] == 2 and len(listing["problems"]) == 2
    # COCOEvaluator reads the filtered json (image 1 and its annotations only)
    with open(MetadataCatalog.get(name).json_file) as f:
        filtered = json.load(f)
    assert [i["id"] for i in filtered["images"]] == [1]
    assert {a["image_id"] for a in filtered["annotations"]} == {1}
    # a second check (train_net builds the config twice) uses the cache and the original data
    reports = check_dataset_contents(_cfg(CONDINST, name, out, policy="skip"), train=True)
    assert reports[name].from_cache and len(DatasetCatalog.get(name)) == 1


def test_cache_skips_the_second_check(base, tmp_path):
    root, _ = _copy(base, tmp_path)
    name = _register("check_cache", root)
    first = check_dataset_contents(_cfg(CONDINST, name, tmp_path), train=True)[name]
    second = check_dataset_contents(_cfg(CONDINST, name, tmp_path), train=True)[name]
    assert not first.from_cache and second.from_cache
    assert second.fingerprint == first.fingerprint and second.num_images == 3
    # other data (json changed) is checked again
    data = json.load(open(os.path.join(root, "annotations.json")))
    _ann(data)["bbox"] = [0, 0, 0, 0]
    _write(root, data)
    os.utime(os.path.join(root, "annotations.json"), ns=(1, 1))
    with pytest.raises(DatasetCheckError, match="zero or negative size"):
        check_dataset_contents(_cfg(CONDINST, name, tmp_path), train=True)


@pytest.mark.parametrize(
    "config,opts,key",
    [
        (CONDINST, ["MODEL.FCOS.NUM_CLASSES", "2"], "MODEL.FCOS.NUM_CLASSES"),
        (
            os.path.join(ROOT, "configs", "quick_schedules", "mask_rcnn_R18_shapes_cpu.yaml"),
            ["MODEL.ROI_HEADS.NUM_CLASSES", "2"],
            "MODEL.ROI_HEADS.NUM_CLASSES",
        ),
    ],
)
def test_num_classes_too_small_names_both_numbers(base, tmp_path, config, opts, key):
    name = _register("check_num_classes", base)
    for policy in ("stop", "skip"):
        with pytest.raises(DatasetCheckError, match=f"has 4 categories but {key} is 2.*{key} 4"):
            check_dataset_contents(_cfg(config, name, tmp_path, policy, opts), train=False)
    # the built-in (generated, not checked) datasets too: from their metadata
    with pytest.raises(DatasetCheckError, match=f"percep_shapes_val' has 4 categories but {key}"):
        check_dataset_contents(_cfg(config, "percep_shapes_val", tmp_path, "stop", opts), False)


def test_folder_datasets(base, tmp_path):
    """DATASETS.CUSTOM semantic and depth datasets: label and depth files paired by stem."""
    root, _ = _copy(base, tmp_path)
    os.remove(os.path.join(root, "semantic", "000000.png"))  # image id '000000'
    Image.fromarray(np.full((64, 64), 1, np.uint8)).save(
        os.path.join(root, "semantic", "000001.png")
    )
    label = np.asarray(Image.open(os.path.join(root, "semantic", "000002.png"))).copy()
    label[0, 0] = 7  # > NUM_CLASSES 5
    Image.fromarray(label).save(os.path.join(root, "semantic", "000002.png"))
    sem = register_custom_dataset(
        f"check_sem:sem_seg:{root}/images:{root}/semantic:classes=a,b,c,d,e"
    )
    report = check_dataset(sem, CheckSettings(), use_cache=False)
    text = "\n".join(p.message for p in report.problems)
    assert "image id '000000'" in text and "semantic/000000.png' does not exist" in text
    assert "semantic/000001.png' is 64 x 64" in text
    with pytest.raises(
        DatasetCheckError, match=r"label value 7 in '.*000002.png'.*NUM_CLASSES = 5"
    ):
        check_dataset_contents(_cfg(SEMSEG, sem, tmp_path, "skip"), train=True)
    # with a model of 8 classes: the two images with bad labels are skipped
    cfg = _cfg(SEMSEG, sem, tmp_path, "skip", ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "8"])
    check_dataset_contents(cfg, train=True)
    assert [r["image_id"] for r in DatasetCatalog.get(sem)] == ["000002"]

    Image.fromarray(np.zeros((128, 128), np.uint8)).save(os.path.join(root, "depth", "000001.png"))
    os.remove(os.path.join(root, "depth", "000002.png"))
    depth = register_custom_dataset(
        f"check_depth:depth:{root}/images:{root}/depth:intrinsics=128,128,64,64:max_depth=12"
    )
    assert MetadataCatalog.get(depth).intrinsics == (128.0, 128.0, 64.0, 64.0)
    report = check_dataset(depth, CheckSettings(), use_cache=False)
    text = "\n".join(p.message for p in report.problems)
    assert "depth/000001.png' cannot be read as depth" in text and "'L' image" in text
    assert "depth/000002.png' does not exist" in text
    assert len(report.problems) == 2


def test_custom_entries_are_validated():
    spec = parse_custom_dataset("mine:coco:/d/train.json:/d/images")
    assert spec.kind == "coco" and spec.paths == ("/d/train.json", "/d/images")
    for bad, match in [
        ("mine:coco:/d/train.json", "3 ':'-separated fields"),
        ("mine:voc:/a:/b", "kind 'voc'"),
        ("mine:depth:/a:/b", "intrinsics"),
        ("mine:coco:/a:/b:classes=x", "'classes=x' is not a key=value option of a coco dataset"),
    ]:
        with pytest.raises(ValueError, match=match):
            register_custom_dataset(bad)
    with pytest.raises(ValueError, match="registered already"):
        register_custom_dataset("percep_shapes_val:coco:/a:/b")
    # a wrong path names the entry, not DETECTRON2_DATASETS
    name = register_custom_dataset("check_nowhere:coco:/nowhere/train.json:/nowhere/images")
    assert register_custom_dataset("check_nowhere:coco:/nowhere/train.json:/nowhere/images") == name
    with pytest.raises(FileNotFoundError, match="image_root '/nowhere/images' .*DATASETS.CUSTOM"):
        check_datasets(_cfg(CONDINST, name, "/tmp"))


def test_decode_errors_name_the_file(base, tmp_path):
    root, _ = _copy(base, tmp_path)
    _truncate_image(root)
    name = _register("check_decode", root)
    cfg = _cfg(CONDINST, name, tmp_path, policy="off")
    record = DatasetCatalog.get(name)[1]
    with pytest.raises(OSError, match=r"image id 2 \(file_name '.*000001.png'\).*truncated"):
        NameFilesOnError(DatasetMapper(cfg, False))(record)
    dataset = PositionSeededDataset([record], DatasetMapper(cfg, True), seed=0)
    with pytest.raises(OSError, match="000001.png"):
        dataset[(0, 0)]
