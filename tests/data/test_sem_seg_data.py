"""Semantic-segmentation data: the embedded splits, VOC + SBD registration, dataset checks, palette
label detection and the converter scripts (CPU, files made in tmp_path)."""

import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

import percep_det  # noqa: F401
from percep_det.config import get_percep_cfg
from percep_det.data import (
    VOC_SEM_SEG_CLASSES,
    LabelFormatError,
    check_label_file,
    convert_palette_label,
    label_palette,
    register_voc_sem_seg,
)
from percep_det.data.builtin import SHAPES_SEM_SEG_SPLITS, SHAPES_SPLITS
from percep_det.engine import build_resumable_train_loader, check_datasets, check_sem_seg_labels
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES_CLASSES = ["background", "circle", "triangle", "rectangle", "star"]


def _load_script(name):
    path = os.path.join(ROOT, "datasets", name)
    module = load_script(path, name[:-3])
    return module


def _palette_png(path, indices):
    """Write (H, W) uint8 ``indices`` as a palette ('P') PNG with VOC's colours."""
    img = Image.frombytes("P", indices.shape[::-1], np.ascontiguousarray(indices).tobytes())
    img.putpalette([c for rgb in label_palette(256) for c in rgb])
    img.save(path)


def _labels(seed=0, shape=(12, 16)):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 21, size=shape).astype(np.uint8)
    indices[0, :4] = 255  # ignore pixels survive too
    return indices


# ---------------------------------------------------------------- embedded semantic splits


def test_shapes_sem_seg_records_and_metadata():
    records = DatasetCatalog.get("percep_shapes_sem_seg_val")
    instances = DatasetCatalog.get("percep_shapes_val")
    assert len(records) == len(instances) == 100
    assert [r["file_name"] for r in records] == [r["file_name"] for r in instances]
    for r in records[:5]:
        assert set(r) == {"file_name", "sem_seg_file_name", "height", "width", "image_id"}
        check_label_file(r["sem_seg_file_name"])  # single-channel 'L': no error
        label = np.asarray(Image.open(r["sem_seg_file_name"]))
        assert label.shape == (r["height"], r["width"]) and label.max() <= 4
    for name in ("percep_shapes_sem_seg_train", "percep_shapes_sem_seg_val"):
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == SHAPES_CLASSES and len(meta.stuff_colors) == 5
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    # the train split shares the 500 scenes of percep_shapes_train (not generated here)
    train_source = SHAPES_SEM_SEG_SPLITS["percep_shapes_sem_seg_train"]
    assert SHAPES_SPLITS[train_source][1].num_images == 500


def test_resumable_loader_keeps_sem_seg():
    cfg = get_percep_cfg()
    cfg.DATASETS.TRAIN = ("percep_shapes_sem_seg_val",)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (128,), 213
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS, cfg.SEED = 2, 0, 3
    loader = build_resumable_train_loader(cfg)  # DatasetMapper(cfg, True) by default
    records = loader.stream.dataset.dataset_dicts
    assert check_sem_seg_labels(records) == [records[0]["sem_seg_file_name"]]  # one folder
    by_file = {r["file_name"]: r for r in records}
    batch = next(iter(loader))
    assert len(batch) == 2
    for example in batch:
        assert "instances" not in example and example["sem_seg"].dtype == torch.long
        truth = np.asarray(Image.open(by_file[example["file_name"]]["sem_seg_file_name"]))
        assert torch.equal(example["sem_seg"], torch.from_numpy(truth.astype(np.int64)))


# ---------------------------------------------------------------- Pascal VOC + SBD


def _fake_voc(root, ids=("2007_000032", "2007_000039", "2008_000002")):
    """A VOC2012 tree with ``ids`` in train_aug.txt and the first one in val.txt."""
    voc = root / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, image_id in enumerate(ids):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{image_id}.jpg"
        )
        Image.fromarray(_labels(i)).save(voc / "SegmentationClassAug" / f"{image_id}.png")
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text(ids[0] + "\n")
    return voc


