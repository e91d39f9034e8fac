#!/usr/bin/env python
"""Check registered datasets for what detectron2 will read, before a long run.

    python tools/check_dataset.py coco_2017_val
    python tools/check_dataset.py mine_train mine_val \\
        --custom mine_train:coco:/data/mine/train.json:/data/mine/images \\
        --custom mine_val:coco:/data/mine/val.json:/data/mine/images
    python tools/check_dataset.py mine_train --config-file configs/...yaml [--opts KEY VALUE ...]

For each dataset it prints the number of images, annotations and categories, the time the check
took (or that its result came from the cache), and every problem with its file, image id and
annotation id and what to fix (see percep_det/data/checks.py for the list of checks). With
``--config-file``, the model's number of classes is checked against the dataset too, and the
config's ``DATASETS.CUSTOM`` datasets are registered. ``--out DIR`` writes all problems to
``DIR/bad_entries_<dataset>.json``.

Images are checked from their headers and last kilobyte (missing, unreadable, 16-bit, truncated,
wrong size); label and depth maps from their headers, plus a sample decoded. ``--deep`` decodes
every file: much slower, but it finds corrupt data in the middle of a file too. A result is
cached (``$PERCEP_DET_CACHE/dataset_checks``) under the json file's size and mtime or a hash of
the records; ``--no-cache`` checks again (e.g. after replacing image files in place).

Exit status: 0 when every dataset is clean, 1 when some have problems, 2 for bad arguments.
"""

import argparse
import json
import os
import sys

from detectron2.data import DatasetCatalog

import percep_det  # noqa: F401  (registers the built-in datasets)
from percep_det.config import get_percep_cfg
from percep_det.data import (
    CheckSettings,
    DatasetCheckError,
    check_dataset,
    register_custom_datasets,
)
from percep_det.engine.checks import num_classes_problems


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See docs/custom_datasets.md for DATASETS.CUSTOM and the checks.",
    )
    parser.add_argument("names", nargs="+", help="registered dataset names")
    parser.add_argument("--config-file", default="", help="a config: NUM_CLASSES, DATASETS.*")
    parser.add_argument(
        "--custom",
        action="append",
        default=[],
        help="register a dataset first, as in DATASETS.CUSTOM: name:coco:<json>:<image dir>, "
        "name:sem_seg:<image dir>:<label dir>[:...], name:depth:<image dir>:<depth dir>:...",
    )
    parser.add_argument("--deep", action="store_true", help="decode every file (slow)")
    parser.add_argument("--no-cache", action="store_true", help="ignore earlier results")
    parser.add_argument(
        "--use",
        choices=("train", "eval", "both"),
        default="both",
        help="the checks of training (palette labels refused), of evaluation (COCO 'area' and "
        "'iscrowd' required), or both (default)",
    )
    parser.add_argument("--max-problems", type=int, default=30, help="problems printed per dataset")
    parser.add_argument("--out", default="", help="write DIR/bad_entries_<dataset>.json")
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides, last on the command line: --opts KEY VALUE ...",
    )
    return parser


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        cfg = get_percep_cfg(args.config_file or None, args.opts)
        register_custom_datasets(cfg, args.custom)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    unknown = [n for n in args.names if n not in DatasetCatalog.list()]
    if unknown:
        print(
            f"ERROR: datasets {unknown} are not registered; register them with --custom (see "
            "docs/custom_datasets.md) or use a registered name",
            file=sys.stderr,
        )
        return 2
    c = cfg.DATASETS.CHECK
    settings = CheckSettings(
        deep=args.deep or bool(c.DEEP),
        tolerance=float(c.TOLERANCE),
        box_mask_iou=float(c.BOX_MASK_IOU),
        for_training=args.use in ("train", "both"),
        for_evaluation=args.use in ("eval", "both"),
    )
    status = 0
    for name in args.names:
        try:
            report = check_dataset(name, settings, use_cache=not args.no_cache)
        except DatasetCheckError as e:
            print(f"dataset '{name}': {e}")
            status = 1
            continue
        problems = list(report.problems)
        if args.config_file:
            problems += num_classes_problems(cfg, name, report)
        how = "from the cache" if report.from_cache else f"checked in {report.seconds:.2f} s"
        print(
            f"dataset '{name}': {report.num_images} images, {report.num_annotations} annotations"
            f", {report.num_categories if report.num_categories is not None else '?'} categories"
            f", {report.decoded_files} label/depth files decoded; {how}"
        )
        if not problems:
            print("  no problems")
            continue
        status = 1
        bad = len({p.record for p in problems if p.record is not None})
        print(f"  {len(problems)} problem{'s' * (len(problems) != 1)} ({bad} images):")
        for problem in problems[: args.max_problems]:
            print(f"  - {problem.message}")
        if len(problems) > args.max_problems:
            print(f"  ... and {len(problems) - args.max_problems} more")
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"bad_entries_{name}.json")
            with open(path, "w") as f:
                json.dump([vars(p) for p in problems], f, indent=1, default=repr)
            print(f"  all listed in {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
