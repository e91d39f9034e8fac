#!/usr/bin/env python
"""Loss-network study: train a task with the perceptual term under many loss-network settings
(and once without it), over seeds; tabulate accuracy and cost per factor; plot them.

The questions of seed 000 §4.1 (random vs pretrained, VGG depth, kernel size, multi-level weights,
init scheme) and of seed 002 (architecture x extraction point), asked of your own task, plus one
that neither paper answers: what each choice costs per training step.

A study is a spec (a YAML file; presets in configs/studies/, ``--list`` shows them):

    name: table4_init                                  # default: the file name
    description: seed 000 Table 4 on the embedded semantic task
    config: configs/quick_schedules/semseg_psp_R18_percep_gt_shapes_cpu.yaml   # with the term
    baseline: configs/quick_schedules/semseg_psp_R18_shapes_cpu.yaml           # without it
    metrics: ["sem_seg/mIoU:mIoU", "sem_seg/pACC:pixel acc"]   # KEY[:LABEL[:lower|higher[:DIGITS]]]
    seeds: [1, 2, 3]
    design: one_at_a_time             # or grid (every combination of the factors' levels)
    loss_net_seed: run                # MODEL.PERCEPTUAL_LOSS.SEED = the run's SEED; or fixed
    common: {SOLVER.CHECKPOINT_PERIOD: 500}            # overrides of every run, baseline too
    term: {MODEL.PERCEPTUAL_LOSS.BLOCKS: [1, 1, 1, 1, 1]}   # overrides of every run with the term
    vars: {weights_dir: weights/torchvision}   # "{weights_dir}" in a string value; --var changes it
    factors:
      init:                                    # a factor: named levels, one of them the reference
        reference: paper
        levels:
          paper: {MODEL.PERCEPTUAL_LOSS.INIT: paper}
          normal_0.1: {MODEL.PERCEPTUAL_LOSS.INIT: normal, MODEL.PERCEPTUAL_LOSS.INIT_PARAM: 0.1}
      net:
        reference: vgg11.relu3_2
        zoo: [vgg11, resnet18]   # adds levels "<arch>.<point>" for the arch's 4 extraction points

A level is a dict of config overrides (dotted keys, or nested dicts). One-factor-at-a-time (the
default) runs the reference setting (every factor at its reference level) and each other level of
each factor with the other factors at their reference; a grid runs every combination. Overrides
apply in this order, later ones winning: ``common``, ``term``, the loss-net seed, the reference
levels of the other factors (one_at_a_time) or the factors in spec order (grid), the varied
level; the command line's trailing ``KEY VALUE`` pairs apply to every run, last. String values may
name ``{var}`` of ``vars`` and ``{factor}`` (the level name of that factor in the same setting):
``PRETRAINED_WEIGHTS: "{weights_dir}/{arch}.pth"``.

Everything is checked before the first run starts: the spec's keys, ``--factors`` and ``--levels``
(an unknown name is an error naming it), every setting's overrides against the task config
(``percep_det.config.get_percep_cfg``: an unknown key or a value of the wrong type), its loss
network (built: an unknown arch, extraction point, init scheme, ...), and the files that
pretrained levels need (weights are never downloaded: a missing file is an error that says which
levels need which files and how to leave them out). Then the tool prints how many runs there
are, how many are finished, and an estimate of the time (from the step times of finished runs, or
"unknown"), and starts.

Runs are ``tools/train_net.py`` subprocesses (``percep_det/utils/experiment.py``), up to
``--parallel`` at a time, under ``<out>/<setting>/seed<k>``: finished runs are skipped,
interrupted ones resume from their last good checkpoint, runs whose loss diverged are not retried
(``--retry-diverged``). Outputs, rewritten after every invocation:
    results.csv   one row per run: settings, seed, status, final and per-evaluation metrics, step
                  time (mean of metrics.json "time", first record dropped), peak memory (RSS of
                  the trainer process; CUDA max_mem from log.txt on GPU), loss-network FLOPs per
                  input pixel (fvcore, one multiply-add = one flop; counted by this tool, no
                  training needed) and extraction depth.
    results.md    per factor: mean ± std over seeds per level, next to the baseline without the
                  term, step time and its ratio to the baseline, memory, FLOPs; then the paired
                  per-seed differences to the baseline and in how many seeds the level is better.
    levels_<factor>.png  the metric per level with error bars (the baseline as a band)
    depth.png     the metric against extraction depth, one line per loss network (when a network
                  was tried at two or more extraction points)
    cost.png      the metric against cost per step (step time, loss-net FLOPs, memory), ringing
                  the settings that nothing else beats on both
    study.json    the settings (overrides, cost) of this output folder; a setting whose overrides
                  change under the same name is an error (use another --out)

Examples:
    python tools/study_loss_networks.py --list
    python tools/study_loss_networks.py --preset table4_init --parallel 2 --dry-run
    python tools/study_loss_networks.py --preset table4_init --parallel 2
    python tools/study_loss_networks.py --preset seed002_grid \\
        --levels net=vgg11.relu1_1,vgg11.relu2_1
    python tools/study_loss_networks.py --spec my_study.yaml --config my_task_percep.yaml \\
        --baseline my_task.yaml --metrics depth/AbsRel:AbsRel:lower:4 --out output/my_study
    python tools/study_loss_networks.py --preset table1_arch --var weights_dir=/data/tv_weights
    python tools/study_loss_networks.py --preset lambda --summary-only   # tables and plots only
"""

import argparse
import csv
import glob
import itertools
import json
import math
import os
import re
import sys
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from percep_det.utils.cost import has_perceptual_term, loss_net_cost, loss_net_key
from percep_det.utils.experiment import (
    Metric,
    Run,
    collect,
    mean_table,
    paired_table,
    parse_metrics,
    read_evaluations,
    read_metrics,
    read_run_stats,
    run_all,
    run_state,
)
from percep_det.utils.plot import plot_cost, plot_depth, plot_levels
from percep_det.utils.stats import mean_std

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
STUDIES = os.path.join(REPO, "configs", "studies")