def test_voc_registration_reads_a_tiny_tree(tmp_path):
    voc = _fake_voc(tmp_path)
    register_voc_sem_seg("percep_test_voc_tiny_train", str(voc), "train_aug", expected=3)
    records = DatasetCatalog.get("percep_test_voc_tiny_train")
    assert [r["image_id"] for r in records] == ["2007_000032", "2007_000039", "2008_000002"]
    assert all(os.path.isfile(r["file_name"]) for r in records)
    assert records[1]["sem_seg_file_name"] == str(voc / "SegmentationClassAug" / "2007_000039.png")
    meta = MetadataCatalog.get("percep_test_voc_tiny_train")
    assert meta.stuff_classes == VOC_SEM_SEG_CLASSES and len(meta.stuff_classes) == 21
    assert meta.stuff_classes[15] == "person" and meta.stuff_colors[15] == (192, 128, 128)
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    # the built-in names are registered under $DETECTRON2_DATASETS with the standard lists
    for name, split in [
        ("percep_voc_2012_sem_seg_train_aug", "train_aug"),
        ("percep_voc_2012_sem_seg_val", "val"),
    ]:
        builtin = MetadataCatalog.get(name)
        assert builtin.list_file.endswith(
            os.path.join("VOC2012", "ImageSets", "Segmentation", f"{split}.txt")
        )
        assert builtin.stuff_classes == VOC_SEM_SEG_CLASSES


def test_voc_missing_list_file_or_image_is_named(tmp_path):
    voc = _fake_voc(tmp_path)
    register_voc_sem_seg("percep_test_voc_no_list", str(voc), "trainval")
    with pytest.raises(FileNotFoundError, match="DETECTRON2_DATASETS") as err:
        DatasetCatalog.get("percep_test_voc_no_list")
    assert str(voc / "ImageSets" / "Segmentation" / "trainval.txt") in str(err.value)
    os.remove(voc / "JPEGImages" / "2007_000039.jpg")
    register_voc_sem_seg("percep_test_voc_no_image", str(voc), "train_aug")
    with pytest.raises(FileNotFoundError, match="1 of the 3 files.*2007_000039.jpg"):
        DatasetCatalog.get("percep_test_voc_no_image")


# ---------------------------------------------------------------- check_datasets


def _cfg(*test_sets):
    cfg = get_percep_cfg()
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (), tuple(test_sets)
    return cfg


def test_check_datasets_names_missing_roots(tmp_path, monkeypatch):
    root = tmp_path / "nowhere"
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    register_voc_sem_seg("percep_voc_2012_sem_seg_percep_test", str(root / "VOC2012"), "val")
    with pytest.raises(FileNotFoundError) as err:
        check_datasets(_cfg("percep_voc_2012_sem_seg_percep_test"))
    message = str(err.value)
    assert "image_root" in message and str(root / "VOC2012" / "JPEGImages") in message
    assert "contains VOC2012/" in message and "DETECTRON2_DATASETS" in message
    assert "prepare_voc_sem_seg.py" in message
    # ADE20K-like metadata (as detectron2 registers it): the prepare script is named
    name = "ade20k_sem_seg_percep_test"
    DatasetCatalog.register(name, list)
    ade = root / "ADEChallengeData2016"
    MetadataCatalog.get(name).set(
        image_root=str(ade / "images" / "validation"),
        sem_seg_root=str(ade / "annotations_detectron2" / "validation"),
        evaluator_type="sem_seg",
    )
    with pytest.raises(FileNotFoundError, match="contains ADEChallengeData2016/.*prepare_ade20k"):
        check_datasets(_cfg(name))
    (ade / "images" / "validation").mkdir(parents=True)  # images there, labels not prepared
    with pytest.raises(FileNotFoundError, match="sem_seg_root .*annotations_detectron2"):
        check_datasets(_cfg(name))


