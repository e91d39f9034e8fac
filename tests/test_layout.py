"""The package's dependency directions: the perceptual core and the frozen-model holder know no
task, data knows no modeling, nothing imports tools/."""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "percep_det")
TASKS = ("condinst", "mask_rcnn", "semantic_seg", "depth")


def _imports(path):
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = os.path.relpath(os.path.dirname(path), os.path.dirname(PKG)).replace(os.sep, ".")
    names = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names += [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    return names


def _files(*parts):
    root = os.path.join(PKG, *parts)
    if os.path.isfile(root):
        return [root]
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".py")]


@pytest.mark.parametrize("part", [("modeling", "perceptual"), ("modeling", "frozen.py")])
def test_the_core_imports_no_task(part):
    for path in _files(*part):
        bad = [n for n in _imports(path) if any(f"modeling.{t}" in n for t in TASKS)]
        assert not bad, f"{path} imports task code {bad}"


def test_data_imports_no_modeling_and_nothing_imports_tools():
    for path in _files("data"):
        bad = [n for n in _imports(path) if "percep_det.modeling" in n]
        assert not bad, f"{path} imports {bad}"
    for path in _files():
        bad = [n for n in _imports(path) if n == "tools" or n.startswith("tools.")]
        assert not bad, f"{path} imports {bad}"
