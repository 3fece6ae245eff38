"""dvc.yaml covers every experiment, rankings and artifact; run stages depend on exactly the run code."""

import yaml

from repro.experiments import ARTIFACTS, CurveFigure
from repro.methods import load_params, stage_code_deps

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
        assert {f"experiments.{name}", f"recipes.{exp.recipe}", "profile", "profiles", "variants"} <= set(st["params"])
        assert st["outs"] == [f"results/{name}"]
    for name, r in params.rankings:
        st = d["stages"][f"rank_{name}"]
        assert st["cmd"] == f"python -m repro rank {name}" and st["outs"] == [f"results/{name}"]
        assert st["deps"] == stage_code_deps(params, r.methods) + ["repro/rankings.py"]
        assert f"experiments.{r.of}" in st["params"]


def test_every_artifact_has_a_figure_stage_and_the_audit_sees_every_result():
    from repro.dvc_deps import wanted
    from repro.experiments import SamplingTable

    d = _dvc()
    stages = d["stages"]
    want = wanted(load_params(ROOT / "params.yaml"))
    for key, art in ARTIFACTS.items():
        st = stages[f"figure_{art.paper}_{art.name}"]
        assert st["cmd"] == f"python -m repro figure {key}"
        if isinstance(art, SamplingTable):  # a table timing the methods: their code, no run records
            assert st["outs"] == [f"reports/{key}.json", f"reports/{key}.md"]
            assert st["deps"] == want[f"figure_{art.paper}_{art.name}"]
            assert f"reports/{key}.json" in stages["audit"]["deps"]
            continue
        assert f"reports/{key}.png" in st["outs"] and f"reports/{key}.json" in st["outs"]
        needed = art.experiments if isinstance(art, CurveFigure) else (art.rankings,)
        for exp in needed:
            assert f"results/{exp}" in st["deps"]
        assert f"reports/{key}.png" in d["plots"]
    figure_stages = {n for n in stages if n.startswith("figure_")}
    assert figure_stages == {f"figure_{a.paper}_{a.name}" for a in ARTIFACTS.values()}  # no stage without an entry
    results = {o for st in stages.values() for o in st.get("outs", []) if str(o).startswith("results/")}
    assert results <= set(stages["audit"]["deps"])
    assert any("reports/metrics.json" in (m if isinstance(m, str) else next(iter(m))) for m in stages["audit"]["metrics"])


def test_checkpoints_live_outside_declared_outs():
    params = load_params(ROOT / "params.yaml")
    outs = [o for st in _dvc()["stages"].values() for o in st.get("outs", [])]
    assert not any(str(o).startswith(params.checkpoint_dir) for o in outs)


def test_dvc_deps_command_agrees_and_rewrites(tmp_path):
    from repro.dvc_deps import main, rewrite, wanted

    params = load_params(ROOT / "params.yaml")
    text = (ROOT / "dvc.yaml").read_text()
    assert rewrite(text, wanted(params)) == text
    stale = text.replace("      - repro/strategies/mcdal.py\n", "", 1)
    path = tmp_path / "dvc.yaml"
    path.write_text(stale)
    assert main(params, path) == 1
    assert main(params, path, write=True) == 0 and path.read_text() == text
