#!/usr/bin/env python
"""Train and evaluate percep_det models with detectron2's DefaultTrainer.

    python tools/train_net.py --config-file configs/InstanceSegmentation/condinst_R50_1x_coco.yaml --num-gpus 8
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS path/to/model_final.pth
    python tools/train_net.py --config-file ... --resume          # continue from OUTPUT_DIR

After training (and with --eval-only) it writes pictures of predictions on the first test set to
OUTPUT_DIR/vis/ (ground truth next to predicted instances or class maps) and the training curves to
OUTPUT_DIR/curves.png. The evaluator follows the test set's metadata ``evaluator_type``: "coco" ->
COCOEvaluator, "sem_seg" and "cityscapes_sem_seg" -> SemSegEvaluator (mIoU, pixel accuracy),
"depth" -> DepthEvaluator (AbsRel, RMSE, delta < 1.25, ...); so do the data mappers
(percep_det/data/mappers.py: semantic segmentation resizes before it crops, depth maps are
augmented with their images).
"""
import logging
import os
import sys

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
    verify_results,
)
from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import percep_det  # noqa: F401  (registers datasets and models)
from percep_det.config import get_percep_cfg
from percep_det.data import ensure_generated, register_custom_datasets
from percep_det.data.mappers import build_mapper, build_test_mapper
from percep_det.engine import (
    TrainingState,
    build_resumable_train_loader,
    check_config_file,
    check_datasets,
    check_device,
    check_sem_seg_labels,
    cpu_aware_ddp,
)
from percep_det.engine.checkpoint import PercepCheckpointer
from percep_det.engine.timing import CPUTimer
from percep_det.evaluation import DepthEvaluator
from percep_det.modeling.perceptual import CHECKPOINT_KEY, LossNetworkRecord
from percep_det.utils import draw_dataset_predictions, plot_metrics

logger = logging.getLogger("percep_det.train_net")


class Trainer(DefaultTrainer):
    """DefaultTrainer with COCO or semantic-segmentation evaluation (by ``evaluator_type``), CPU
    multi-process support and a data stream / RNG state that ``--resume`` restores exactly (see
    percep_det/engine/resume.py)."""

    def __init__(self, cfg):
        with cpu_aware_ddp():
            super().__init__(cfg)
        self.training_state = TrainingState(self._trainer.data_loader.stream)
        self.checkpointer.checkpointables["training_state"] = self.training_state
        # Every checkpoint records the loss networks' fingerprints; --resume compares them.
        self.checkpointer.checkpointables[CHECKPOINT_KEY] = LossNetworkRecord(
            self.model, source=f"the last checkpoint in {cfg.OUTPUT_DIR}"
        )

    def build_hooks(self):
        # DefaultTrainer.__init__ creates self.checkpointer right before calling this, and the
        # PeriodicCheckpointer hook keeps it: swap in the PercepCheckpointer (same model, folder
        # and checkpointables): safe loading, atomic saving, resume past broken checkpoints.
        self.checkpointer = PercepCheckpointer.from_checkpointer(self.checkpointer)
        hooks = super().build_hooks()
        # right after detectron2's IterationTimer, before evaluation and the writers: "cpu_time"
        # per step, a cost that contention on a shared machine does not inflate
        hooks.insert(1, CPUTimer())
        return hooks

    @classmethod
    def build_train_loader(cls, cfg):
        # detectron2's DatasetMapper (it reads ``sem_seg_file_name`` into ``sem_seg`` when the
        # records have it), with resize-then-crop for semantic datasets; the depth mapper for depth
        loader = build_resumable_train_loader(cfg, mapper=build_mapper(cfg, is_train=True))
        # ... with convert("L"), which reads palette PNGs as wrong labels: stop before training
        check_sem_seg_labels(loader.stream.dataset.dataset_dicts)
        return loader

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        # examples this process consumed before start_iter (restored seed: TrainingState)
        per_process = self.cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
        self._trainer.data_loader.stream.set_start(self.start_iter * per_process)
        self.training_state.apply_rng_state()  # RNG states of the checkpoint, if resumed

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        # "WarmupPolyLR" (the poly schedule of the PSPNet / DeepLab recipes) lives in detectron2's
        # DeepLab project, whose builder hands every other name to detectron2's own.
        return build_deeplab_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # a file that fails to decode raises an error naming it (NameFilesOnError)
        return build_detection_test_loader(
            cfg, dataset_name, mapper=build_test_mapper(cfg, dataset_name)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator named by the dataset's metadata ``evaluator_type`` (default "coco")."""
        ensure_generated(dataset_name)  # COCOEvaluator reads the json of built-in datasets
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
        if evaluator_type == "coco":
            return DatasetEvaluators([COCOEvaluator(dataset_name, output_dir=output_folder)])
        if evaluator_type in ("sem_seg", "cityscapes_sem_seg"):
            # Cityscapes too: detectron2's CityscapesSemSegEvaluator needs cityscapesscripts, and at
            # detectron2 HEAD (since Dec 2024) imports a Meta-internal module ('deeplearning...',
            # issue #5436). SemSegEvaluator gives the same per-class IoU / mIoU over the 19 train
            # ids from the metadata's stuff_classes and ignore_label (no instance-level iIoU).
            evaluator = SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)
            # it reads labels with np.asarray(Image.open(f)): palette indices are right there
            check_sem_seg_labels(
                ({"sem_seg_file_name": f} for f in evaluator.input_file_to_gt_file.values()),
                allow_palette=True,
            )
            return DatasetEvaluators([evaluator])
        if evaluator_type == "depth":
            return DatasetEvaluators(
                [DepthEvaluator(dataset_name, distributed=True, output_dir=output_folder)]
            )
        raise NotImplementedError(
            f"dataset '{dataset_name}' has evaluator_type '{evaluator_type}' in its metadata; "
            "tools/train_net.py evaluates 'coco', 'sem_seg', 'cityscapes_sem_seg' and 'depth'. Set another "
            "evaluator_type when registering the dataset, or extend Trainer.build_evaluator"
        )


