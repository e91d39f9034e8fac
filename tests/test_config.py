import glob
import os
import re

import pytest
from detectron2.config import get_cfg

import percep_det
from percep_det import add_percep_det_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# every detectron2 config; configs/studies/ holds specs of tools/study_loss_networks.py (tested there)
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    if os.sep + "studies" + os.sep not in p
)


def _flat_keys(node, prefix=""):
    for k, v in node.items():
        if hasattr(v, "items"):
            yield from _flat_keys(v, prefix + k + ".")
        else:
            yield prefix + k


def _added_keys():
    """Keys percep_det defines (not detectron2's own: DeepLab's are added by its function)."""
    from detectron2.projects.deeplab import add_deeplab_config

    base = get_cfg()
    add_deeplab_config(base)
    base = set(_flat_keys(base))
    cfg = get_cfg()
    add_percep_det_config(cfg)
    return sorted(set(_flat_keys(cfg)) - base)


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_every_config_merges(path):
    cfg = get_cfg()
    add_percep_det_config(cfg)
    cfg.merge_from_file(path)
    cfg.freeze()
    assert cfg.MODEL.META_ARCHITECTURE


def test_add_config_does_not_touch_global_defaults():
    from detectron2.config.defaults import _C

    before = set(_flat_keys(_C))
    cfg = get_cfg()
    add_percep_det_config(cfg)
    assert set(_flat_keys(_C)) == before
    assert len(_added_keys()) > 0


def test_every_added_key_is_read():
    """Each key add_percep_det_config defines is used outside config.py (no dead keys)."""
    pkg = os.path.dirname(percep_det.__file__)
    sources = []
    for path in glob.glob(os.path.join(pkg, "**", "*.py"), recursive=True):
        if os.path.basename(path) != "config.py":
            sources.append(open(path).read())
    for path in glob.glob(os.path.join(ROOT, "tools", "*.py")):
        sources.append(open(path).read())
    code = "\n".join(sources)
    unread = []
    for key in _added_keys():
        parts = key.split(".")
        # the leaf must be read, under its parent's name (cfg.A.B.LEAF or node = cfg.A.B; node.LEAF)
        if not re.search(r"\." + re.escape(parts[-1]) + r"\b", code) or not re.search(
            r"\b" + re.escape(parts[-2]) + r"\b", code
        ):
            unread.append(key)
    assert unread == [], f"keys defined in add_percep_det_config but never read: {unread}"
