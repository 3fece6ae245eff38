"""dvc.yaml covers every experiment's methods and every artifact; its run stages write what loop.run writes."""

import yaml

from repro.config import load_params
from repro.experiments import ARTIFACTS

from .conftest import ROOT


def _stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_experiment_has_a_run_stage_over_its_methods():
    stages = _stages()
    params = load_params(ROOT / "params.yaml", "paper")
    for name, _exp in params.experiments:
        st = stages[f"run_{name}"]
        assert st["foreach"] == f"${{experiments.{name}.methods}}"
        assert st["do"]["cmd"] == f"python -m repro run {name} ${{item}}"
        assert f"experiments.{name}" in st["do"]["params"] and "profile" in st["do"]["params"]
        assert st["do"]["outs"] == [f"results/{name}/${{item}}"]


def test_every_artifact_has_a_figure_stage():
    stages = _stages()
    for key, art in ARTIFACTS.items():
        st = stages[f"figure_{art.paper}_{art.name}"]
        assert st["cmd"] == f"python -m repro figure {key}"
        assert f"reports/{key}.png" in st["outs"] and f"reports/{key}.json" in st["outs"]
        for exp in art.experiments:
            assert f"results/{exp}" in st["deps"]


def test_checkpoints_live_outside_declared_outs():
    params = load_params(ROOT / "params.yaml")
    outs = [o for st in _stages().values() for o in st.get("outs", st.get("do", {}).get("outs", []))]
    assert not any(str(o).startswith(params.checkpoint_dir) for o in outs)