def build_cfg(args):
    """The frozen config of ``args``, with user-input errors that name what to fix."""
    check_config_file(args.config_file)
    cfg = get_percep_cfg(args.config_file, args.opts)
    cfg.freeze()
    check_device(cfg)
    register_custom_datasets(cfg)  # DATASETS.CUSTOM (docs/custom_datasets.md)
    # paths, then content (DATASETS.CHECK.POLICY: stop / skip re-registers filtered datasets)
    check_datasets(cfg, train=not args.eval_only)
    return cfg


def setup(args):
    cfg = build_cfg(args)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="percep_det")
    return cfg


def write_pictures(cfg, model):
    """Pictures of the first test set's predictions (instances or semantic class maps, chosen by
    the model's output) next to the ground truth, and the training curves (main process only)."""
    if not comm.is_main_process():
        return
    if cfg.PERCEP_DET.VIS_NUM_IMAGES > 0 and len(cfg.DATASETS.TEST):
        out_dir = cfg.PERCEP_DET.VIS_DIR or os.path.join(cfg.OUTPUT_DIR, "vis")
        model = model.module if hasattr(model, "module") else model
        paths = draw_dataset_predictions(
            cfg,
            model,
            cfg.DATASETS.TEST[0],
            out_dir,
            num_images=cfg.PERCEP_DET.VIS_NUM_IMAGES,
            score_thresh=cfg.PERCEP_DET.VIS_SCORE_THRESH,
            scale=max(1.0, 384 / max(cfg.INPUT.MIN_SIZE_TEST, 1)),
        )
        logger.info(f"Wrote {len(paths)} prediction overlays to {out_dir}")
    metrics = os.path.join(cfg.OUTPUT_DIR, "metrics.json")
    if os.path.isfile(metrics):
        out = plot_metrics(metrics, os.path.join(cfg.OUTPUT_DIR, "curves.png"))
        logger.info(f"Wrote training curves to {out}")


def main(args):
    cfg = setup(args)

    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpoint = PercepCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        if CHECKPOINT_KEY in checkpoint:  # a perceptual config must match its checkpoint
            LossNetworkRecord(model, source=cfg.MODEL.WEIGHTS).load_state_dict(
                checkpoint[CHECKPOINT_KEY]
            )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        write_pictures(cfg, model)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    res = trainer.train()
    write_pictures(cfg, trainer.model)
    return res


def argument_parser():
    """detectron2's parser, with help that says what percep_det accepts (its own mentions
    LazyConfig .py files, which percep_det refuses)."""
    parser = default_argument_parser(
        epilog=f"""
Examples:
    $ {sys.argv[0]} --config-file configs/quick_schedules/condinst_R18_shapes_cpu.yaml
    $ {sys.argv[0]} --config-file cfg.yaml --num-gpus 8 SOLVER.BASE_LR 0.001
    $ {sys.argv[0]} --config-file cfg.yaml --eval-only MODEL.WEIGHTS path/to/model_final.pth

Weights (.pkl, .pth) and configs are loaded safely (no pickled code, no YAML Python tags); set
PERCEP_DET_TRUSTED_FILES=1 only for files you trust that need more.
"""
    )
    helps = {
        "config_file": "a yacs YAML config (.yaml) under configs/; Python LazyConfig files (.py) "
        "are not supported",
        "resume": "continue from the checkpoint named by OUTPUT_DIR/last_checkpoint, or else the "
        "newest loadable OUTPUT_DIR/*.pth (broken ones are skipped, with a warning); with none, "
        "start from MODEL.WEIGHTS",
        "opts": 'config overrides at the end of the command, as space-separated "KEY VALUE" pairs '
        "(e.g. SOLVER.BASE_LR 0.001)",
    }
    for action in parser._actions:
        action.help = helps.get(action.dest, action.help)
    return parser


def invoke_main() -> None:
    args = argument_parser().parse_args()
    if args.num_gpus > 1 and not torch.cuda.is_available():
        # launch() picks the gloo backend without CUDA; keep each process to one thread.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    print("Command Line Args:", args)
    try:
        build_cfg(args)  # bad input fails here, once, before any process is started
    except (FileNotFoundError, KeyError, RuntimeError, ValueError, AssertionError) as e:
        if os.environ.get("PERCEP_DET_TRACEBACK"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"\nERROR: {msg}\n(set PERCEP_DET_TRACEBACK=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
