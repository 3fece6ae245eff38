"""params.yaml -> frozen, validated dataclasses. A bad value is one clear line before any work starts.

Layout of params.yaml: shared `recipes` (training settings), `experiments` (one per paper figure/table
protocol), and `profiles` whose selected entry is deep-merged over the rest. The base values are the
papers' settings; `profiles.smoke` shrinks sizes, epochs, widths, seeds and swaps in embedded datasets.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from repro.spec.datasets import DATASETS, get_spec
from repro.spec.recipe import FRAME_CROPS, TASK_AUGMENTATIONS, Recipe
from repro.spec.schema import (
    Bool,
    Check,
    Choice,
    ConfigError,
    Float,
    Int,
    ListOf,
    MapOf,
    Nested,
    Optional,
    Str,
    build,
    spec,
)

PROFILES = ("smoke", "paper")
PAPERS = ("mcdal", "ads", "daal", "mal", "dal")
DEVICES = ("auto", "cpu", "cuda")


def _datasets():

    return DATASETS


# the backbones of repro.models.BACKBONES, named here so params validate without importing torch (the figure and
# audit stages); tests/test_models.py checks the two agree
BACKBONE_NAMES = ("lenet", "resnet18", "resnet18-imagenet", "vgg16", "wrn28_2", "drn_d_22", "ssd300")
PRETRAINED_BACKBONES = ("drn_d_22", "ssd300")  # repro/models/weights.py PRETRAINED (a test checks they agree)
# the task each backbone solves (classification unless named); the dataset's task must match
BACKBONE_TASKS = {"drn_d_22": "segmentation", "ssd300": "detection"}
# what an experiment may report per task (repro.core.tasks.TASK_METRICS, named here without importing torch)
TASK_METRICS = {"classification": ("accuracy",), "segmentation": ("miou",),
                "detection": ("map50_voc07", "map50_coco101")}
METRIC_LABELS = {"accuracy": "accuracy", "miou": "mIoU", "map50_voc07": "mAP@0.5 (VOC07 11-point)",
                 "map50_coco101": "mAP@0.5 (101-point)"}


class _RawMap(Check):
    """A mapping name -> mapping, kept raw here and validated in the cross-checks."""

    def __call__(self, key, value):
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(key, value, "expected a mapping method -> {option: value}")
        return tuple((str(k), tuple(sorted(v.items()))) for k, v in value.items())


class _GroupRuns(Check):
    """group_runs: "auto" (as many as the memory cap allows) or a positive integer (1 = every run alone)."""

    def __call__(self, key, value):
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, value, 'expected "auto" or an integer >= 1 (1: every run trains alone)')
        return value


class _Threads(Check):
    """threads: "auto" (1 on a CPU; on CUDA the cores per local rank) or a positive integer: torch threads per run."""

    def __call__(self, key, value):
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
            raise ConfigError(key, value, 'expected "auto" or an integer in [1, 1024] (torch threads per run)')
        return value


class _Variants(Check):
    """variants: name -> {method: <registered name>, **options}, kept raw here: `repro.al.methods` checks the
    method name and builds its options (config does not know the strategy registry)."""

    def __call__(self, key, value):
        if not isinstance(value, dict):
            raise ConfigError(key, value, "expected a mapping variant name -> {method: ..., options}")
        out = []
        for name, body in value.items():
            where = f"{key}.{name}"
            if not isinstance(body, dict) or "method" not in body or not isinstance(body["method"], str):
                raise ConfigError(where, body, "expected {method: <registered method>, <option>: <value>, ...}")
            options = tuple(sorted((str(k), v) for k, v in body.items() if k != "method"))
            out.append((str(name), (body["method"], options)))
        return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Labeled-set sizes per stage: fractions of the pool (MCDAL: 0.10 -> 0.40 by 0.05) or counts (DAL)."""

    initial_fraction: float | None = spec(Optional(Float(0.0, 1.0, lo_open=True)), None)
    step_fraction: float | None = spec(Optional(Float(0.0, 1.0, lo_open=True)), None)
    final_fraction: float | None = spec(Optional(Float(0.0, 1.0, lo_open=True)), None)
    initial_size: int | None = spec(Optional(Int(1)), None)
    query_size: int | None = spec(Optional(Int(1)), None)
    queries: int | None = spec(Optional(Int(0, 100_000)), None)

    def labeled_counts(self, pool_size: int, key: str = "schedule") -> tuple[int, ...]:
        """Labeled-set size at each stage; validates the schedule against the pool."""
        fr = (self.initial_fraction, self.step_fraction, self.final_fraction)
        ct = (self.initial_size, self.query_size, self.queries)
        fr_set, ct_set = [v is not None for v in fr], [v is not None for v in ct]
        if any(fr_set) == any(ct_set) or (any(fr_set) and not all(fr_set)) or (any(ct_set) and not all(ct_set)):
            raise ConfigError(
                key, {k: v for k, v in asdict(self).items() if v is not None},
                "give either initial_fraction/step_fraction/final_fraction or initial_size/query_size/queries",
            )
        if all(fr_set):
            ini, step, fin = fr
            if fin < ini:
                raise ConfigError(f"{key}.final_fraction", fin, f"expected >= initial_fraction ({ini})")
            n_steps = (fin - ini) / step
            if abs(n_steps - round(n_steps)) > 1e-6:
                raise ConfigError(
                    f"{key}.step_fraction", step, f"expected (final - initial) = {fin - ini:g} to be a multiple of it"
                )
            counts = tuple(int(round((ini + i * step) * pool_size)) for i in range(int(round(n_steps)) + 1))
            if counts[0] < 1:
                raise ConfigError(f"{key}.initial_fraction", ini, f"gives no labeled example of a pool of {pool_size}")
            if len(set(counts)) != len(counts):
                raise ConfigError(f"{key}.step_fraction", step, f"rounds to a zero budget on a pool of {pool_size}")
        else:
            ini, q, n = ct
            counts = tuple(ini + i * q for i in range(n + 1))
            if counts[-1] > pool_size:
                raise ConfigError(
                    f"{key}.query_size", q,
                    f"initial_size + queries * query_size = {counts[-1]} exceeds the pool of {pool_size}",
                )
        if counts[-1] > pool_size:
            raise ConfigError(key, counts[-1], f"the final labeled size exceeds the pool of {pool_size}")
        return counts


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One paper protocol: dataset, backbone, recipe, methods, schedule and seeds."""

    paper: str = spec(Choice(PAPERS))
    dataset: str = spec(Choice(_datasets))
    backbone: str = spec(Choice(BACKBONE_NAMES))
    recipe: str = spec(Str())
    # registered method names or names from `variants` (checked against both after parsing)
    methods: tuple[str, ...] = spec(ListOf(Str(), min_len=1, unique=True))
    schedule: Schedule = spec(Nested(Schedule))
    seeds: tuple[int, ...] = spec(ListOf(Int(0, 2**31 - 1), min_len=1, unique=True))
    width: float = spec(Float(0.0, 16.0, lo_open=True), 1.0)
    dropout: float | None = spec(Optional(Float(0.0, 1.0, hi_open=True)), None)
    # start the backbone from its pinned ImageNet weights in data/weights/ (repro/models/weights.py: DRN-D-22,
    # SSD300's VGG-16); full width only
    pretrained: bool = spec(Bool(), False)
    train_size: int | None = spec(Optional(Int(1)), None)  # subsample (real) / generate (synthetic) this many
    test_size: int | None = spec(Optional(Int(1)), None)
    imbalance: float = spec(Float(0.0, 1.0, lo_open=True), 1.0)  # synthetic only: rarest/most frequent class
    # a per-run subset of the training pool drawn from the run seed: "mal-imbalanced" = MAL Sec. 4.1's
    # CIFAR-100-imbalanced (each run starts from its own imbalanced distribution; the test set stays balanced)
    train_subset: str | None = spec(Optional(Choice(("mal-imbalanced",))), None)
    # the curve's metric: accuracy (classification), miou (segmentation), map50_voc07 (detection)
    metric: str = spec(Choice(tuple(m for ms in TASK_METRICS.values() for m in ms)), "accuracy")
    # synthetic only: generate this many classes instead of the real dataset's (smoke stand-ins of ImageNet /
    # iNaturalist keep the image shape but not 1,000 / 8,142 classes on a 300-image pool)
    classes: int | None = spec(Optional(Int(2, 100_000)), None)
    # methods whose task-model features (labeled and unlabeled samples) are saved after every stage for an
    # embedding figure (ADS Fig. 4): results/<experiment>/<method>/seed<k>.features.npz
    features_of: tuple[str, ...] = spec(ListOf(Str(), unique=True), ())
    # methods whose first query saves the model's predictions on the images it picked for a figure (ADS Fig. 7:
    # the two adversarial classifiers' detections): results/<experiment>/<method>/seed<k>.predictions.npz
    predictions_of: tuple[str, ...] = spec(ListOf(Str(), unique=True), ())
    # per-method option overrides for this experiment: {method: {option: value}} (checked by the method's
    # Options after parsing; merged over a variant's options)
    options: tuple[tuple[str, Any], ...] = spec(_RawMap(), ())

    def pool_size(self) -> int:

        if self.train_size is None:
            return get_spec(self.dataset).train_size
        # synthetic data are generated at train_size; real data are subsampled to it (at most the full set)
        return self.train_size if self.synthetic else min(self.train_size, get_spec(self.dataset).train_size)

    @property
    def synthetic(self) -> bool:
        return self.dataset.startswith("synthetic-")


@dataclass(frozen=True, kw_only=True)
class Rankings:
    """Per seed, one task model trained on `of`'s initial labeled set; every method scores every unlabeled
    example with it (DAL Fig. 3). Seeds, data and recipe are `of`'s."""

    of: str = spec(Str())
    methods: tuple[str, ...] = spec(ListOf(Str(), min_len=2, unique=True))


