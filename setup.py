#!/usr/bin/env python
"""percep_det: a Detectron2 extension for the generic (random-weight) perceptual loss.

detectron2 itself is not on PyPI; `tools/install_deps.sh` installs it (or keeps an existing build)
before this package. Only pure-python dependencies are declared here so that `pip install -e .`
never replaces a cluster's own torch/detectron2 build.
"""
from setuptools import find_packages, setup

setup(
    name="percep_det",
    version="0.1.0",
    description="Generic perceptual loss (random-weight loss networks) for Detectron2 dense predictors",
    packages=find_packages(include=["percep_det", "percep_det.*"]),
    python_requires=">=3.9",
    install_requires=[
        "numpy<2",
        "pycocotools>=2.0.6",
        "matplotlib",
        "tqdm",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "h5py",  # datasets/prepare_nyu_v2.py reads the NYU Depth v2 .mat (HDF5); imported lazily
    ],
    extras_require={"dev": ["pytest", "scikit-image", "opencv-python-headless"]},
)
