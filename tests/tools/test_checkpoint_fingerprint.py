"""Checkpoints pin the loss network: train_net records its fingerprint; --resume and --eval-only
with a perceptual config stop with an error naming the changed setting; a matching resume is
silent."""
import os

import pytest
import torch
from detectron2.engine import default_argument_parser
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PERCEP = os.path.join(ROOT, "configs", "quick_schedules", "condinst_percep_gt_R18_shapes_cpu.yaml")


def _train_net():
    path = os.path.join(ROOT, "tools", "train_net.py")
    module = load_script(path, "percep_train_net_fingerprint")
    return module


def _args(out, *extra, eval_only=False):
    opts = [
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1",
        "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out),
        "MODEL.CONDINST.MAX_PROPOSALS", "4", "MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES", "2",
        "MODEL.PERCEPTUAL_LOSS.BLOCKS", "[1, 1]", "MODEL.PERCEPTUAL_LOSS.WIDTHS", "[4, 8]",
        "PERCEP_DET.VIS_NUM_IMAGES", "0", *extra,
    ]  # fmt: skip
    argv = ["--config-file", PERCEP, *(["--eval-only"] if eval_only else []), *opts]
    return default_argument_parser().parse_args(argv)


def _train(train_net, args, resume):
    trainer = train_net.Trainer(train_net.build_cfg(args))
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def test_checkpoints_record_the_loss_network_and_resume_checks_it(tmp_path):
    train_net = _train_net()
    _train(train_net, _args(tmp_path), resume=False)
    ckpt = torch.load(tmp_path / "model_0000000.pth", weights_only=False)
    record = ckpt["perceptual_loss_networks"]
    assert list(record) == ["mask_head.perceptual_loss"]
    assert record["mask_head.perceptual_loss"]["spec"]["WIDTHS"] == [4, 8]
    # the model's own weights have no loss-network keys
    assert not any("perceptual" in k for k in ckpt["model"])

    # same settings, one more iteration: silent
    trainer = _train(train_net, _args(tmp_path, "SOLVER.MAX_ITER", "3"), resume=True)
    assert trainer.start_iter == 2 and trainer.iter == 3  # resumed after model_final (iter 1)

    # a changed init: an error naming the key, before any training
    with pytest.raises(ValueError, match="MODEL.PERCEPTUAL_LOSS.INIT: checkpoint 'paper'"):
        _train(train_net, _args(tmp_path, "MODEL.PERCEPTUAL_LOSS.INIT", "xavier_normal"), True)

    # --eval-only of the final model with a changed seed: error naming SEED
    final = str(tmp_path / "model_final.pth")
    args = _args(
        tmp_path / "eval", "MODEL.WEIGHTS", final, "MODEL.PERCEPTUAL_LOSS.SEED", "3",
        eval_only=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="MODEL.PERCEPTUAL_LOSS.SEED: checkpoint 0, config 3"):
        train_net.main(args)
    args = _args(tmp_path / "eval2", "MODEL.WEIGHTS", final, eval_only=True)
    assert train_net.main(args) == {}  # matching: evaluates (no test set here)