PERCEP = "MODEL.PERCEPTUAL_LOSS."
SPEC_KEYS = (
    "name", "description", "config", "baseline", "metrics", "seeds", "design", "loss_net_seed",
    "common", "term", "vars", "factors",
)  # fmt: skip
FACTOR_KEYS = ("reference", "levels", "zoo", "description")
DESIGNS = ("one_at_a_time", "grid")
NET_SEEDS = ("fixed", "run")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


class SpecError(ValueError):
    """A study spec or a command-line selection that cannot run; the message names what is wrong."""


class Factor(NamedTuple):
    name: str
    reference: str
    levels: Dict[str, Dict[str, object]]  # level -> {config key: value}, in spec order
    description: str = ""


class Spec(NamedTuple):
    path: str
    name: str
    description: str
    config: str
    baseline: str
    metrics: List[Metric]
    seeds: List[int]
    design: str
    loss_net_seed: str
    common: Dict[str, object]
    term: Dict[str, object]
    variables: Dict[str, str]
    factors: Dict[str, Factor]  # in spec order


class Setting(NamedTuple):
    """One loss-network setting (or the baseline): its folder name, its factors' levels, the
    factor it varies (one_at_a_time; "" for the reference, the baseline and grid cells), the
    config it trains and its overrides beyond ``common`` (ordered ``(key, value)`` pairs)."""

    name: str
    levels: Dict[str, str]
    varied: str
    config: str
    overrides: List[Tuple[str, object]]
    is_baseline: bool = False


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------
def _flatten(tree: Mapping, where: str, prefix: str = "") -> Dict[str, object]:
    """{"MODEL": {"PERCEPTUAL_LOSS": {"INIT": x}}} and {"MODEL.PERCEPTUAL_LOSS.INIT": x} alike."""
    if not isinstance(tree, Mapping):
        raise SpecError(f"{where}: expected a mapping of config keys to values, got {tree!r}")
    flat: Dict[str, object] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key:
            raise SpecError(f"{where}: config key {key!r} is not a string")
        full = prefix + key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, where, full + "."))
        else:
            flat[full] = value
    return flat


