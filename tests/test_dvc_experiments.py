"""DVC experiments keep their metrics, `-S` overrides change only their own experiment, and the run records'
dirty-tree check ignores what DVC writes (issue 21, item 4).

The temporary repositories mirror the project: its `.gitignore` rules for `reports/` and `results/` and the audit
stage's `metrics` declaration are copied from the project's files, so a regression there fails here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from repro.spec.records import dvc_output_paths, git_commit

from .conftest import ROOT


def _run(args: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _git_repo(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _run(["git", "init", "-q", "-b", "main"], path)
    _run(["git", "config", "user.name", "repro tests"], path)
    _run(["git", "config", "user.email", "repro-tests@example.invalid"], path)
    _run(["git", "config", "commit.gpgsign", "false"], path)


def _commit(path: Path, message: str) -> None:
    _run(["git", "add", "-A"], path)  # what a user does: .gitignore decides what is committed
    _run(["git", "commit", "-q", "-m", message], path)


def _project_ignore_rules() -> str:
    """The project's .gitignore lines for the DVC outputs (results/, reports/)."""
    lines = [ln for ln in (ROOT / ".gitignore").read_text().splitlines() if "reports" in ln or "results" in ln]
    assert any("reports" in ln for ln in lines), "no rule for reports/ in .gitignore: update this test"
    return "\n".join(lines) + "\n"


def _project_metrics_declaration() -> list:
    """The audit stage's `metrics` entry of the project's dvc.yaml (reports/metrics.json, cache: false)."""
    metrics = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["audit"]["metrics"]
    names = [m if isinstance(m, str) else next(iter(m)) for m in metrics]
    assert names == ["reports/metrics.json"], f"the audit's metrics changed to {names}: update this test"
    return metrics


# --- the records' dirty-tree check ---------------------------------------------------------------------------

def test_dvc_output_paths_reads_outs_metrics_and_plots(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {
            "a": {"cmd": "x", "outs": ["results/a", {"reports/a.json": {"cache": True}}],
                  "metrics": [{"reports/metrics.json": {"cache": False}}], "plots": ["reports/a.csv"]},
            "b": {"cmd": "y", "wdir": "sub", "outs": ["../reports/b.png", "out"]},
        },
        "plots": [{"reports/p.json": {"x": "x", "y": ["v"]}}, "reports/p.png",
                  {"custom": {"x": {"reports/q.json": "x"}, "y": {"reports/q.json": ["v"]}}}],
        "metrics": ["reports/top.json"],
    }))
    got = set(dvc_output_paths(tmp_path / "dvc.yaml"))
    assert got == {"dvc.lock", "results/a", "reports/a.json", "reports/metrics.json", "reports/a.csv",
                   "reports/b.png", "sub/out", "reports/p.json", "reports/p.png", "reports/q.json", "reports/top.json"}
    assert dvc_output_paths(tmp_path / "missing.yaml") == ("dvc.lock",)
    # the project's own file: every stage's outs and the committed metrics
    project = set(dvc_output_paths(ROOT / "dvc.yaml"))
    assert {"dvc.lock", "reports/metrics.json", "results/mcdal_fig3", "reports/audit.json"} <= project


def test_git_commit_ignores_dvc_outputs_but_not_sources(tmp_path):
    repo = tmp_path / "repo"
    _git_repo(repo)
    (repo / ".gitignore").write_text(_project_ignore_rules())
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "run": {"cmd": "python run.py", "deps": ["run.py"], "outs": ["results/run"]},
        "audit": {"cmd": "python audit.py", "deps": ["results/run"], "outs": ["reports/audit.json"],
                  "metrics": _project_metrics_declaration()},
    }}))
    (repo / "run.py").write_text("print('v1')\n")
    (repo / "reports").mkdir()
    (repo / "reports" / "metrics.json").write_text('{"reproduced": 1}\n')
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    _commit(repo, "init")
    clean = git_commit(repo)
    assert re.fullmatch(r"[0-9a-f]{40}", clean["commit"]) and clean["dirty"] is False

    (repo / "reports" / "metrics.json").write_text('{"reproduced": 2}\n')  # what `dvc repro` rewrites
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert git_commit(repo) == {"commit": clean["commit"], "dirty": False}

    (repo / "run.py").write_text("print('v2')\n")  # a tracked source file
    assert git_commit(repo)["dirty"] is True
    _run(["git", "checkout", "-q", "--", "run.py"], repo)
    assert git_commit(repo)["dirty"] is False
    (repo / "dvc.yaml").write_text((repo / "dvc.yaml").read_text() + "\n")  # dvc.yaml itself is a source
    assert git_commit(repo)["dirty"] is True

    assert git_commit(tmp_path) == {"commit": None, "dirty": None}  # not a git checkout