@dataclass(frozen=True, kw_only=True)
class Params:
    profile: str = spec(Choice(PROFILES))
    device: str = spec(Choice(DEVICES), "auto")
    data_dir: str = spec(Str(), "data")
    results_dir: str = spec(Str(), "results")
    reports_dir: str = spec(Str(), "reports")
    checkpoint_dir: str = spec(Str(), "checkpoints")
    # runs trained in lockstep (repro.exec.lockstep): at most this many runs of an experiment that train the same
    # model with the same recipe on equally many labels share one vmapped step; "auto": as memory allows
    group_runs: int | str = spec(_GroupRuns(), 1)
    # torch threads of every run, whatever the number of pending runs or worker processes (repro.core.determinism):
    # part of the machine class that makes records bit-identical; "auto": 1 on a CPU
    threads: int | str = spec(_Threads(), "auto")
    # torch.use_deterministic_algorithms, cudnn.benchmark off, CUBLAS_WORKSPACE_CONFIG, and group_runs forced to 1
    deterministic: bool = spec(Bool(), False)
    recipes: tuple[tuple[str, Recipe], ...] = spec(MapOf(Recipe, min_len=1))
    experiments: tuple[tuple[str, Experiment], ...] = spec(MapOf(Experiment, min_len=1))
    # named method variants: {name: {method: <registered>, <option>: <value>, ...}}, validated by the
    # method's own Options; usable wherever a method name is (e.g. mcdal-h4: {method: mcdal, heads: 4})
    variants: tuple[tuple[str, Any], ...] = spec(_Variants(), ())
    rankings: tuple[tuple[str, Rankings], ...] = spec(MapOf(Rankings), ())
    # profile-wide option defaults per registered method ({vaal: {vae_width: 0.0625}}): under a variant's and
    # an experiment's options (the smoke profile shrinks every VAE this way)
    method_options: tuple[tuple[str, Any], ...] = spec(_RawMap(), ())

    def __post_init__(self) -> None:
        if self.deterministic and self.group_runs != 1:  # lockstep groups off: every run trains alone
            object.__setattr__(self, "group_runs", 1)

    def ranking(self, name: str) -> Rankings:
        r = dict(self.rankings)
        if name not in r:
            raise ConfigError("rankings", name, f"allowed: {sorted(r)}")
        return r[name]

    def recipe(self, name: str) -> Recipe:
        return dict(self.recipes)[name]

    def experiment(self, name: str) -> Experiment:
        exps = dict(self.experiments)
        if name not in exps:
            raise ConfigError("experiment", name, f"allowed: {sorted(exps)}")
        return exps[name]


