#!/usr/bin/env bash
# Install everything percep_det needs into the Python given by $PYTHON (default: python3).
#
# - keeps an importable torch/torchvision and detectron2 (e.g. a cluster's official CUDA build);
# - otherwise installs torch==2.14.1/torchvision==0.29.1 and detectron2 from the package registry
#   (a repack of the sal-detectron2==0.7.2 wheel, whose download pip checks against the sha256
#   pinned below with --require-hashes; see README "Installation");
# - idempotent: when everything is importable it only checks and exits in a few seconds.
set -euo pipefail

PYTHON=${PYTHON:-python3}
# absolute path of the interpreter (a venv's python stays the venv's), so checks can run from /
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIP=("$PYTHON" -m pip --disable-pip-version-check)
PIN_TORCH=${PIN_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
# Pins that matter for this detectron2: numpy<2 (np.array(copy=False)), setuptools<82 (pkg_resources).
BASE_PINS=("numpy<2" "setuptools<82")
# The sha256 of sal_detectron2-0.7.2-cp310-none-any.whl (its only file in the registry): a
# download that differs (tampered with, or replaced) is refused before it is unpacked.
D2_REQUIREMENT="sal-detectron2==0.7.2"
D2_SHA256="491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
EXTRA=("fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" "pycocotools>=2.0.6" "opencv-python-headless"
       "matplotlib" "PyYAML" "pytest" "wheel"
       # the tests and datasets/prepare_*.py read and write .mat files (scipy.io); NYU Depth v2's
       # nyu_depth_v2_labeled.mat is MATLAB v7.3 = HDF5 (h5py), datasets/prepare_nyu_v2.py
       "scipy" "h5py"
       # detectron2's own pure-python dependencies (kept here so a detectron2 that was installed
       # without them, e.g. with --no-deps, becomes importable too)
       "cloudpickle" "hydra-core>=1.1" "omegaconf>=2.1,<2.4" "tabulate" "termcolor>=1.1" "yacs>=0.1.8"
       "tensorboard" "Pillow>=7.1" "packaging" "black")

have() { "$PYTHON" - "$@" <<'PY' >/dev/null 2>&1
import importlib, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
PY
}

log() { echo "[install_deps] $*"; }

# Fast path: everything already importable at compatible versions.
if have torch torchvision detectron2 detectron2.engine fvcore pycocotools cv2 PIL yaml matplotlib pytest scipy h5py \
   && "$PYTHON" -c "import numpy, sys; sys.exit(int(numpy.__version__.split('.')[0]) >= 2)" \
   && "$PYTHON" -c "import pkg_resources" >/dev/null 2>&1; then
  log "all dependencies importable; nothing to do"
else
  if ! have torch torchvision; then
    log "installing $PIN_TORCH"
    # shellcheck disable=SC2086
    "${PIP[@]}" install -q $PIN_TORCH "${BASE_PINS[@]}"
  fi
  log "installing python dependencies"
  "${PIP[@]}" install -q "${BASE_PINS[@]}" "${EXTRA[@]}"
  if ! have detectron2; then
    log "no importable detectron2: repacking $D2_REQUIREMENT from the package registry"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "$D2_REQUIREMENT --hash=sha256:$D2_SHA256" > "$work/detectron2-requirement.txt"
    "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.10 \
      --require-hashes -r "$work/detectron2-requirement.txt" -d "$work"
    "$PYTHON" -m wheel unpack -d "$work/unpacked" "$work"/sal_detectron2-*.whl >/dev/null
    root=$(ls -d "$work"/unpacked/*/)
    info=$(ls -d "$root"*.dist-info)
    # A pure-python wheel: the compiled _C (CPython 3.10 only) is dropped; CondInst needs none of it.
    sed -i -e 's/^Tag: .*/Tag: py3-none-any/' -e 's/^Root-Is-Purelib: .*/Root-Is-Purelib: true/' \
      "$info/WHEEL"
    rm -f "$root"detectron2/_C*.so
    # The wheel ships a stray top-level `tools` package that would shadow this project's tools/.
    rm -rf "$root"tools
    sed -i '/^tools$/d' "$info/top_level.txt"
    sed -i '/^tools\//d' "$info/RECORD"
    sed -i '/detectron2\/_C/d' "$info/RECORD"
    mkdir -p "$work/dist"
    "$PYTHON" -m wheel pack -d "$work/dist" "$root" >/dev/null
    # With its dependencies (cloudpickle, hydra-core, ...), under the pins above.
    "${PIP[@]}" install -q "$work"/dist/*.whl "${BASE_PINS[@]}" "${EXTRA[@]}"
  fi
fi

# percep_det itself (editable), without touching the dependencies resolved above.
# (run from / so that the checkout itself on sys.path does not count as installed)
if ! (cd / && "$PYTHON" -c "import percep_det, os, sys; sys.exit(os.path.realpath(percep_det.__path__[0]) != os.path.realpath('$HERE/percep_det'))") >/dev/null 2>&1; then
  log "installing percep_det (editable) from $HERE"
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$HERE"
fi
cd / && "$PYTHON" -c "import detectron2, torch, percep_det; print('[install_deps] ok: torch', torch.__version__, '| detectron2', detectron2.__version__, '| percep_det', percep_det.__version__)"