# --- `dvc exp run` keeps the metrics ------------------------------------------------------------------------

STAGE1 = "import yaml; n = yaml.safe_load(open('params.yaml'))['train']['n']; open('results/n.txt', 'w').write(str(n))"
STAGE2 = ("import json, pathlib; n = int(open('results/n.txt').read()); pathlib.Path('reports').mkdir(exist_ok=True); "
          "json.dump({'n': n}, open('reports/audit.json', 'w')); "
          "json.dump({'overall': {'reproduced': 2 * n, 'claims': n + 1}}, open('reports/metrics.json', 'w'))")


def _numbers(tree) -> list:
    """Every number under the `reports/metrics.json` entries of `dvc exp show --json` (any nesting)."""
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == "reports/metrics.json" and isinstance(v, dict):
                out.append(v.get("data"))
            else:
                out += _numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            out += _numbers(v)
    return out


def _flat(d, prefix="") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def test_dvc_exp_run_keeps_metrics_and_metrics_diff_loads_head(tmp_path):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
           "GIT_TERMINAL_PROMPT": "0"}
    dvc = [sys.executable, "-m", "dvc"]
    repo = tmp_path / "repo"
    _git_repo(repo)
    _run([*dvc, "init", "-q"], repo, env)
    _run([*dvc, "config", "core.analytics", "false"], repo, env)
    _run([*dvc, "config", "core.check_update", "false"], repo, env)
    (repo / ".gitignore").write_text(_project_ignore_rules())
    (repo / "params.yaml").write_text("train:\n  n: 3\n")
    py = sys.executable  # the venv's interpreter (PyYAML installed)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "prepare": {"cmd": f'mkdir -p results && "{py}" -c "{STAGE1}"', "params": ["train.n"],
                    "outs": ["results/n.txt"]},
        "audit": {"cmd": f'"{py}" -c "{STAGE2}"', "deps": ["results/n.txt"], "outs": ["reports/audit.json"],
                  "metrics": _project_metrics_declaration()},
    }}, sort_keys=False))
    _commit(repo, "pipeline")
    _run([*dvc, "repro", "-q"], repo, env)
    _commit(repo, "dvc repro: dvc.lock and reports/metrics.json")
    tracked = _run(["git", "ls-files"], repo).stdout.split()
    assert "reports/metrics.json" in tracked, (
        f"reports/metrics.json is not committed by `git add -A` (git-ignored?): tracked {tracked}")
    assert "dvc.lock" in tracked

    _run([*dvc, "exp", "run", "-q", "-S", "train.n=5"], repo, env)
    shown = json.loads(_run([*dvc, "exp", "show", "--json"], repo, env).stdout)
    values = [_flat(d) for d in _numbers(shown)]
    assert values and all(v and all(isinstance(x, (int, float)) for x in v.values()) for v in values), (
        f"`dvc exp show` has no numbers for reports/metrics.json: {values}")
    assert {"overall.reproduced": 6, "overall.claims": 4} in values  # the baseline (HEAD)
    assert {"overall.reproduced": 10, "overall.claims": 6} in values  # the experiment

    diff = _run([*dvc, "metrics", "diff", "--json"], repo, env, check=False)
    assert diff.returncode == 0, f"`dvc metrics diff` exited {diff.returncode}: {diff.stdout}{diff.stderr}"
    got = json.loads(diff.stdout)["reports/metrics.json"]["overall.reproduced"]
    assert (got["old"], got["new"]) == (6, 10)

    # a fresh clone with the committed dvc.lock: `dvc repro` re-runs what is missing and reaches the same numbers
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    _run([*dvc, "repro", "-q"], clone, env)
    assert json.loads((clone / "reports" / "metrics.json").read_text()) == {"overall": {"reproduced": 6, "claims": 4}}
    assert (clone / "results" / "n.txt").read_text() == "3"