def _merge(base: dict, override: dict, path: str) -> dict:
    """Deep-merge a profile's overrides into the base (unknown keys are caught when the result is built)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}"
        if key in ("profile", "profiles"):
            raise ConfigError(where, value, "a profile cannot set the profile")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, where)
        else:
            out[key] = value
    return out


def _cross_checks(params: Params) -> None:
    recipes = dict(params.recipes)
    for name, rec in params.recipes:
        key = f"recipes.{name}"
        if rec.milestones and rec.milestones[-1] > rec.epochs:
            raise ConfigError(f"{key}.milestones", list(rec.milestones), f"expected epochs <= {rec.epochs}")
        if rec.warmup_epochs > rec.epochs:
            raise ConfigError(f"{key}.warmup_epochs", rec.warmup_epochs, f"expected <= epochs ({rec.epochs})")
        if rec.best_after_epoch >= rec.epochs:
            raise ConfigError(f"{key}.best_after_epoch", rec.best_after_epoch, f"expected < epochs ({rec.epochs})")
        if rec.best_after_epoch and rec.validation_fraction == 0:
            raise ConfigError(f"{key}.best_after_epoch", rec.best_after_epoch, "needs validation_fraction > 0")

    for name, exp in params.experiments:
        key = f"experiments.{name}"
        if exp.recipe not in recipes:
            raise ConfigError(f"{key}.recipe", exp.recipe, f"allowed: {sorted(recipes)}")
        for m, _ in exp.options:
            if m not in exp.methods:
                raise ConfigError(f"{key}.options.{m}", m, f"options for a method not in methods {list(exp.methods)}")
        if exp.train_subset == "mal-imbalanced" and get_spec(exp.dataset).num_classes != 100:
            raise ConfigError(f"{key}.train_subset", exp.train_subset,
                              f"MAL's imbalanced subset takes 5 ratios x 20 classes: a 100-class dataset, not {exp.dataset}")
        if exp.classes is not None and not exp.synthetic:
            raise ConfigError(f"{key}.classes", exp.classes, "only synthetic datasets take a class count (the real "
                              "dataset's classes are fixed)")
        for field_name in ("features_of", "predictions_of"):
            for m in getattr(exp, field_name):
                if m not in exp.methods:
                    raise ConfigError(f"{key}.{field_name}", m, f"not one of the experiment's methods {list(exp.methods)}")
        if exp.imbalance != 1.0 and not exp.synthetic:
            raise ConfigError(f"{key}.imbalance", exp.imbalance, "only synthetic datasets take an imbalance (use 1.0)")
        full = get_spec(exp.dataset)
        if exp.pretrained and (exp.backbone not in PRETRAINED_BACKBONES or exp.width != 1.0):
            raise ConfigError(f"{key}.pretrained", True, f"pinned weights exist for {list(PRETRAINED_BACKBONES)} at "
                              f"width 1 only ({exp.backbone} x{exp.width:g})")
        model_task = BACKBONE_TASKS.get(exp.backbone, "classification")
        if model_task != full.task:
            raise ConfigError(f"{key}.backbone", exp.backbone, f"solves {model_task}, but {exp.dataset} is a "
                              f"{full.task} dataset")
        if exp.metric not in TASK_METRICS[full.task]:
            raise ConfigError(f"{key}.metric", exp.metric, f"{exp.dataset} is a {full.task} dataset: expected one of "
                              f"{list(TASK_METRICS[full.task])}")
        _check_augment(f"recipes.{exp.recipe}.augment", recipes[exp.recipe].augment, full, key)
        if not exp.synthetic:
            for k, cap in (("train_size", full.train_size), ("test_size", full.test_size)):
                v = getattr(exp, k)
                if v is not None and v > cap:
                    raise ConfigError(f"{key}.{k}", v, f"expected at most {cap} ({exp.dataset} has {cap})")
        if exp.backbone == "lenet" and min(full.height, full.width) < 10:
            raise ConfigError(f"{key}.backbone", exp.backbone, f"LeNet needs images >= 10x10; {exp.dataset} is smaller")
        counts = exp.schedule.labeled_counts(exp.pool_size(), f"{key}.schedule")
        rec = recipes[exp.recipe]
        if rec.validation_fraction and math.floor(counts[0] * rec.validation_fraction) < 1:
            raise ConfigError(
                f"recipes.{exp.recipe}.validation_fraction", rec.validation_fraction,
                f"holds out no example of the {counts[0]} initially labeled in {key}",
            )


def _check_augment(key: str, augment: tuple[str, ...], spec, used_by: str) -> None:
    """The recipe's augmentations are defined for the dataset's targets; frames stored larger than the model's
    input name how they are cropped (frame_crop: random, frame_center: fixed), and only one way."""
    allowed = TASK_AUGMENTATIONS[spec.task]
    bad = [a for a in augment if a not in allowed]
    if bad:
        raise ConfigError(key, list(augment), f"{bad} not defined for {spec.task} targets ({used_by} trains "
                          f"{spec.name}); allowed: {list(allowed)}")
    crops = [a for a in augment if a in FRAME_CROPS]
    if len(crops) > 1:
        raise ConfigError(key, list(augment), f"name one of {list(FRAME_CROPS)}, not both")
    if "ssd" in augment and "flip" in augment:
        raise ConfigError(key, list(augment), "ssd already flips: drop flip")
    stored = spec.stored_shape[1:]
    if spec.task == "segmentation" and stored != (spec.height, spec.width) and not crops:
        raise ConfigError(key, list(augment), f"{spec.name} frames are stored at {stored[0]}x{stored[1]} and the "
                          f"model takes {spec.height}x{spec.width} ({used_by}): add frame_crop (random) or "
                          f"frame_center (fixed)")


def _check_rankings(params: Params) -> None:
    exps = dict(params.experiments)
    for name, r in params.rankings:
        if r.of not in exps:
            raise ConfigError(f"rankings.{name}.of", r.of, f"allowed: {sorted(exps)}")


def parse_params(raw: Any, profile: str | None = None, checks: Sequence[Callable[[Params], None]] = ()) -> Params:
    """Validate a params mapping (as loaded from YAML) in full and return the resolved Params of the chosen
    profile. Every other profile's merged values are validated too (an error names the profile), so a bad
    base (paper) value is caught on a CPU before anyone runs the paper profile on a GPU."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml", raw, "expected a mapping at the top level")
    raw = dict(raw)
    profiles = raw.get("profiles", {}) or {}
    if profile is not None:
        raw["profile"] = profile
    chosen = Choice(PROFILES)("profile", raw.get("profile"))
    if not isinstance(profiles, dict):
        raise ConfigError("profiles", profiles, "expected a mapping profile name -> overrides")
    for name in profiles:
        Choice(PROFILES)(f"profiles.{name}", name)
    params = _parse_profile(raw, chosen, checks)
    for other in PROFILES:
        if other != chosen and (other == "paper" or other in profiles):
            try:
                _parse_profile(raw, other, checks)
            except ConfigError as e:
                raise ConfigError(f"(profile {other}) {e.key}", e.value, e.allowed) from None
    return params


