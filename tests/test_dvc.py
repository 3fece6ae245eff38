"""dvc.yaml covers every experiment, rankings and artifact; run stages depend on exactly the run code."""

import yaml

from repro.al.methods import load_params, stage_code_deps
from repro.spec.artifacts import ARTIFACTS, ProtocolTable, RankingFigure, ResultsTable

from .conftest import ROOT


def _dvc():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_experiment_has_a_run_stage():
    d = _dvc()
    params = load_params(ROOT / "params.yaml", "paper")
    for name, exp in params.experiments:
        st = d["stages"][f"run_{name}"]
        assert st["cmd"] == f"python -m repro run {name}"
        # the shared core + the files of this experiment's methods (a method change reruns only its stages)
        assert st["deps"] == stage_code_deps(params, exp.methods)
        # exactly the params it reads: its experiment, recipe, variants and their profile overrides
        assert {f"experiments.{name}", f"recipes.{exp.recipe}", "profile"} <= set(st["params"])
        assert "profiles" not in st["params"] and "variants" not in st["params"]
        assert {f"variants.{m}" for m in exp.methods if m in dict(params.variants)} <= set(st["params"])
        assert st["outs"] == [f"results/{name}"]
    for name, r in params.rankings:
        st = d["stages"][f"rank_{name}"]
        assert st["cmd"] == f"python -m repro rank {name}" and st["outs"] == [f"results/{name}"]
        assert st["deps"] == stage_code_deps(params, r.methods) + ["repro/al/rankings.py"]
        assert f"experiments.{r.of}" in st["params"]


def test_every_artifact_has_a_figure_stage_and_the_audit_sees_every_result():
    from repro.spec.artifacts import SamplingTable

    d = _dvc()
    stages = d["stages"]
    for key, art in ARTIFACTS.items():
        st = stages[f"figure_{art.paper}_{art.name}"]
        assert st["cmd"] == f"python -m repro figure {key}"
        if isinstance(art, (SamplingTable, ResultsTable, ProtocolTable)):
            assert st["outs"] == [f"reports/{key}.json", f"reports/{key}.md"]
            if isinstance(art, SamplingTable):
                assert f"reports/{key}.json" in stages["audit"]["deps"]
        else:
            assert f"reports/{key}.png" in st["outs"] and f"reports/{key}.json" in st["outs"]
            assert f"reports/{key}.png" in d["plots"]
        needed = (art.rankings,) if isinstance(art, RankingFigure) else art.experiments
        for exp in needed:
            assert f"results/{exp}" in st["deps"]
    figure_stages = {n for n in stages if n.startswith("figure_")}
    assert figure_stages == {f"figure_{a.paper}_{a.name}" for a in ARTIFACTS.values()}  # no stage without an entry
    run_stages = {n for n in stages if n.startswith("run_")}
    params = load_params(ROOT / "params.yaml")
    assert run_stages == {f"run_{n}" for n, _ in params.experiments}  # no run stage without an experiment
    used = {e for a in ARTIFACTS.values() for e in a.experiments} | {params.ranking(a.rankings).of for a in
                                                                       ARTIFACTS.values() if isinstance(a, RankingFigure)}
    from repro.report.claims import load_registries

    for reg in load_registries(ROOT / "paper_tables").values():  # or a claim of the audit (DAL's ablations)
        for c in reg["claims"]:
            names = [e for cmp in c.get("comparisons", []) for e in cmp["experiments"]] + c.get("experiments", [])
            names += [(c.get("evidence") or {}).get("experiment") or ""]
            used |= {p for e in names for p in e.split("+") if p}
    assert {n for n, _ in params.experiments} <= used  # every experiment feeds an artifact or a claim
    results = {o for st in stages.values() for o in st.get("outs", []) if str(o).startswith("results/")}
    assert results <= set(stages["audit"]["deps"])
    assert any("reports/metrics.json" in (m if isinstance(m, str) else next(iter(m))) for m in stages["audit"]["metrics"])


def test_checkpoints_live_outside_declared_outs():
    params = load_params(ROOT / "params.yaml")
    outs = [o for st in _dvc()["stages"].values() for o in st.get("outs", [])]
    assert not any(str(o).startswith(params.checkpoint_dir) for o in outs)


def test_dvc_yaml_is_generated_from_the_registries(tmp_path):
    """dvc.yaml is exactly what `python -m repro dvc-deps --write` generates; a stale copy is caught and fixed."""
    from repro.tools.dvc_deps import main

    params = load_params(ROOT / "params.yaml")
    text = (ROOT / "dvc.yaml").read_text()
    path = tmp_path / "dvc.yaml"
    path.write_text(text)
    assert main(params, path, params_path=ROOT / "params.yaml") == 0
    path.write_text(text.replace("    - repro/al/strategies/mcdal.py\n", "", 1))
    assert main(params, path, params_path=ROOT / "params.yaml") == 1
    assert main(params, path, write=True, params_path=ROOT / "params.yaml") == 0 and path.read_text() == text