def _repo_path(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def preset_path(name: str) -> str:
    path = os.path.join(STUDIES, f"{name}.yaml")
    if not os.path.isfile(path):
        raise SpecError(
            f"unknown preset {name!r}; presets: {sorted(list_presets())} (in {STUDIES})"
        )
    return path


def list_presets() -> Dict[str, str]:
    """{preset name: first line of its description}."""
    import yaml

    out = {}
    for path in sorted(glob.glob(os.path.join(STUDIES, "*.yaml"))):
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        out[os.path.splitext(os.path.basename(path))[0]] = str(data.get("description", "")).strip()
    return out


def load_spec(path: str) -> Spec:
    """Read and check a spec file (structure only; see :func:`validate` for the configs)."""
    import yaml

    from percep_det.modeling.perceptual import LOSS_NET_ZOO

    if not os.path.isfile(path):
        raise SpecError(f"study spec {path!r} does not exist")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping with keys {list(SPEC_KEYS)}")
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {unknown}; a spec has {list(SPEC_KEYS)}")
    for key in ("config", "baseline", "factors"):
        if not data.get(key):
            raise SpecError(f"{path}: '{key}' is missing")

    try:
        metrics = data.get("metrics") or ["sem_seg/mIoU:mIoU"]
        metrics = parse_metrics(metrics if isinstance(metrics, str) else ",".join(metrics))
    except (ValueError, TypeError) as e:
        raise SpecError(f"{path}: metrics: {e}") from None
    seeds = data.get("seeds", [1, 2, 3])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SpecError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    design = data.get("design", "one_at_a_time")
    if design not in DESIGNS:
        raise SpecError(f"{path}: design must be one of {DESIGNS}, got {design!r}")
    net_seed = data.get("loss_net_seed", "fixed")
    if net_seed not in NET_SEEDS:
        raise SpecError(f"{path}: loss_net_seed must be one of {NET_SEEDS}, got {net_seed!r}")
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        raise SpecError(f"{path}: vars must be a mapping, got {variables!r}")

    factors: Dict[str, Factor] = {}
    if not isinstance(data["factors"], dict):
        raise SpecError(f"{path}: factors must be a mapping of factor names to factors")
    for fname, fdata in data["factors"].items():
        where = f"{path}: factor {fname!r}"
        if not isinstance(fname, str) or not re.fullmatch(r"[A-Za-z0-9_]+", fname):
            raise SpecError(f"{where}: a factor name has letters, digits and '_' only")
        if not isinstance(fdata, dict):
            raise SpecError(f"{where}: expected a mapping with {list(FACTOR_KEYS)}")
        bad = [k for k in fdata if k not in FACTOR_KEYS]
        if bad:
            raise SpecError(f"{where}: unknown key(s) {bad}; a factor has {list(FACTOR_KEYS)}")
        levels: Dict[str, Dict[str, object]] = {}
        for lname, overrides in (fdata.get("levels") or {}).items():
            lname = str(lname)
            if not _NAME.fullmatch(lname):
                raise SpecError(
                    f"{where}: level name {lname!r} may only have letters, digits and _.+- "
                    "(it names a folder)"
                )
            levels[lname] = _flatten(overrides or {}, f"{where}, level {lname!r}")
        for arch in fdata.get("zoo") or []:
            if arch not in LOSS_NET_ZOO:
                raise SpecError(
                    f"{where}: zoo arch {arch!r} is not in LOSS_NET_ZOO "
                    f"(percep_det/modeling/perceptual/loss_network.py): {sorted(LOSS_NET_ZOO)}"
                )
            for point in LOSS_NET_ZOO[arch]:
                levels[f"{arch}.{point}"] = {PERCEP + "ARCH": arch, PERCEP + "OUT_POINTS": [point]}
        if not levels:
            raise SpecError(f"{where}: no levels (give 'levels' or 'zoo')")
        reference = str(fdata.get("reference", ""))
        if reference not in levels:
            raise SpecError(
                f"{where}: reference level {reference!r} is not one of its levels {list(levels)}"
            )
        description = " ".join(str(fdata.get("description", "")).split())
        factors[fname] = Factor(fname, reference, levels, description)

    name = str(data.get("name") or os.path.splitext(os.path.basename(path))[0])
    if not _NAME.fullmatch(name):
        raise SpecError(f"{path}: name {name!r} may only have letters, digits and _.+-")
    return Spec(
        path=path,
        name=name,
        description=" ".join(str(data.get("description", "")).split()),
        config=str(data["config"]),
        baseline=str(data["baseline"]),
        metrics=metrics,
        seeds=list(seeds),
        design=design,
        loss_net_seed=net_seed,
        common=_flatten(data.get("common") or {}, f"{path}: common"),
        term=_flatten(data.get("term") or {}, f"{path}: term"),
        variables={str(k): str(v) for k, v in variables.items()},
        factors=factors,
    )


def select(spec: Spec, factors: Optional[Sequence[str]] = None, levels: Sequence[str] = ()) -> Spec:
    """Vary only the ``factors`` named (all if None): the others stay at their reference level
    (kept with that level alone, so every setting has the same name and overrides as in the
    whole spec, and runs made a group of factors at a time share one output folder). Per
    ``levels`` entry "factor=l1,l2", only those levels of that factor (one_at_a_time keeps its
    reference level too)."""
    kept = dict(spec.factors)
    if factors is not None:
        unknown = [f for f in factors if f not in spec.factors]
        if unknown:
            raise SpecError(
                f"unknown factor(s) {unknown} in --factors; {spec.path} has {list(spec.factors)}"
            )
        kept = {
            name: f if name in factors else f._replace(levels={f.reference: f.levels[f.reference]})
            for name, f in spec.factors.items()
        }
    for item in levels:
        if "=" not in item:
            raise SpecError(f"--levels expects FACTOR=LEVEL[,LEVEL...], got {item!r}")
        fname, names = item.split("=", 1)
        if fname not in spec.factors:
            raise SpecError(
                f"unknown factor {fname!r} in --levels {item!r}; {spec.path} has "
                f"{list(spec.factors)}"
            )
        if factors is not None and fname not in factors:
            raise SpecError(f"--levels {item!r}: factor {fname!r} is not among --factors")
        factor = kept[fname]
        wanted = [n for n in names.split(",") if n]
        unknown = [n for n in wanted if n not in factor.levels]
        if unknown:
            raise SpecError(
                f"unknown level(s) {unknown} of factor {fname!r} in --levels; its levels are "
                f"{list(factor.levels)}"
            )
        if spec.design == "one_at_a_time" and factor.reference not in wanted:
            wanted.append(factor.reference)
        kept[fname] = factor._replace(
            levels={n: o for n, o in factor.levels.items() if n in wanted}
        )
        if factor.reference not in wanted:  # grid without the reference: the first kept level
            kept[fname] = kept[fname]._replace(reference=next(iter(kept[fname].levels)))
    if not kept:
        raise SpecError("no factor left to study (--factors)")
    return spec._replace(factors=kept)


def varied_factors(spec: Spec) -> List[Factor]:
    """The factors with more than one level: those the tables and plots compare (if none has,
    the first factor, so that the reference is still compared with the baseline)."""
    return [f for f in spec.factors.values() if len(f.levels) > 1] or list(spec.factors.values())[
        :1
    ]


def _expand(value: object, variables: Mapping[str, str], where: str) -> object:
    """``{name}`` in string values (also inside lists) -> ``variables[name]``."""
    if isinstance(value, list):
        return [_expand(v, variables, where) for v in value]
    if isinstance(value, str) and "{" in value:
        try:
            return value.format_map(dict(variables))
        except (KeyError, IndexError, ValueError) as e:
            raise SpecError(
                f"{where}: {value!r} names {e} which is neither a var ({sorted(variables)}) nor "
                "a factor"
            ) from None
    return value


def settings(spec: Spec) -> List[Setting]:
    """The baseline, then the reference setting and one setting per other level of each factor
    (one_at_a_time), or every combination of levels (grid)."""
    out = [Setting("baseline", {}, "", spec.baseline, [], is_baseline=True)]
    factors = list(spec.factors.values())
    if spec.design == "one_at_a_time":
        combos = [({f.name: f.reference for f in factors}, "")]
        for f in factors:
            for level in f.levels:
                if level != f.reference:
                    combos.append(({**combos[0][0], f.name: level}, f.name))
    else:
        combos = [
            (dict(zip([f.name for f in factors], levels)), "")
            for levels in itertools.product(*[list(f.levels) for f in factors])
        ]
    for levels, varied in combos:
        if spec.design == "one_at_a_time":
            name = "reference" if not varied else f"{varied}={levels[varied]}"
            order = [f for f in factors if f.name != varied] + (
                [spec.factors[varied]] if varied else []
            )
        else:
            name = ",".join(f"{f}={lv}" for f, lv in levels.items())
            order = factors
        variables = {**spec.variables, **levels}
        merged = {k: _expand(v, variables, f"{spec.path}: term") for k, v in spec.term.items()}
        for f in order:
            where = f"{spec.path}: factor {f.name!r}, level {levels[f.name]!r}"
            for key, value in f.levels[levels[f.name]].items():
                merged.pop(key, None)  # re-inserted: the order shows which override won
                merged[key] = _expand(value, variables, where)
        out.append(Setting(name, levels, varied, spec.config, list(merged.items())))
    return out


def to_opts(overrides: Sequence[Tuple[str, object]]) -> List[str]:
    """``KEY VALUE`` strings as train_net's command line takes them (yacs decodes the values with
    ``literal_eval``, so lists and numbers are written as Python literals, strings as they are)."""
    opts: List[str] = []
    for key, value in overrides:
        opts += [key, value if isinstance(value, str) else repr(value)]
    return opts


def common_pairs(spec: Spec) -> List[Tuple[str, object]]:
    """The spec's ``common`` overrides (every run's, the baseline's too), vars expanded."""
    return [(k, _expand(v, spec.variables, f"{spec.path}: common")) for k, v in spec.common.items()]


def run_opts(spec: Spec, setting: Setting, seed: int, extra: Sequence[str]) -> List[str]:
    """All overrides of one run, after ``SEED`` and ``OUTPUT_DIR``."""
    pairs = common_pairs(spec)
    if not setting.is_baseline:
        if spec.loss_net_seed == "run":
            pairs.append((PERCEP + "SEED", seed))
        pairs += setting.overrides
    return to_opts(pairs) + list(extra)


# --------------------------------------------------------------------------------------------
# Checks and the loss network's cost
# --------------------------------------------------------------------------------------------
def validate(
    spec: Spec, all_settings: Sequence[Setting], extra: Sequence[str], cache: Dict[str, dict]
) -> Tuple[Dict[str, object], Dict[str, dict]]:
    """Check every setting before anything runs; returns {setting: cfg} and {setting: cost}.
    ``cache``: costs by :func:`loss_net_key` (updated in place)."""
    from percep_det.config import get_percep_cfg

    for path in (spec.config, spec.baseline):
        if not os.path.isfile(_repo_path(path)):
            raise SpecError(
                f"{spec.path}: config file {path!r} does not exist (relative to {REPO})"
            )
    if len(extra) % 2:
        raise SpecError(f"overrides must be KEY VALUE pairs, got {list(extra)}")
    cfgs: Dict[str, object] = {}
    missing_weights: List[str] = []
    for setting in all_settings:
        opts = run_opts(spec, setting, spec.seeds[0], extra)
        where = "the baseline" if setting.is_baseline else f"setting {setting.name!r}"
        if setting.levels:
            where += (
                " ("
                + ", ".join(f"factor {f!r} level {lv!r}" for f, lv in setting.levels.items())
                + ")"
            )
        try:
            cfg = get_percep_cfg(_repo_path(setting.config), opts)
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise SpecError(f"{spec.path}: {where}: {msg}") from None
        cfgs[setting.name] = cfg
        weights = cfg.MODEL.PERCEPTUAL_LOSS.PRETRAINED_WEIGHTS
        if not setting.is_baseline and weights and not os.path.isfile(_repo_path(weights)):
            missing_weights.append(f"  {where}: {weights}")
    if missing_weights:
        without = [
            f"--levels {f.name}="
            + ",".join(lv for lv, o in f.levels.items() if not o.get(PERCEP + "PRETRAINED_WEIGHTS"))
            for f in spec.factors.values()
            if any(o.get(PERCEP + "PRETRAINED_WEIGHTS") for o in f.levels.values())
        ]
        raise SpecError(
            "pretrained loss networks need ImageNet weights that you provide (they are never "
            "downloaded), and these files do not exist:\n" + "\n".join(missing_weights) + "\n"
            "Save each torchvision model's state_dict there (e.g. on a machine with internet: "
            "torch.save(torchvision.models.vgg16(weights='DEFAULT').state_dict(), 'vgg16.pth')) "
            "and pass --var weights_dir=DIR (see the spec's vars), or leave those levels out "
            f"({' '.join(without) or 'with --levels / --factors'})."
        )
    if not has_perceptual_term(cfgs[all_settings[-1].name]):
        print(
            f"WARNING: {spec.config} does not seem to train with the perceptual term "
            "(PercepSemanticSegmentor, a perceptual mask head, MODEL.DEPTH.PERCEPTUAL): the "
            "loss-network settings may change nothing.",
            flush=True,
        )
    costs: Dict[str, dict] = {}
    for setting in all_settings:
        if setting.is_baseline:
            costs[setting.name] = {"flops_per_px": 0.0, "params": 0, "points": [], "depth": None}
            continue
        key = loss_net_key(cfgs[setting.name])
        if key not in cache:
            try:
                cache[key] = loss_net_cost(cfgs[setting.name])
            except (ValueError, KeyError, NotImplementedError) as e:
                raise SpecError(
                    f"{spec.path}: setting {setting.name!r}: its loss network cannot be built: {e}"
                ) from None
        costs[setting.name] = cache[key]
    return cfgs, costs


# --------------------------------------------------------------------------------------------
# Planning: runs, finished ones, time estimate
# --------------------------------------------------------------------------------------------
def _study_file(out: str) -> dict:
    path = os.path.join(out, "study.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def record_settings(
    out: str,
    spec: Spec,
    all_settings: Sequence[Setting],
    costs: Mapping[str, dict],
    cache: Mapping[str, dict],
    extra: Sequence[str] = (),
    launches: bool = True,
) -> None:
    """Record the settings (and the loss-net cost cache) in ``out/study.json``. A setting
    already recorded there with another config, other overrides, or other overrides common to
    every run (the spec's ``common`` and the command line's ``KEY VALUE`` pairs, ``extra``) is an
    error: its runs would mix two settings under one name (a changed ``SOLVER.MAX_ITER`` would
    even count the old runs as finished). With ``launches`` False (``--summary-only``) the
    common overrides are not compared, and the recorded ones are kept."""
    old = _study_file(out)
    recorded = old.get("settings", {})
    common = to_opts(common_pairs(spec)) + [str(x) for x in extra]
    for s in all_settings:
        now = {
            "config": s.config,
            "overrides": to_opts(s.overrides),
            "levels": s.levels,
            "common": common,
        }
        before = recorded.get(s.name)
        if before is None:
            pass
        elif [before["config"], before["overrides"]] != [now["config"], now["overrides"]]:
            raise SpecError(
                f"{out} already holds runs of setting {s.name!r} with config {before['config']} "
                f"and overrides {before['overrides']}; the spec now gives {now['config']} and "
                f"{now['overrides']}. Use another --out (or delete {out}/{s.name})."
            )
        elif not launches:
            now["common"] = before.get("common", now["common"])
        elif "common" in before and before["common"] != now["common"]:  # older files lack it
            raise SpecError(
                f"{out} already holds runs of setting {s.name!r} made with the overrides "
                f"{before['common']} common to every run (the spec's 'common' and the command "
                f"line); they are now {now['common']}. Give the same ones, use another --out, or "
                f"delete {out}/{s.name}."
            )
        recorded[s.name] = {**now, "cost": costs.get(s.name)}
    data = {
        "spec": spec.path,
        "name": spec.name,
        "common": to_opts(list(spec.common.items())),
        "settings": recorded,
        "loss_net_costs": dict(cache),
    }
    os.makedirs(out, exist_ok=True)
    _write_atomic(os.path.join(out, "study.json"), json.dumps(data, indent=1))


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def estimate(
    runs: Sequence[Run],
    states: Mapping[Tuple[str, int], object],
    max_iters: Mapping[str, int],
    costs: Mapping[str, dict],
    keys: Sequence[str],
    parallel: int,
    skipped: Sequence[Tuple[str, int]] = (),
) -> str:
    """A sentence: the time the runs still to do will take, from the step times of the finished
    runs (per setting where it has some; else a straight line in the loss net's FLOPs per pixel
    fitted to all finished runs, or their mean), or "unknown"."""
    done: Dict[str, List[float]] = {}
    for run in runs:
        if states[(run.name, run.seed)].finished:
            found = read_metrics(run.output_dir, keys=keys)
            if found and not math.isnan(found["time"]):
                done.setdefault(run.name, []).append(found["time"])
    todo = [
        r
        for r in runs
        if not states[(r.name, r.seed)].finished and (r.name, r.seed) not in set(skipped)
    ]
    if not todo:
        return "nothing to run"
    if not done:
        return "unknown (no finished run with a step time yet)"
    xs = [costs[name]["flops_per_px"] for name in done]
    ys = [sum(v) / len(v) for v in done.values()]
    slope = 0.0
    if len(set(xs)) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    intercept = sum(ys) / len(ys) - slope * sum(xs) / len(xs)
    total = 0.0
    for run in todo:
        state = states[(run.name, run.seed)]
        start = 0 if state.checkpoint_iter is None else state.checkpoint_iter + 1
        if run.name in done:
            step = sum(done[run.name]) / len(done[run.name])
        else:
            step = max(intercept + slope * costs[run.name]["flops_per_px"], min(ys))
        total += step * max(max_iters[run.name] - start, 0)
    how = f"step times of {sum(len(v) for v in done.values())} finished runs" + (
        "; other settings from a straight line in loss-net FLOPs/px" if slope else ""
    )
    return (
        f"about {_hours(total / max(parallel, 1))} with {max(parallel, 1)} in parallel "
        f"({how}; evaluation time not included)"
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


# --------------------------------------------------------------------------------------------
# Results: CSV, tables, plots
# --------------------------------------------------------------------------------------------
def _compact(overrides: Sequence[Tuple[str, object]]) -> str:
    return (
        " ".join(f"{k[len(PERCEP):] if k.startswith(PERCEP) else k}={v}" for k, v in overrides)
        or "-"
    )


def _level_overrides(spec: Spec, setting: Setting) -> List[Tuple[str, object]]:
    """The overrides that make a setting what it is (the varied level's, or all factors')."""
    if setting.is_baseline:
        return []
    names = [setting.varied] if setting.varied else list(setting.levels)
    keys = {k for f in names for k in spec.factors[f].levels[setting.levels[f]]}
    return [(k, v) for k, v in setting.overrides if k in keys]


def _fmt(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 6)
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value


def results(
    spec: Spec,
    all_settings: Sequence[Setting],
    cfgs: Mapping[str, object],
    costs: Mapping[str, dict],
    out: str,
    at_iteration: Optional[int] = None,
) -> Dict[str, str]:
    """Write results.csv, results.md and the plots from the runs under ``out``; returns
    {what: path} of the files written."""
    keys = [m.key for m in spec.metrics]
    dirs = {
        s.name: {seed: os.path.join(out, s.name, f"seed{seed}") for seed in spec.seeds}
        for s in all_settings
    }
    raw = collect(dirs, at_iteration, keys)  # final evaluations only, unless at_iteration
    stats = {
        (name, seed): read_run_stats(d) for name, seeds in dirs.items() for seed, d in seeds.items()
    }
    written = {"csv": _write_csv(spec, all_settings, cfgs, costs, dirs, stats, out)}

    def peak(name: str) -> float:
        values = [stats[(name, s)]["peak_rss_mb"] for s in raw.get(name, {})]
        cuda = [stats[(name, s)]["cuda_max_mem_mb"] for s in raw.get(name, {})]
        cuda_mean = mean_std(cuda)[0]
        return cuda_mean if not math.isnan(cuda_mean) else mean_std(values)[0]

    def not_done(name: str) -> str:
        counts: Dict[str, int] = {}
        for seed in spec.seeds:
            if seed in raw.get(name, {}):
                continue
            if stats[(name, seed)]["diverged"]:
                why = "diverged"
            elif os.path.isdir(dirs[name][seed]):
                why = "unfinished" if at_iteration is None else f"not at {at_iteration}"
            else:
                why = "not started"
            counts[why] = counts.get(why, 0) + 1
        return ", ".join(f"{why}: {n}" for why, n in counts.items()) or "-"

    extra = [
        ("peak memory (MB)", lambda n: "-" if math.isnan(peak(n)) else f"{peak(n):.0f}"),
        ("loss net (kFLOP/px)", lambda n: f"{costs[n]['flops_per_px'] / 1e3:.1f}"),
        ("runs without result", not_done),
    ]
    when = "final evaluation" if at_iteration is None else f"evaluation at iteration {at_iteration}"
    lines = [
        f"# Loss-network study '{spec.name}'",
        "",
        spec.description,
        "",
        f"Task {spec.config} (baseline without the term: {spec.baseline}); seeds {spec.seeds}; "
        f"design {spec.design}; {when}; mean ± sample std over seeds; step time = mean of "
        "metrics.json 'time' (s/iter, first record dropped); peak memory = CUDA max_mem where "
        "logged, else the peak RSS of the trainer process; loss net = forward FLOPs per input "
        "pixel (fvcore: a multiply-add is one flop). Common overrides: "
        f"{_compact(list(spec.common.items()))}; term overrides: "
        f"{_compact(list(spec.term.items()))}; loss-net seed: {spec.loss_net_seed}.",
        "",
    ]
    by_name = {s.name: s for s in all_settings}
    groups = _table_groups(spec, all_settings)
    for title, members in groups:
        rows = [("baseline", ["baseline", "(no perceptual term)"])]
        for s in members:
            label = _row_label(spec, s)
            rows.append((s.name, [label, _compact(_level_overrides(spec, s))]))
        lines += [f"## {title}", ""]
        lines += mean_table(rows, ["level", "overrides"], raw, spec.metrics, "baseline", extra)
        lines += paired_table(
            [s.name for s in members],
            raw,
            spec.metrics,
            "baseline",
            "level",
            labels=[_row_label(spec, s).split(":")[0] for s in members],
        )
        if spec.design != "grid" and len(members) > 1:
            # the question of a one-at-a-time factor: does a level beat or lose to the reference?
            lines += paired_table(
                [s.name for s in members[1:]],
                raw,
                spec.metrics,
                members[0].name,
                "level",
                labels=[_row_label(spec, s) for s in members[1:]],
            )
        lines.append("")
    written["md"] = os.path.join(out, "results.md")
    _write_atomic(written["md"], "\n".join(lines) + "\n")

    written.update(_plots(spec, all_settings, by_name, cfgs, raw, costs, stats, out))
    return written


def _row_label(spec: Spec, s: Setting) -> str:
    if spec.design == "grid":
        return s.name
    if not s.varied:
        return "reference: " + ", ".join(f"{f}={lv}" for f, lv in s.levels.items())
    return s.levels[s.varied]


def _table_groups(spec: Spec, all_settings: Sequence[Setting]) -> List[Tuple[str, List[Setting]]]:
    """One_at_a_time: per factor, its reference then its other levels; grid: every cell."""
    terms = [s for s in all_settings if not s.is_baseline]
    if spec.design == "grid":
        return [(f"All combinations of {', '.join(f.name for f in varied_factors(spec))}", terms)]
    reference = next(s for s in terms if not s.varied)
    groups = []
    for f in varied_factors(spec):
        members = [reference] + [s for s in terms if s.varied == f.name]
        about = f": {f.description}" if f.description else ""
        groups.append((f"Factor `{f.name}` (reference level: {f.reference}){about}", members))
    return groups


def _write_csv(spec, all_settings, cfgs, costs, dirs, stats, out) -> str:
    keys = [m.key for m in spec.metrics]
    net_keys = (
        "ARCH", "BLOCKS", "WIDTHS", "KERNEL_SIZE", "INIT", "INIT_PARAM", "SEED", "OUT_POINTS",
        "POINT_WEIGHTS", "LOSS_WEIGHT", "PRETRAINED_WEIGHTS",
    )  # fmt: skip
    rows, eval_columns = [], set()
    for s in all_settings:
        cfg = cfgs[s.name]
        for seed in spec.seeds:
            d = dirs[s.name][seed]
            state = run_state(d, keys)
            run_stats = stats[(s.name, seed)]
            if state.finished:
                status = "finished"
            elif run_stats["diverged"]:
                status = "diverged"
            elif os.path.isdir(d):
                status = f"unfinished: {state.reason}"
            else:
                status = "not started"
            row = {
                "setting": s.name,
                "varied_factor": "baseline" if s.is_baseline else (s.varied or "-"),
            }
            row.update({f"level:{f}": s.levels.get(f, "") for f in spec.factors})
            row.update(
                {
                    "seed": seed,
                    "status": status,
                    "config": s.config,
                    "overrides": _compact(s.overrides),
                }
            )
            for k in net_keys:
                if s.is_baseline:
                    row[f"loss_net:{k}"] = ""
                elif k == "SEED" and spec.loss_net_seed == "run":
                    row[f"loss_net:{k}"] = seed
                elif k == "OUT_POINTS":  # the effective points ([] in the config = the deepest)
                    row[f"loss_net:{k}"] = _fmt(costs[s.name]["points"])
                else:
                    row[f"loss_net:{k}"] = _fmt(cfg.MODEL.PERCEPTUAL_LOSS[k])
            cost = costs[s.name]
            row["loss_net_flops_per_px"] = round(cost["flops_per_px"], 1)
            row["loss_net_params"] = cost["params"]
            row["loss_net_depth"] = cost["depth"] if cost["depth"] is not None else ""
            final = read_metrics(d, keys=keys) or {}
            for k in keys:
                row[k] = _fmt(final.get(k, float("nan")))
            row["evaluated_at"] = final.get("iteration", "")
            row["step_time_s"] = _fmt(final.get("time", float("nan")))
            row["step_cpu_time_s"] = _fmt(final.get("cpu_time", float("nan")))  # engine/timing.py
            row["peak_rss_mb"] = _fmt(run_stats["peak_rss_mb"])
            row["cuda_max_mem_mb"] = _fmt(run_stats["cuda_max_mem_mb"])
            row["wall_s"] = round(run_stats["wall_s"], 1)
            row["launches"] = run_stats["launches"]
            for it, values in read_evaluations(d, keys).items():
                for k, v in values.items():
                    row[f"{k}@{it}"] = _fmt(v)
                    eval_columns.add((k, it))
            rows.append(row)
    columns = list(rows[0])
    for k in keys:  # the fixed columns are in every row; evaluations are sorted by key, iteration
        if k not in columns:
            columns.append(k)
    columns = [c for c in columns if "@" not in c]
    columns += [
        f"{k}@{it}" for k, it in sorted(eval_columns, key=lambda e: (keys.index(e[0]), e[1]))
    ]
    path = os.path.join(out, "results.csv")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _seed_values(raw, name: str, key: str, seeds: Sequence[int]) -> List[float]:
    return [raw.get(name, {})[s][key] for s in seeds if s in raw.get(name, {})]


def _plots(spec, all_settings, by_name, cfgs, raw, costs, stats, out) -> Dict[str, str]:
    """levels_<factor>.png, depth.png (if some net was tried at two or more depths), cost.png."""
    written: Dict[str, str] = {}
    labels = {m.key: m.label for m in spec.metrics}
    base = {labels[m.key]: _seed_values(raw, "baseline", m.key, spec.seeds) for m in spec.metrics}
    terms = [s for s in all_settings if not s.is_baseline]
    title = f"{spec.name}: {spec.config}"

    varied = {f.name for f in varied_factors(spec)}
    for f in varied_factors(spec):
        values: Dict[str, Dict[str, Dict[str, List[float]]]] = {labels[k]: {} for k in labels}
        for s in terms:
            if spec.design == "one_at_a_time" and s.varied not in ("", f.name):
                continue
            others = ", ".join(
                f"{g}={lv}" for g, lv in s.levels.items() if g != f.name and g in varied
            )
            series = others if spec.design == "grid" else ""
            for m in spec.metrics:
                per_level = values[m.label].setdefault(series, {})
                per_level[s.levels[f.name]] = _seed_values(raw, s.name, m.key, spec.seeds)
        for m_label in values:  # levels in spec order, the reference marked
            for series, per_level in values[m_label].items():
                values[m_label][series] = {
                    (f"{lv} (ref)" if lv == f.reference else lv): per_level[lv]
                    for lv in f.levels
                    if lv in per_level
                }
        path = os.path.join(out, f"levels_{f.name}.png")
        written[f"levels_{f.name}"] = plot_levels(
            values, path, baseline=base, xlabel=f"{f.name} (reference: {f.reference})", title=title
        )

    lines: Dict[str, List[Setting]] = {}
    for s in terms:
        if len(costs[s.name]["points"]) != 1:
            continue
        rest = [
            (k, v)
            for k, v in s.overrides
            if k not in (PERCEP + "OUT_POINTS", PERCEP + "POINT_WEIGHTS")
        ]
        lines.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(s)
    lines = {k: v for k, v in lines.items() if len({costs[s.name]["depth"] for s in v}) > 1}
    if lines:
        values_d: Dict[str, Dict[str, list]] = {labels[k]: {} for k in labels}
        names = {}
        for k, members in lines.items():
            lcfg = cfgs[members[0].name].MODEL.PERCEPTUAL_LOSS
            arch = str(lcfg.ARCH)
            if arch == "vgg":  # the VGG family is one ARCH: name the net by its blocks
                arch = "vgg " + ",".join(str(b) for b in lcfg.BLOCKS)
            names[k] = arch if arch not in names.values() else f"{arch} ({members[0].name})"
        for k, members in lines.items():
            for m in spec.metrics:
                values_d[m.label][names[k]] = [
                    (
                        costs[s.name]["depth"],
                        costs[s.name]["points"][0],
                        _seed_values(raw, s.name, m.key, spec.seeds),
                    )
                    for s in members
                ]
        written["depth"] = plot_depth(
            values_d, os.path.join(out, "depth.png"), baseline=base, title=title
        )

    names = [s.name for s in all_settings]
    step = [mean_std(_seed_values(raw, n, "time", spec.seeds))[0] for n in names]
    memory = []
    for n in names:
        runs = [stats[(n, s)] for s in spec.seeds if s in raw.get(n, {})]
        cuda = mean_std([r["cuda_max_mem_mb"] for r in runs])[0]
        memory.append(
            cuda if not math.isnan(cuda) else mean_std([r["peak_rss_mb"] for r in runs])[0]
        )
    cpu = [mean_std(_seed_values(raw, n, "cpu_time", spec.seeds))[0] for n in names]
    cost_axes = {"step time (s/iter)": step}
    if any(not math.isnan(v) for v in cpu):  # not inflated by other jobs on a shared machine
        cost_axes["CPU time per step (s)"] = cpu
    cost_axes.update(
        {
            "loss-net kFLOP per input pixel": [costs[n]["flops_per_px"] / 1e3 for n in names],
        }
    )
    if any(not math.isnan(v) for v in memory):
        cost_axes["peak memory (MB)"] = memory
    short = [_short_name(by_name[n]) for n in names]
    written["cost"] = plot_cost(
        short,
        cost_axes,
        {m.label: [_seed_values(raw, n, m.key, spec.seeds) for n in names] for m in spec.metrics},
        os.path.join(out, "cost.png"),
        higher_is_better={m.label: m.higher_is_better for m in spec.metrics},
        title=title,
    )
    return written


def _short_name(s: Setting) -> str:
    if s.is_baseline or not s.levels:
        return s.name
    if s.varied:
        return s.levels[s.varied]
    return "reference" if s.name == "reference" else s.name


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )  # fmt: skip
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--preset", help="a spec of configs/studies/ by name (see --list)")
    which.add_argument("--spec", help="a spec file")
    which.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--config", help="the task config with the term (replaces the spec's)")
    parser.add_argument("--baseline", help="the task config without it (replaces the spec's)")
    parser.add_argument(
        "--metrics",
        metavar="KEY[:LABEL[:lower|higher[:DIGITS]]],...",
        help="replaces the spec's metrics",
    )
    parser.add_argument("--seeds", help="comma-separated SEED values (replaces the spec's)")
    parser.add_argument(
        "--factors",
        help="comma-separated factors to vary (default: all); the others stay at their reference "
        "level, so the settings keep their names and a study can be run a group at a time into "
        "one --out",
    )
    parser.add_argument(
        "--levels", action="append", default=[], metavar="FACTOR=LEVEL[,LEVEL...]",
        help="only these levels of a factor (repeatable)",
    )  # fmt: skip
    parser.add_argument("--design", choices=DESIGNS, help="replaces the spec's design")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="sets a spec var"
    )
    parser.add_argument("--out", help="root of the runs (default: output/studies/<name>)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at the same time")
    parser.add_argument("--num-gpus", type=int, default=1, help="per run (tools/train_net.py)")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the spec and print the plan; run nothing"
    )
    parser.add_argument(
        "--summary-only", action="store_true", help="write the CSV, tables and plots; run nothing"
    )
    parser.add_argument(
        "--retry-diverged", action="store_true", help="run again the runs whose loss diverged"
    )
    parser.add_argument(
        "--at-iteration", type=int, default=None,
        help="tabulate the evaluation logged at this iteration instead of the final one",
    )  # fmt: skip
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="KEY VALUE ... for every run")
    return parser


