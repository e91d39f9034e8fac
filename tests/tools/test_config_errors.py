"""Config mistakes give messages that name the file or the key: an empty YAML, a Python
LazyConfig, broken YAML, a missing _BASE_, MODEL.CONDINST.MASK_OUT_STRIDE 0; and train_net's
--help does not advertise LazyConfig files."""
import os
import sys

import pytest
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

from percep_det.config import get_percep_cfg
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "configs", "quick_schedules", "condinst_R18_shapes_cpu.yaml")


@pytest.fixture(scope="module")
def train_net():
    module = load_script(os.path.join(ROOT, "tools", "train_net.py"), "percep_train_net_config_errors")
    return module


def _build_cfg(train_net, config_file, *opts):
    args = default_argument_parser().parse_args(["--config-file", str(config_file), *opts])
    return train_net.build_cfg(args)


def test_empty_yaml_is_named(train_net, tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("# nothing but a comment\n")
    with pytest.raises(ValueError, match=f"{config} is empty"):
        _build_cfg(train_net, config)


def test_python_lazy_config_is_refused(train_net, tmp_path):
    config = tmp_path / "lazy.py"
    config.write_text("from detectron2.config import LazyCall as L\nmodel = dict()\n")
    with pytest.raises(ValueError, match=f"{config} is a Python \\(LazyConfig\\).*yacs YAML"):
        _build_cfg(train_net, config)


def test_invoke_main_prints_the_message_without_a_traceback(
    train_net, tmp_path, monkeypatch, capsys
):
    config = tmp_path / "lazy.py"
    config.write_text("model = dict()\n")
    monkeypatch.setattr(sys, "argv", ["train_net.py", "--config-file", str(config)])
    monkeypatch.delenv("PERCEP_DET_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "ERROR:" in err and str(config) in err and "configs/" in err


def test_help_tells_the_truth(train_net):
    text = train_net.argument_parser().format_help()
    assert "path.key=value" not in text  # detectron2's LazyConfig override syntax
    assert "yacs YAML" in text and "(.py) are not supported" in text
    assert "PERCEP_DET_TRUSTED_FILES" in text


def test_broken_yaml_and_missing_base_are_named(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("MODEL:\n  WEIGHTS: [unclosed\n")
    with pytest.raises(ValueError, match=f"{broken} is not valid YAML"):
        get_percep_cfg(str(broken))
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: missing_base.yaml\n")
    with pytest.raises(FileNotFoundError, match=f"{child}: its _BASE_ 'missing_base.yaml'"):
        get_percep_cfg(str(child))
    listing = tmp_path / "list.yaml"
    listing.write_text("- MODEL\n- SOLVER\n")
    with pytest.raises(ValueError, match=f"{listing} holds a YAML list"):
        get_percep_cfg(str(listing))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MODEL.CONDINST.MASK_OUT_STRIDE", "0", "MODEL.CONDINST.MASK_OUT_STRIDE must be"),
        ("MODEL.CONDINST.MASK_OUT_STRIDE", "3", "MODEL.CONDINST.MASK_OUT_STRIDE 3 must divide"),
        ("MODEL.FCOS.FPN_STRIDES", "[8, 16, 32, 64, 0]", "MODEL.FCOS.FPN_STRIDES must be"),
        ("MODEL.FCOS.SIZES_OF_INTEREST", "[64, 32, 128, 256]", "MODEL.FCOS.SIZES_OF_INTEREST"),
        ("MODEL.CONDINST.MASK_BRANCH.CHANNELS", "0", "MODEL.CONDINST.MASK_BRANCH.CHANNELS"),
        ("MODEL.CONDINST.MAX_PROPOSALS", "0", "MODEL.CONDINST.MAX_PROPOSALS must be"),
    ],
)
def test_bad_condinst_sizes_are_named_at_build_time(key, value, message):
    cfg = get_percep_cfg(QUICK, [key, value])
    with pytest.raises(ValueError, match=message):
        build_model(cfg)
