#!/usr/bin/env python
"""percep_det: a Detectron2 extension for the generic (random-weight) perceptual loss.

detectron2 itself is not on PyPI; `tools/install_deps.sh` installs it (or keeps an existing build)
before this package. torch, torchvision and detectron2 are not declared here, so that
`pip install -e .` never replaces a cluster's own build of them.
"""
from setuptools import find_packages, setup

setup(
    name="percep_det",
    version="0.1.0",
    description="Generic perceptual loss (random-weight loss networks) for Detectron2 dense predictors",
    packages=find_packages(include=["percep_det", "percep_det.*"]),
    python_requires=">=3.9",
    # Exactly the third-party packages that percep_det/ imports (tests/test_packaging.py checks
    # it), besides torch, torchvision and detectron2 (installed by tools/install_deps.sh).
    install_requires=[
        "numpy<2",  # this detectron2 calls np.array(copy=False)
        "fvcore>=0.1.5,<0.1.6",
        "matplotlib",
        "opencv-python-headless",
        "Pillow",
        "pycocotools>=2.0.6",
        "PyYAML",
    ],
    extras_require={
        # what the tests import besides the above (h5py: the NYU Depth v2 preparation test;
        # packaging: tests/test_packaging.py)
        "dev": ["pytest", "packaging", "scipy", "h5py"],
        # datasets/prepare_nyu_v2.py (h5py, scipy) and prepare_voc_sem_seg.py (scipy)
        "datasets": ["h5py", "scipy"],
    },
)
