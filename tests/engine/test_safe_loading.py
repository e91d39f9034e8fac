"""Weights and configs from untrusted files: nothing in them runs, errors name the file.

A payload is a pickled object whose ``__reduce__`` asks for ``exec`` of code that writes a marker
file: every test asserts that the marker was never written.
"""
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from percep_det.config import get_percep_cfg
from percep_det.engine import CorruptFileError, PercepCheckpointer, UnsafeFileError
from percep_det.modeling.frozen import build_frozen_model, load_frozen_config, load_weights_strict
from tests.helpers import tiny_condinst_cfg

TEACHER_KEY = "MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS"


class Payload:
    """Unpickling this runs ``exec(code)``: with a full unpickler, it writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


class Note:
    """A harmless custom class: refused by default, loaded with PERCEP_DET_TRUSTED_FILES=1."""

    def __init__(self, text="hi"):
        self.text = text


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _pickle(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload_ran"
    yield path
    assert not path.exists(), "the payload ran"


@pytest.fixture(autouse=True)
def untrusted(monkeypatch):
    monkeypatch.delenv("PERCEP_DET_TRUSTED_FILES", raising=False)


def test_pkl_payload_as_model_weights_is_refused(tmp_path, marker):
    weights = _pickle(
        tmp_path / "evil.pkl", {"model": {}, "__author__": Payload(marker)}, protocol=2
    )
    with pytest.raises(UnsafeFileError) as e:
        PercepCheckpointer(Tiny()).load(weights)
    message = str(e.value)
    assert weights in message and "__builtin__.exec" in message  # (protocol 2's name)
    assert "PERCEP_DET_TRUSTED_FILES=1" in message


def test_pkl_payload_as_teacher_weights_is_refused(tmp_path, marker):
    weights = _pickle(tmp_path / "teacher.pkl", {"blobs": {"conv.weight": Payload(marker)}})
    with pytest.raises(UnsafeFileError, match=f"{TEACHER_KEY}: {weights}.*builtins.exec"):
        load_weights_strict(Tiny(), weights, TEACHER_KEY)
    # the teachers' builder (build_frozen_model) loads through the same code
    cfg = tiny_condinst_cfg()
    with pytest.raises(UnsafeFileError, match="builtins.exec"):
        build_frozen_model(cfg, weights, TEACHER_KEY)


def test_pth_payload_is_refused(tmp_path, marker):
    weights = str(tmp_path / "evil.pth")
    torch.save({"model": {}, "extra": Payload(marker)}, weights)
    with pytest.raises(UnsafeFileError, match="'exec'") as e:
        PercepCheckpointer(Tiny()).load(weights)
    assert weights in str(e.value) and "PERCEP_DET_TRUSTED_FILES=1" in str(e.value)
    assert "weights_only=False" not in str(e.value)  # no advice to load it unsafely


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_detectron2_pkl_still_loads(tmp_path, protocol):
    """A detectron2 model-zoo ``.pkl`` ({"model": numpy arrays, "__author__", ...}) loads as
    before, strictly (every key matched), through the checkpointer and the teachers' loader."""
    torch.manual_seed(0)
    src = Tiny()
    arrays = OrderedDict((k, v.numpy()) for k, v in src.state_dict().items())
    data = {"model": arrays, "__author__": "x", "matching_heuristics": True}
    weights = _pickle(tmp_path / "model.pkl", data, protocol=protocol)

    dst = Tiny()
    PercepCheckpointer(dst).load(weights)
    for key, value in _weights(src).items():
        assert torch.equal(dst.state_dict()[key], value), key
    load_weights_strict(Tiny(), weights)  # no missing / unexpected keys either


def test_caffe2_blobs_pkl_with_numpy_scalars_loads(tmp_path):
    blobs = {"conv.weight": np.ones((4, 3, 3, 3), np.float32), "conv.bias": np.zeros(4, np.float32)}
    blobs["conv.weight_momentum"] = np.zeros(1)  # dropped, as detectron2 does
    weights = _pickle(tmp_path / "c2.pkl", {"blobs": blobs, "lr": np.float32(0.1)}, protocol=2)
    model = nn.Module()
    model.conv = nn.Conv2d(3, 4, 3)
    PercepCheckpointer(model).load(weights)
    assert torch.equal(model.conv.weight, torch.ones(4, 3, 3, 3))


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_empty_file_is_named(tmp_path, suffix):
    weights = tmp_path / f"model{suffix}"
    weights.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="is empty") as e:
        PercepCheckpointer(Tiny()).load(str(weights))
    assert str(weights) in str(e.value)


def test_random_bytes_pth_is_named_as_corrupt(tmp_path):
    weights = tmp_path / "model.pth"
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CorruptFileError, match="not a readable torch file") as e:
        PercepCheckpointer(Tiny()).load(str(weights))
    assert str(weights) in str(e.value)
    assert "weights_only=False" not in str(e.value)


def test_truncated_pth_is_named_as_corrupt(tmp_path):
    weights = tmp_path / "model.pth"
    torch.save({"model": Tiny().state_dict()}, weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match="truncated") as e:
        load_weights_strict(Tiny(), str(weights), TEACHER_KEY)
    assert str(weights) in str(e.value) and TEACHER_KEY in str(e.value)


def test_trusted_files_opt_out(tmp_path, monkeypatch):
    weights = str(tmp_path / "note.pth")
    torch.save({"model": Tiny().state_dict(), "note": Note()}, weights)
    with pytest.raises(UnsafeFileError, match="Note"):
        PercepCheckpointer(Tiny()).load(weights)
    monkeypatch.setenv("PERCEP_DET_TRUSTED_FILES", "1")
    extra = PercepCheckpointer(Tiny()).load(weights)
    assert extra["note"].text == "hi"


# ------------------------------------------------------------------------------------------------
# YAML configs
# ------------------------------------------------------------------------------------------------
def _evil_yaml(path, marker):
    path.write_text(f'MODEL:\n  WEIGHTS: !!python/object/apply:os.system ["echo ran > {marker}"]\n')
    return str(path)


def test_yaml_python_tag_is_refused(tmp_path, marker):
    config = _evil_yaml(tmp_path / "evil.yaml", marker)
    with pytest.raises(UnsafeFileError, match="python/object/apply:os.system") as e:
        get_percep_cfg(config)
    assert config in str(e.value) and "PERCEP_DET_TRUSTED_FILES=1" in str(e.value)


def test_yaml_python_tag_in_a_base_is_refused(tmp_path, marker):
    base = _evil_yaml(tmp_path / "base.yaml", marker)
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.1\n")
    with pytest.raises(UnsafeFileError, match="python/object") as e:
        get_percep_cfg(str(child))
    assert base in str(e.value) and str(child) in str(e.value)


def test_teacher_config_with_python_tag_is_refused(tmp_path, marker):
    config = _evil_yaml(tmp_path / "teacher.yaml", marker)
    key = "MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE"
    with pytest.raises(UnsafeFileError, match=f"{key}: {config}"):
        load_frozen_config(config, key)