# --- `-S` overrides reach their own experiment only -----------------------------------------------------------

def _readme_set_param_example() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"Any knob can be overridden.*?`dvc exp run -S '([^']+)'`", text, re.S)
    assert m, "README: the `Any knob can be overridden ... dvc exp run -S '...'` example is gone"
    return m.group(1)


def _apply_like_dvc(tmp_path: Path, overrides: list[str]) -> Path:
    """params.yaml with `dvc exp run -S` overrides applied the way DVC applies them (its `apply_overrides`:
    Hydra's grammar on an OmegaConf copy, merged back into a ruamel round-trip of the file)."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, overrides)
    return path


def _resolved(path: Path, profile: str | None = None) -> dict:
    from repro.al.methods import load_params

    p = load_params(path, profile)
    return {"experiments": {n: asdict(e) for n, e in p.experiments}, "recipes": {n: asdict(r) for n, r in p.recipes}}


def test_readme_set_param_example_changes_only_its_experiment_in_the_default_profile(tmp_path):
    override = _readme_set_param_example()
    key, value = override.split("=", 1)
    m = re.search(r"experiments\.([a-z0-9_]+)\.seeds$", key)
    assert m, f"README example {override!r}: expected an experiments.<name>.seeds override"
    name, seeds = m.group(1), tuple(yaml.safe_load(value))
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["profile"] == "smoke"

    before = _resolved(ROOT / "params.yaml")
    after = _resolved(_apply_like_dvc(tmp_path, [override]))
    assert before["experiments"][name]["seeds"] != seeds, "the README example would change nothing"
    assert after["experiments"][name]["seeds"] == seeds, (
        f"`dvc exp run -S '{override}'` left {name}.seeds = {after['experiments'][name]['seeds']} in the default profile")
    assert {**after["experiments"][name], "seeds": before["experiments"][name]["seeds"]} == before["experiments"][name]
    changed = sorted(n for n in before["experiments"] if before["experiments"][n] != after["experiments"][n])
    assert changed == [name], f"`-S '{override}'` changed {changed}, not only {name}"
    assert after["recipes"] == before["recipes"]


@pytest.mark.parametrize(("override", "profile", "name", "field", "value"), [
    # each leaked into, or was lost through, experiments that shared a YAML mapping (anchor / `<<:` merge)
    ("profiles.smoke.experiments.dal_mnist_b100.seeds=[0]", "smoke", "dal_mnist_b100", "seeds", (0,)),
    ("profiles.smoke.experiments.mcdal_fig4_cifar100.schedule.final_fraction=0.2", "smoke", "mcdal_fig4_cifar100",
     "schedule", 0.2),
    ("experiments.daal_fig6_cityscapes.schedule.final_fraction=0.3", "paper", "daal_fig6_cityscapes", "schedule", 0.3),
])
def test_set_param_on_a_formerly_shared_mapping_changes_only_its_experiment(tmp_path, override, profile, name,
                                                                            field, value):
    before = _resolved(ROOT / "params.yaml", profile)["experiments"]
    after = _resolved(_apply_like_dvc(tmp_path, [override]), profile)["experiments"]
    got = after[name][field]["final_fraction"] if field == "schedule" else after[name][field]
    assert got == value, f"`-S '{override}'` was lost: {name}.{field} = {after[name][field]}"
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == [name], f"`-S '{override}'` changed {changed}, not only {name}"


def test_params_share_no_mapping_between_keys():
    """DVC's `-S` merges its override back into a round-trip of params.yaml: a mapping reached through an alias
    or a `<<:` merge key is one object there, so the override is lost or lands in every experiment sharing it.
    Anchored lists (seeds, methods) are replaced whole and stay safe."""
    root = yaml.compose((ROOT / "params.yaml").read_text())
    seen: dict[int, str] = {}
    problems = []

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            if id(node) in seen:
                problems.append(f"{path} is an alias of the mapping at {seen[id(node)]}")
                return
            seen[id(node)] = path
            for k, v in node.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    problems.append(f"{path}: a `<<:` merge key")
                    continue
                walk(v, f"{path}.{k.value}" if path else k.value)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{path}[{i}]")

    walk(root, "")
    assert not problems, "params.yaml shares mappings (write them out in full):\n" + "\n".join(problems)