def prepare(args) -> Tuple[Spec, List[Setting], Dict[str, object], Dict[str, dict], str]:
    """Spec, settings, configs and costs of the command line, all checked; and the output root."""
    spec = load_spec(preset_path(args.preset) if args.preset else os.path.abspath(args.spec))
    changes = {}
    for key in ("config", "baseline"):  # relative to the working directory, else to the repo
        path = getattr(args, key)
        if path:
            changes[key] = os.path.abspath(path) if os.path.isfile(path) else path
    if args.metrics:
        try:
            changes["metrics"] = parse_metrics(args.metrics)
        except ValueError as e:
            raise SpecError(str(e)) from None
    if args.seeds:
        try:
            changes["seeds"] = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise SpecError(
                f"--seeds expects comma-separated integers, got {args.seeds!r}"
            ) from None
    if args.design:
        changes["design"] = args.design
    variables = dict(spec.variables)
    for item in args.var:
        if "=" not in item:
            raise SpecError(f"--var expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        if name not in variables:
            raise SpecError(f"unknown var {name!r} in --var; {spec.path} has {sorted(variables)}")
        variables[name] = value
    clash = sorted(set(variables) & set(spec.factors))
    if clash:
        raise SpecError(f"{spec.path}: vars {clash} have the names of factors")
    spec = spec._replace(variables=variables, **changes)
    factors = [f for f in args.factors.split(",") if f] if args.factors else None
    spec = select(spec, factors, args.levels)
    all_settings = settings(spec)
    out = os.path.abspath(args.out or os.path.join(REPO, "output", "studies", spec.name))
    cache = _study_file(out).get("loss_net_costs", {})
    cfgs, costs = validate(spec, all_settings, args.overrides, cache)
    if not args.dry_run:
        record_settings(
            out, spec, all_settings, costs, cache, args.overrides, not args.summary_only
        )
    return spec, all_settings, cfgs, costs, out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, description in list_presets().items():
            print(f"{name}: {' '.join(description.split())}")
        return
    if not args.preset and not args.spec:
        parser.error("give --preset NAME or --spec FILE (--list shows the presets)")
    try:
        spec, all_settings, cfgs, costs, out = prepare(args)
    except SpecError as e:
        parser.error(str(e))
    keys = [m.key for m in spec.metrics]
    runs = [
        Run(
            s.name,
            seed,
            s.config,
            os.path.join(out, s.name, f"seed{seed}"),
            tuple(run_opts(spec, s, seed, args.overrides)),
        )
        for seed in spec.seeds
        for s in all_settings
    ]
    states = {(r.name, r.seed): run_state(r.output_dir, keys) for r in runs}
    diverged = {
        (r.name, r.seed)
        for r in runs
        if not states[(r.name, r.seed)].finished and read_run_stats(r.output_dir)["diverged"]
    }
    skip = () if args.retry_diverged else sorted(diverged)
    finished = sum(1 for s in states.values() if s.finished)
    resumable = sum(1 for s in states.values() if not s.finished and s.checkpoint_iter is not None)
    max_iters = {name: int(cfg.SOLVER.MAX_ITER) for name, cfg in cfgs.items()}
    print(
        f"Loss-network study '{spec.name}' ({spec.path}): design {spec.design}, factors "
        f"{', '.join(f'{f.name} ({len(f.levels)} levels)' for f in spec.factors.values())}\n"
        f"task {spec.config}, baseline {spec.baseline}, seeds {spec.seeds}, "
        f"{'/'.join(map(str, sorted(set(max_iters.values()))))} iterations per run, under {out}\n"
        f"{len(all_settings)} settings (baseline included) x {len(spec.seeds)} seeds = "
        f"{len(runs)} runs: {finished} finished, {len(runs) - finished} to run ({resumable} of "
        f"them resume from a checkpoint"
        + (
            f"; {len(diverged)} diverged before and are "
            + ("retried" if args.retry_diverged else "skipped")
            if diverged
            else ""
        )
        + ")\n"
        f"estimated time: {estimate(runs, states, max_iters, costs, keys, args.parallel, skip)}",
        flush=True,
    )
    print("| setting | overrides | loss net kFLOP/px | depth | runs finished |")
    print("|---|---|---|---|---|")
    for s in all_settings:
        n_done = sum(1 for seed in spec.seeds if states[(s.name, seed)].finished)
        depth = costs[s.name]["depth"]
        print(
            f"| {s.name} | {_compact(_level_overrides(spec, s))} | "
            f"{costs[s.name]['flops_per_px'] / 1e3:.1f} | {depth or '-'} | "
            f"{n_done}/{len(spec.seeds)} |",
            flush=True,
        )
    if args.dry_run:
        return
    if not args.summary_only:
        results_ = run_all(
            runs,
            TRAIN_NET,
            keys=keys,
            parallel=args.parallel,
            num_gpus=args.num_gpus,
            resume=True,
            skip_diverged=not args.retry_diverged,
            cwd=REPO,
        )
        failed = [(r.name, r.seed) for r in results_ if r.code != 0]
        if failed:
            print(f"runs without success: {failed}", file=sys.stderr)
    written = results(spec, all_settings, cfgs, costs, out, args.at_iteration)
    with open(written["md"]) as f:
        print("\n" + f.read())
    print("written: " + ", ".join(written[k] for k in sorted(written)))


if __name__ == "__main__":
    main()