def _parse_profile(raw: dict, chosen: str, checks: Sequence[Callable[[Params], None]] = ()) -> Params:
    """The Params of one profile: its overrides deep-merged over the base values, validated in full."""
    raw = dict(raw)
    profiles = raw.pop("profiles", {}) or {}
    raw["profile"] = chosen
    override = profiles.get(chosen) or {}
    if not isinstance(override, dict):
        raise ConfigError(f"profiles.{chosen}", override, "expected a mapping of overrides")
    for name, section in (override.get("experiments") or {}).items():
        if isinstance(section, dict) and "methods" in section:
            raise ConfigError(
                f"profiles.{chosen}.experiments.{name}.methods", section["methods"],
                f"a profile cannot change methods (dvc.yaml makes one stage per method); edit experiments.{name}.methods",
            )
    merged = _merge(raw, override, f"profiles.{chosen}")
    params = build(Params, merged, "")
    _cross_checks(params)
    _check_rankings(params)
    for check in checks:  # e.g. repro.al.methods.check_methods: method names and options
        check(params)
    return params


def load_params(path: str | Path = "params.yaml", profile: str | None = None,
                checks: Sequence[Callable[[Params], None]] = ()) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("params.yaml", str(path), "file not found; run from the project root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError(str(path), f"line {line + 1 if line is not None else '?'}", f"not valid YAML ({e.problem if hasattr(e, 'problem') else e})") from None
    return parse_params(raw, profile, checks)
