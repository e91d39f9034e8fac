import subprocess
import sys

from detectron2.data import DatasetCatalog

import percep_det


def test_import_registers_datasets():
    names = DatasetCatalog.list()
    assert "percep_shapes_train" in names and "percep_shapes_val" in names


def test_import_registers_models():
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY

    assert "PercepCondInst" in META_ARCH_REGISTRY
    assert "PercepFCOS" in PROPOSAL_GENERATOR_REGISTRY
    assert "build_percep_fcos_resnet_fpn_backbone" in BACKBONE_REGISTRY


def test_import_is_light_and_public_api():
    assert callable(percep_det.add_percep_det_config)
    # a fresh interpreter imports the package without side effects on stdout and without error
    out = subprocess.run(
        [sys.executable, "-c", "import percep_det; print(percep_det.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == percep_det.__version__