def test_check_datasets_cityscapes_needs_train_ids(tmp_path, monkeypatch):
    root = tmp_path / "d2"
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    city = root / "cityscapes"
    name = "cityscapes_fine_sem_seg_percep_test"
    DatasetCatalog.register(name, list)
    MetadataCatalog.get(name).set(
        image_dir=str(city / "leftImg8bit" / "val"),
        gt_dir=str(city / "gtFine" / "val"),
        evaluator_type="cityscapes_sem_seg",
    )
    with pytest.raises(FileNotFoundError, match="contains cityscapes/"):
        check_datasets(_cfg(name))
    (city / "leftImg8bit" / "val" / "lindau").mkdir(parents=True)
    (city / "gtFine" / "val" / "lindau").mkdir(parents=True)
    (city / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png").touch()
    with pytest.raises(FileNotFoundError, match="labelTrainIds.*createTrainIdLabelImgs"):
        check_datasets(_cfg(name))
    (city / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png").touch()
    check_datasets(_cfg(name))


# ---------------------------------------------------------------- palette labels


def test_palette_label_is_detected_with_the_file_and_the_fix(tmp_path):
    indices = _labels()
    path = str(tmp_path / "labels" / "2007_000032.png")
    os.makedirs(os.path.dirname(path))
    _palette_png(path, indices)
    # what detectron2's DatasetMapper would read (convert("L")) is not the class indices
    assert not np.array_equal(np.asarray(Image.open(path).convert("L")), indices)
    assert np.array_equal(np.asarray(Image.open(path)), indices)  # SemSegEvaluator's reading
    with pytest.raises(LabelFormatError) as err:
        check_label_file(path)
    assert path in str(err.value) and "palette" in str(err.value)
    assert "convert_palette_labels.py" in str(err.value) and "Image.fromarray" in str(err.value)
    assert check_label_file(path, allow_palette=True) == "P"
    records = [{"file_name": "x.jpg"}, {"file_name": "a.jpg", "sem_seg_file_name": path}]
    with pytest.raises(LabelFormatError, match="2007_000032.png"):
        check_sem_seg_labels(records)
    rgb = str(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(LabelFormatError, match="rgb.png' is a 'RGB' image"):
        check_label_file(rgb, allow_palette=True)


def test_convert_palette_labels_script(tmp_path, capsys):
    src = tmp_path / "SegmentationClass"
    (src / "sub").mkdir(parents=True)
    _palette_png(str(src / "a.png"), _labels(1))
    _palette_png(str(src / "sub" / "b.png"), _labels(2))
    Image.fromarray(_labels(3)).save(src / "c.png")  # 'L' already
    script = _load_script("convert_palette_labels.py")
    out = tmp_path / "SegmentationClassL"
    assert script.main([str(src), "--out", str(out)]) == 0
    assert "2 palette labels converted, 1 already 'L'" in capsys.readouterr().out
    for rel, seed in [("a.png", 1), ("sub/b.png", 2), ("c.png", 3)]:
        converted = Image.open(out / rel)
        assert converted.mode == "L" and np.array_equal(np.asarray(converted), _labels(seed))
    assert Image.open(src / "a.png").mode == "P"  # --out leaves the source alone
    assert script.main([str(src)]) == 0  # in place
    assert Image.open(src / "a.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(src / "a.png")), _labels(1))
    assert not [f for f in os.listdir(src) if f.startswith(".convert_")]
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "rgb.png")
    assert script.main([str(src)]) == 2
    assert "rgb.png" in capsys.readouterr().err
    assert script.main([str(tmp_path / "missing")]) == 2
    assert convert_palette_label(str(src / "c.png"), str(src / "c.png")) is False


def test_prepare_voc_sem_seg_script(tmp_path):
    from scipy.io import savemat

    voc, sbd = tmp_path / "VOC2012", tmp_path / "sbd"
    (voc / "SegmentationClass").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (sbd / "cls").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("b\n")
    (sbd / "train.txt").write_text("a\nc\n")
    (sbd / "val.txt").write_text("d\nb\n")
    for seed, image_id in enumerate("abcd"):
        sbd_label = _labels(10 + seed)
        sbd_label[sbd_label == 255] = 0  # SBD has no border class
        savemat(str(sbd / "cls" / f"{image_id}.mat"), {"GTcls": {"Segmentation": sbd_label}})
    for seed, image_id in enumerate("ab"):
        _palette_png(str(voc / "SegmentationClass" / f"{image_id}.png"), _labels(seed))
    script = _load_script("prepare_voc_sem_seg.py")
    assert script.main(["--voc", str(voc), "--sbd", str(sbd)]) == 0
    lists = voc / "ImageSets" / "Segmentation"
    assert (lists / "train_aug.txt").read_text().split() == ["a", "c", "d"]  # VOC val held out
    out = voc / "SegmentationClassAug"
    for image_id, expected in [("a", _labels(0)), ("b", _labels(1)), ("c", None), ("d", None)]:
        label = Image.open(out / f"{image_id}.png")
        assert label.mode == "L"
        if expected is not None:  # VOC's official labels (with borders) win over SBD's
            assert np.array_equal(np.asarray(label), expected)
    sbd_c = _labels(12)
    sbd_c[sbd_c == 255] = 0
    assert np.array_equal(np.asarray(Image.open(out / "c.png")), sbd_c)
    assert script.main(["--voc", str(voc), "--sbd", str(tmp_path / "none")]) == 2
