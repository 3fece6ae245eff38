"""params.yaml validation: every bad value is one clear line naming the key, the value and what is allowed."""

import copy
import subprocess
import sys

import pytest
import yaml

from repro.al.methods import load_params, method_spec, parse_params
from repro.spec.schema import ConfigError

from .conftest import ROOT


def test_project_params_validate_in_both_profiles():
    for profile in ("smoke", "paper"):
        params = load_params(ROOT / "params.yaml", profile)
        assert params.profile == profile
        assert params.experiment("mcdal_fig3").methods


def test_smoke_profile_overrides_paper_values():
    smoke, paper = load_params(ROOT / "params.yaml", "smoke"), load_params(ROOT / "params.yaml", "paper")
    assert paper.experiment("mcdal_fig3").dataset == "cifar10"
    assert smoke.experiment("mcdal_fig3").dataset.startswith("synthetic-")
    assert paper.recipe("mcdal_cifar").epochs == 99 and paper.recipe("mcdal_cifar").epoch_iterations == 390


def _set(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()
E = "experiments.mcdal_fig3"
R = "recipes.mcdal_cifar"

BAD = [
    # (path, value, key named in the message, text expected in the message)
    ("profile", "fast", "profile", "allowed: ['paper', 'smoke']"),
    (f"{E}.methods", ["random", "entrpy"], f"{E}.methods[1]", "allowed:"),
    (f"{E}.dataset", "cifar11", f"{E}.dataset", "allowed:"),
    (f"{E}.backbone", "resnet19", f"{E}.backbone", "allowed:"),
    (f"{E}.seeds", [0, 1.5], f"{E}.seeds[1]", "integer"),
    (f"{E}.seeds", [0, "a"], f"{E}.seeds[1]", "integer"),
    (f"{E}.seeds", [1, 1], f"{E}.seeds", "duplicates"),
    (f"{R}.lr", -0.1, f"{R}.lr", "number in (0.0"),
    (f"{R}.lr", "0.1x", f"{R}.lr", "number"),
    (f"{R}.batch_size", 0, f"{R}.batch_size", "integer in [1"),
    (f"{R}.epochs", 2.5, f"{R}.epochs", "integer"),
    (f"{R}.augment", ["crop", "cutout"], f"{R}.augment[1]", "allowed:"),
    (f"{R}.optimizer", "lamb", f"{R}.optimizer", "allowed: ['adam', 'sgd']"),
    (f"{R}.milestones", [60, 30], f"{R}.milestones", "increasing"),
    (f"{R}.momentum", 1.5, f"{R}.momentum", "[0.0, 1.0)"),
    (f"{R}.nesterov", "yes", f"{R}.nesterov", "true or false"),
    (f"{R}.lr_typo", 0.1, f"{R}.lr_typo", "unknown key"),
    (f"{E}.schedule.final_fraction", 1.2, f"{E}.schedule.final_fraction", "(0.0, 1.0]"),
    (f"{E}.schedule.initial_fraction", -0.1, f"{E}.schedule.initial_fraction", "(0.0, 1.0]"),
    (f"{E}.schedule.initial_fraction", 0.5, f"{E}.schedule.final_fraction", ">= initial_fraction"),
    (f"{E}.schedule.step_fraction", 0.07, f"{E}.schedule.step_fraction", "multiple"),
    (f"{E}.schedule", {"initial_size": 5000, "query_size": 0, "queries": 3}, f"{E}.schedule.query_size", "[1"),
    (f"{E}.schedule", {"initial_size": 40000, "query_size": 5000, "queries": 3}, f"{E}.schedule.query_size", "exceeds the pool"),
    (f"{E}.schedule", {"initial_size": 100, "step_fraction": 0.1}, f"{E}.schedule", "either"),
    (f"{E}.recipe", "nope", f"{E}.recipe", "allowed: ['ads_cifar', 'ads_ssd', 'daal_drn', 'daal_wrn', 'dal_lenet', 'dal_vgg', 'mal_cifar', 'mal_drn', 'mal_imagenet', 'mcdal_caltech', 'mcdal_cifar', 'mcdal_drn']"),
    (f"{E}.width", 0, f"{E}.width", "(0.0, 16.0]"),
    (f"{E}.train_size", 60000, f"{E}.train_size", "at most 50000"),
    (f"{E}.seeds", _DELETE, f"{E}.seeds", "required"),
    ("device", "tpu", "device", "allowed:"),
]


@pytest.mark.parametrize("path,value,key,allowed", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_value_is_one_clear_error(base_params, path, value, key, allowed):
    raw = copy.deepcopy(base_params)
    raw["profile"] = "paper"
    _set(raw, path, value)
    with pytest.raises(ConfigError) as exc:
        parse_params(raw)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{key} = "), msg
    assert allowed in msg, msg


@pytest.mark.parametrize("path, value, chosen, key", [
    # a base (paper) value that the smoke profile overrides is still checked when smoke is chosen
    ("recipes.mcdal_cifar.lr", "abc", "smoke", "(profile paper) recipes.mcdal_cifar.lr"),
    ("experiments.dal_mnist_b10.schedule.queries", -1, "smoke", "(profile paper) experiments.dal_mnist_b10.schedule.queries"),
    ("experiments.mcdal_fig3.seeds", [0, -3], "smoke", None),  # smoke keeps its own seeds; paper's are bad
    # and a smoke override is checked when paper is chosen
    ("profiles.smoke.experiments.mcdal_fig3.seeds", [0, -1], "paper", "(profile smoke) experiments.mcdal_fig3.seeds[1]"),
    ("profiles.smoke.recipes.dal_lenet.epochs", "eight", "paper", "(profile smoke) recipes.dal_lenet.epochs"),
    ("profiles.smoke.experiments.ads_cifar10.train_size", 0, "paper", "(profile smoke) experiments.ads_cifar10.train_size"),
])
def test_every_profile_is_validated(base_params, path, value, chosen, key):
    raw = copy.deepcopy(base_params)
    _set(raw, path, value)
    with pytest.raises(ConfigError) as exc:
        parse_params(raw, chosen)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{key or '(profile paper) experiments.mcdal_fig3.seeds[1]'} = "), msg


def test_profile_cannot_change_methods(base_params):
    raw = copy.deepcopy(base_params)
    raw["profiles"]["smoke"]["experiments"]["mcdal_fig3"]["methods"] = ["random"]
    with pytest.raises(ConfigError, match="cannot change methods"):
        parse_params(raw, "smoke")


def test_profile_override_with_bad_key_is_caught(base_params):
    raw = copy.deepcopy(base_params)
    raw["profiles"]["smoke"]["recipes"]["mcdal_cifar"]["epochz"] = 3
    with pytest.raises(ConfigError, match=r"recipes.mcdal_cifar.epochz = 3 .*unknown key"):
        parse_params(raw, "smoke")


def test_budget_larger_than_pool_in_smoke(base_params):
    raw = copy.deepcopy(base_params)
    raw["experiments"]["mcdal_fig3"]["schedule"] = {"initial_size": 100, "query_size": 1000, "queries": 2}
    raw["profiles"]["smoke"]["experiments"]["mcdal_fig3"].pop("schedule")  # smoke's own step_fraction
    with pytest.raises(ConfigError, match="exceeds the pool of 800"):
        parse_params(raw, "smoke")


def test_cli_check_prints_one_line_and_exits_nonzero(tmp_path, base_params):
    raw = copy.deepcopy(base_params)
    raw["recipes"]["mcdal_cifar"]["momentum"] = -5
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "repro", "--params", str(bad), "check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "recipes.mcdal_cifar.momentum = -5" in lines[0]


def test_cli_check_lists_datasets(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "repro", "check"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for name in ("cifar10", "cifar100", "mnist", "caltech101"):
        assert name in proc.stdout


def test_variants_are_validated_by_the_method_options(base_params):
    raw = copy.deepcopy(base_params)
    raw["profile"] = "paper"
    raw["variants"]["mcdal-h4"] = {"method": "mcdal", "heads": 4, "distance": "kl"}
    raw["experiments"]["mcdal_fig3"]["methods"] = ["random", "mcdal-h4"]
    params = parse_params(raw)
    method, opts = method_spec(params, "mcdal-h4")
    assert method == "mcdal" and opts.heads == 4 and opts.distance == "kl"
    for body, key, text in [
        ({"method": "mcdal", "heads": 1}, "variants.mcdal-h4.heads", "integer in [2"),
        ({"method": "mcdal", "distance": "cos"}, "variants.mcdal-h4.distance", "allowed: ['kl', 'l1', 'l2']"),
        ({"method": "mcdl"}, "variants.mcdal-h4.method", "allowed:"),
        ({"method": "mcdal", "head": 4}, "variants.mcdal-h4.head", "unknown key"),
        ({"heads": 4}, "variants.mcdal-h4", "expected {method:"),
    ]:
        raw["variants"]["mcdal-h4"] = body
        with pytest.raises(ConfigError) as exc:
            parse_params(raw)
        assert str(exc.value).startswith(f"{key} = ") and text in str(exc.value), str(exc.value)
    raw["variants"]["mcdal-h4"] = {"method": "mcdal", "heads": 4}
    raw["variants"]["entropy"] = {"method": "margin"}
    with pytest.raises(ConfigError, match="cannot reuse"):
        parse_params(raw)


def test_experiment_options_override_method_defaults(base_params):
    raw = copy.deepcopy(base_params)
    raw["profile"] = "paper"
    raw["experiments"]["mcdal_fig3"]["options"] = {"ll": {"subset": 5000}}
    params = parse_params(raw)
    assert method_spec(params, "ll", "mcdal_fig3")[1].subset == 5000
    assert method_spec(params, "ll")[1].subset == 10000  # LL4AL's default random subset
    raw["experiments"]["mcdal_fig3"]["options"] = {"ll": {"subset": 0}}
    with pytest.raises(ConfigError, match=r"^experiments.mcdal_fig3.options.ll.subset = 0 "):
        parse_params(raw)
    raw["experiments"]["mcdal_fig3"]["options"] = {"margin": {"subset": 5}}
    with pytest.raises(ConfigError, match="not in methods"):
        parse_params(raw)


def test_config_does_not_import_the_strategy_registry():
    """Dependencies run one way: config parses the file; repro.al.methods checks the method names."""
    import subprocess
    import sys

    code = "import sys, repro.spec.params; print('repro.al.strategies' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


def test_a_query_subset_smaller_than_the_budget_is_caught_before_any_run(base_params):
    raw = copy.deepcopy(base_params)
    raw["profiles"]["smoke"]["experiments"]["dal_cifar10_b10000"]["options"]["dfal"]["subset"] = 50
    with pytest.raises(ConfigError, match=r"dal_cifar10_b[0-9]+.options.dfal.subset = 50 .*largest query budget"):
        parse_params(raw, "smoke")
