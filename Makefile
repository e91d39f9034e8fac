# percep_det: two commands for a new user (see README.md)
#   make demo   set up, then train + evaluate CondInst on the embedded dataset on CPU
#   make test   set up, then run the test suite
#
# PYTHON picks the interpreter. By default a virtual environment in .venv is made and used; to use
# an existing environment (e.g. one with an official CUDA build of detectron2): make setup PYTHON=python
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
DEMO_CONFIG ?= configs/quick_schedules/condinst_R18_shapes_cpu.yaml
DEMO_OUTPUT ?= output/demo
export OMP_NUM_THREADS ?= 1

.PHONY: setup demo test

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip wheel "setuptools<82"

setup: $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/bin/python)
	PYTHON=$(PYTHON) bash tools/install_deps.sh

demo: setup
	$(PYTHON) tools/train_net.py --config-file $(DEMO_CONFIG) OUTPUT_DIR $(DEMO_OUTPUT)

test: setup
	$(PYTHON) -m pytest tests -q
