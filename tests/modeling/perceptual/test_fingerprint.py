"""Loss-network fingerprints: equal settings give equal fingerprints on every build; a changed
setting is reported by its MODEL.PERCEPTUAL_LOSS key; the record checkpointable round-trips."""
import pytest
from detectron2.config import get_cfg
from torch import nn

from percep_det import add_percep_det_config
from percep_det.modeling.perceptual import (
    LossNetworkRecord,
    PerceptualLoss,
    PercepVGGLossNetwork,
    check_fingerprints,
    loss_network_fingerprints,
)


def _cfg(**keys):
    cfg = get_cfg()
    add_percep_det_config(cfg)
    cfg.MODEL.PERCEPTUAL_LOSS.BLOCKS = [1, 1]
    cfg.MODEL.PERCEPTUAL_LOSS.WIDTHS = [4, 8]
    for key, value in keys.items():
        cfg.MODEL.PERCEPTUAL_LOSS[key] = value
    return cfg


def _model(cfg, in_channels=1):
    model = nn.Module()
    model.head = nn.Conv2d(1, 1, 1)
    model.head.perceptual_loss = PerceptualLoss(cfg, in_channels=in_channels)
    return model


def test_fingerprint_is_reproducible_and_names_the_spec():
    a = PercepVGGLossNetwork(blocks=(1, 1), widths=(4, 8), seed=3).fingerprint()
    b = PercepVGGLossNetwork(blocks=(1, 1), widths=(4, 8), seed=3).fingerprint()
    c = PercepVGGLossNetwork(blocks=(1, 1), widths=(4, 8), seed=4).fingerprint()
    assert a == b and a["sha256"] != c["sha256"]
    assert a["spec"]["SEED"] == 3 and a["spec"]["BLOCKS"] == [1, 1] and a["spec"]["ARCH"] == "vgg"


@pytest.mark.parametrize(
    "key, value",
    [("INIT", "xavier_normal"), ("SEED", 7), ("WIDTHS", [4, 16]), ("KERNEL_SIZE", 5)],
)
def test_a_changed_setting_is_an_error_naming_it(key, value):
    recorded = loss_network_fingerprints(_model(_cfg()))
    assert list(recorded) == ["head.perceptual_loss"]
    changed = loss_network_fingerprints(_model(_cfg(**{key: value})))
    with pytest.raises(ValueError, match=f"MODEL.PERCEPTUAL_LOSS.{key}: checkpoint"):
        check_fingerprints(recorded, changed, "model_0000009.pth")
    check_fingerprints(recorded, loss_network_fingerprints(_model(_cfg())), "x")  # silent


def test_same_settings_other_weights_say_so():
    recorded = loss_network_fingerprints(_model(_cfg()))
    recorded["head.perceptual_loss"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="every setting is equal"):
        check_fingerprints(recorded, loss_network_fingerprints(_model(_cfg())), "ckpt")


def test_record_round_trip_and_models_without_the_term():
    model = _model(_cfg())
    state = LossNetworkRecord(model).state_dict()
    LossNetworkRecord(_model(_cfg())).load_state_dict(state)  # same net: silent
    with pytest.raises(ValueError, match="IN_CHANNELS"):
        LossNetworkRecord(_model(_cfg(), in_channels=2)).load_state_dict(state)
    # a plain model (no perceptual term) has nothing to compare, in both directions
    assert LossNetworkRecord(nn.Conv2d(1, 1, 1)).state_dict() == {}
    LossNetworkRecord(nn.Conv2d(1, 1, 1)).load_state_dict(state)
    LossNetworkRecord(model).load_state_dict({})
