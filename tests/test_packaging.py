"""setup.py declares what the package imports, and nothing it does not.

torch, torchvision and detectron2 are installed by tools/install_deps.sh (or are the user's own
builds) and are deliberately not declared; everything else that ``percep_det/`` imports is in
``install_requires``, what the tests import besides that is in the "dev" extra, and what the
datasets/ preparation scripts import is in the "datasets" extra.
"""
import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# installed outside setup.py, see its docstring
PLATFORM = {"torch", "torchvision", "detectron2"}
# import name -> distribution name, where they differ
DISTRIBUTION = {
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _setup_kwargs() -> dict:
    """install_requires and extras_require of setup.py, read without running it."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    )
    wanted = ("install_requires", "extras_require")
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in wanted}


def _names(requirements) -> set:
    return {_norm(Requirement(r).name) for r in requirements}


def _third_party_imports(*folders) -> dict:
    """{distribution name: files} of the third-party modules imported anywhere in the .py files
    of ``folders`` (function-level imports and ``pytest.importorskip("x")`` included)."""
    found = {}
    for folder in folders:
        for d, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in (f for f in files if f.endswith(".py")):
                path = os.path.join(d, f)
                for node in ast.walk(ast.parse(open(path).read())):
                    if isinstance(node, ast.Import):
                        modules = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        modules = [node.module]
                    elif (
                        isinstance(node, ast.Call)
                        and getattr(node.func, "attr", "") == "importorskip"
                        and node.args
                        and isinstance(node.args[0], ast.Constant)
                    ):
                        modules = [node.args[0].value]
                    else:
                        continue
                    for module in modules:
                        top = module.split(".")[0]
                        if top in sys.stdlib_module_names or top in ("percep_det", "tests"):
                            continue
                        name = _norm(DISTRIBUTION.get(top, top))
                        found.setdefault(name, set()).add(os.path.relpath(path, ROOT))
    return found


def test_the_package_imports_exactly_its_declared_dependencies():
    declared = _names(_setup_kwargs()["install_requires"])
    imported = _third_party_imports("percep_det")
    undeclared = {n: sorted(f)[:3] for n, f in imported.items() if n not in declared | PLATFORM}
    assert not undeclared, f"imported by percep_det/ but not in install_requires: {undeclared}"
    unused = declared - set(imported)
    assert not unused, f"in setup.py install_requires but never imported by percep_det/: {unused}"


def test_extras_cover_the_tests_and_the_dataset_scripts():
    kwargs = _setup_kwargs()
    base = _names(kwargs["install_requires"]) | PLATFORM
    for extra, folder in (("dev", "tests"), ("datasets", "datasets")):
        declared = _names(kwargs["extras_require"][extra])
        imported = _third_party_imports(folder)
        undeclared = {n: sorted(f)[:3] for n, f in imported.items() if n not in base | declared}
        assert not undeclared, f"not in setup.py or its extra {extra!r}: {undeclared}"
        unused = declared - set(imported)
        assert not unused, f"extra {extra!r} declares {unused}, which {folder}/ never imports"


def _requirement_closure(names) -> set:
    """Distribution names of ``names`` and of everything they require (installed, recursively;
    extras and other environments' requirements left out)."""
    todo, seen = [_norm(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen


def test_import_loads_only_declared_distributions():
    """The top-level modules that ``import percep_det`` loads from site-packages belong to
    declared distributions, the platform's, or their own dependencies."""
    code = (
        "import json, os, sys, sysconfig\n"
        "import percep_det\n"
        "site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ('purelib', 'platlib')}\n"
        "tops = []\n"
        "for name, mod in list(sys.modules.items()):\n"
        "    f = getattr(mod, '__file__', None) or next(iter(getattr(mod, '__path__', None) or []), None)\n"
        "    if '.' not in name and f and any(os.path.realpath(f).startswith(s) for s in site):\n"
        "        tops.append(name)\n"
        "print(json.dumps(sorted(tops)))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    modules = json.loads(out.stdout.strip().splitlines()[-1])

    owners = metadata.packages_distributions()
    platform = {d for m in PLATFORM for d in owners.get(m, [m])}
    allowed = _requirement_closure(_names(_setup_kwargs()["install_requires"]) | platform)
    allowed |= {"setuptools"}  # its _distutils_hack is loaded by a .pth file at start-up
    foreign = {}
    for module in modules:
        if module.startswith("__editable__"):  # the editable install of percep_det itself
            continue
        dists = {_norm(d) for d in owners.get(module, [module])}
        if not dists & allowed:
            foreign[module] = sorted(dists)
    assert not foreign, (
        f"`import percep_det` loads modules of undeclared distributions: {foreign}; declare them "
        "in setup.py install_requires"
    )
