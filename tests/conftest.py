import os
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(1)  # pytest-xdist runs one worker per core

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def base_params() -> dict:
    """The project's params.yaml as a mapping (tests modify copies of it)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params(tmp_path: Path, methods=("random", "entropy"), **exp_overrides) -> dict:
    """A complete params mapping for a seconds-long run on a small synthetic dataset."""
    exp = {
        "paper": "mcdal", "dataset": "synthetic-cifar10", "backbone": "resnet18", "recipe": "tiny",
        "methods": list(methods), "schedule": {"initial_fraction": 0.1, "step_fraction": 0.1, "final_fraction": 0.3},
        "seeds": [0, 1], "width": 0.0625, "train_size": 200, "test_size": 100,
    }
    exp.update(exp_overrides)
    return {
        "profile": "smoke", "device": "cpu", "data_dir": str(tmp_path / "data"),
        "results_dir": str(tmp_path / "results"), "reports_dir": str(tmp_path / "reports"),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "recipes": {"tiny": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                             "batch_size": 32, "epochs": 2, "milestones": [1], "augment": ["crop", "flip"],
                             "eval_batch_size": 256}},
        "experiments": {"tiny": exp},
    }


class SimulatedCrash(RuntimeError):
    """A run stopped on purpose right after a stage's checkpoint was committed."""


def crash_after_stage(monkeypatch, stage: int) -> None:
    """Make the loop crash right after stage `stage` is complete (its checkpoint committed, its outputs written),
    before the next stage trains, as a killed run would; patches the loop's checkpoint write and training call
    instead of threading a flag through the loop."""
    from repro.al import loop

    write_state, train = loop.atomic_write_json, loop.fit_request
    committed = []

    def write(path, obj):
        write_state(path, obj)
        if Path(path).name == "state.json" and obj.get("next_stage") == stage + 1:
            committed.append(stage)

    def fit(request):
        if committed:
            raise SimulatedCrash(f"crashed after stage {stage}")
        return train(request)

    monkeypatch.setattr(loop, "atomic_write_json", write)
    monkeypatch.setattr(loop, "fit_request", fit)
