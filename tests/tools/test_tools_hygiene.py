"""Every script in tools/ imports percep_det as installed (``pip install -e .``): none edits
``sys.path``, and each one's ``--help`` runs from outside the checkout."""

import ast
import glob
import json
import os
import subprocess
import sys
from typing import Dict, List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = sorted(glob.glob(os.path.join(ROOT, "tools", "*.py")))
TOOL_NAMES = [os.path.basename(path) for path in TOOLS]

# Runs each tool as ``python tools/<name> --help`` would (``__main__``, sys.path[0] = tools/), all
# in one interpreter so that torch and detectron2 are imported once; prints {name: [exit code,
# stdout]} as JSON.
HELP_DRIVER = """
import contextlib, io, json, runpy, sys
results = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    sys.path[0] = path.rsplit("/", 1)[0]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    results[path.rsplit("/", 1)[1]] = [code, out.getvalue()]
print(json.dumps(results))
"""


def _sys_path_edits(path: str) -> List[str]:
    """``line: code`` of every statement in ``path`` that changes ``sys.path``."""
    with open(path) as f:
        source = f.read()
    edits = []
    for node in ast.walk(ast.parse(source, filename=path)):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value  # sys.path.insert(...), .append, .extend, ...
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [t.value if isinstance(t, ast.Subscript) else t for t in targets]
            target = next((t for t in targets if ast.unparse(t) == "sys.path"), None)
        if target is not None and ast.unparse(target) == "sys.path":
            edits.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(edits, key=lambda e: int(e.split(":")[0]))


def test_tools_found():
    assert "train_net.py" in TOOL_NAMES and len(TOOLS) > 3


@pytest.mark.parametrize("path", TOOLS, ids=TOOL_NAMES)
def test_no_sys_path_edits(path):
    assert _sys_path_edits(path) == [], f"{path} edits sys.path; percep_det is installed"


def test_sys_path_check_finds_edits(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sys\nsys.path.insert(0, 'x')\nsys.path.append('y')\nsys.path += ['z']\n"
        "sys.path = ['w']\nsys.path[0] = 'v'\nprint(sys.path)\n"
    )
    assert [e.split(":")[0] for e in _sys_path_edits(str(bad))] == ["2", "3", "4", "5", "6"]


@pytest.fixture(scope="module")
def help_results(tmp_path_factory) -> Dict[str, list]:
    cwd = tmp_path_factory.mktemp("elsewhere")  # outside the checkout: percep_det as installed
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", HELP_DRIVER, *TOOLS],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_help_runs(help_results, name):
    code, out = help_results[name]
    assert code == 0, f"tools/{name} --help exited with {code}"
    assert "usage:" in out, out
