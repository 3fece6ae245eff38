"""ADS Fig. 4 as an artifact: the loop's feature dumps (`features_of`), their survival across a killed run, the
labeled-vs-unlabeled MMD² and the figure built from a tiny real run."""

import json
import math
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from repro.al import loop
from repro.data.pool import ActivePool
from repro.report import embedding
from repro.spec import layout
from repro.spec.artifacts import EmbeddingFigure
from repro.spec.params import parse_params
from repro.spec.runs import RecordError

from .conftest import ROOT, SimulatedCrash, crash_after_stage, tiny_params

ADS_BASELINE = {"method": "ads", "classifiers": 1, "weighting": "none", "selection": "random"}


# ---- the MMD² estimator ---------------------------------------------------------------------------------------

def brute_mmd2(x, y):
    """MMD²_u by its definition, one kernel value at a time."""
    z = [tuple(map(float, r)) for r in np.concatenate([x, y])]

    def d2(a, b):
        return sum((u - v) ** 2 for u, v in zip(a, b))

    sigma = statistics.median(math.sqrt(d2(z[i], z[j])) for i in range(len(z)) for j in range(i + 1, len(z)))

    def k(a, b):
        return math.exp(-d2(a, b) / (2 * sigma**2))

    xs, ys = z[: len(x)], z[len(x):]
    m, n = len(xs), len(ys)
    kxx = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(ys[i], ys[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(a, b) for a in xs for b in ys) / (m * n)
    return kxx + kyy - 2 * kxy


def test_mmd2_matches_a_brute_force_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(0.7, 1.3, size=(7, 3))
    assert embedding.mmd2_unbiased(x, y) == pytest.approx(brute_mmd2(x, y), rel=1e-9, abs=1e-12)


def test_mmd2_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same = embedding.mmd2_unbiased(x, y)
    assert abs(same) < 0.01
    shifted = [embedding.mmd2_unbiased(x, y + shift) for shift in (0.5, 1.0, 2.0)]
    assert same < shifted[0] < shifted[1] < shifted[2] and shifted[0] > 0.05


@given(st.integers(0, 2**31 - 1), st.integers(2, 12), st.integers(2, 12), st.floats(-2, 2))
def test_mmd2_is_symmetric(seed, m, n, shift):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(m, 4)), rng.normal(shift, 1.0, size=(n, 4))
    assert embedding.mmd2_unbiased(x, y) == pytest.approx(embedding.mmd2_unbiased(y, x), rel=1e-9, abs=1e-12)


def test_alignment_normalises_rows_and_needs_two_points_a_side():
    rng = np.random.default_rng(2)
    f, lab = rng.normal(size=(40, 6)), np.arange(40) < 15
    scaled = f * rng.uniform(0.1, 10.0, size=(40, 1))  # per-row scale: gone after L2 normalisation
    assert embedding.alignment_mmd2(scaled, lab) == pytest.approx(embedding.alignment_mmd2(f, lab), rel=1e-9)
    with pytest.raises(ValueError, match="at least 2 points"):
        embedding.mmd2_unbiased(f[:1], f[1:])


# ---- the loop's feature dumps ---------------------------------------------------------------------------------

def _params(tmp_path, methods=("random", "entropy"), features_of=("random",), **kw):
    raw = tiny_params(tmp_path, methods=methods, features_of=list(features_of), **kw)
    raw["variants"] = {"ads-baseline": ADS_BASELINE}
    return parse_params(raw)


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_feature_sample_is_capped_seeded_and_flagged():
    pool = ActivePool(2000, np.arange(0, 1800, 3))  # 600 labeled, 1400 unlabeled
    idx, lab = loop.feature_sample(pool, 0, 2)
    assert lab.sum() == 500 and (~lab).sum() == 500 and len(np.unique(idx)) == 1000
    mask = pool.labeled_mask
    assert mask[idx[lab]].all() and not mask[idx[~lab]].any()
    again, _ = loop.feature_sample(pool, 0, 2)
    other, _ = loop.feature_sample(pool, 0, 3)
    assert np.array_equal(idx, again) and not np.array_equal(idx, other)
    small = ActivePool(50, np.arange(10))
    idx, lab = loop.feature_sample(small, 0, 0)
    assert lab.sum() == 10 and (~lab).sum() == 40  # fewer than 500 a side: all of them


def test_features_of_run_saves_every_stage_and_leaves_the_record_alone(tmp_path):
    params = _params(tmp_path / "a", methods=("ads-baseline", "random"), features_of=("ads-baseline",))
    rec = loop.run(params, "tiny", "ads-baseline", 0, progress=False)
    z = _npz(layout.features_path(params, "tiny", "ads-baseline", 0))
    assert str(z["params_sha256"]) == rec["provenance"]["params_sha256"]
    data = loop.load_experiment_data(params, "tiny")
    final = set(json.loads((layout.checkpoint_dir(params, "tiny", "ads-baseline", 0) / "state.json").read_text())["labeled"])
    for s in rec["stages"]:
        k = s["stage"]
        feats, idx, lab = z[f"stage{k}_features"], z[f"stage{k}_indices"], z[f"stage{k}_labeled"]
        assert feats.dtype == np.float16 and np.isfinite(feats).all() and feats.shape[0] == len(idx) == len(lab)
        assert lab.sum() == s["labeled"] and (~lab).sum() == rec["pool_size"] - s["labeled"]  # < 500 a side here
        assert str(z[f"stage{k}_labeled_sha256"]) == s["labeled_sha256"]
        assert set(idx[lab].tolist()) <= final
        assert np.array_equal(z[f"stage{k}_labels"], data.train_y.numpy()[idx])
    assert not any(f"stage{len(rec['stages'])}" in key for key in z)
    assert embedding.features_file({**rec, "_path": str(layout.record_path(params, "tiny", "ads-baseline", 0))}) == \
        layout.features_path(params, "tiny", "ads-baseline", 0)
    # a method not in features_of saves nothing, and saving features changes nothing else of a run
    other = loop.run(params, "tiny", "random", 0, progress=False)
    assert not layout.features_path(params, "tiny", "random", 0).exists()
    plain = _params(tmp_path / "b", methods=("ads-baseline", "random"), features_of=())
    assert loop.strip_volatile(loop.run(plain, "tiny", "ads-baseline", 0, progress=False)) == loop.strip_volatile(rec)
    assert not layout.features_path(plain, "tiny", "ads-baseline", 0).exists()
    assert loop.strip_volatile(loop.run(plain, "tiny", "random", 0, progress=False)) == loop.strip_volatile(other)


def test_killed_run_keeps_the_finished_stages_features(tmp_path, monkeypatch):
    """Features of finished stages survive a kill (checkpointed with the stage, even when DVC removed the outs),
    a stage saved just before the kill but not committed is re-run rather than duplicated, and a checkpoint
    that lost them starts over: every way ends with the uninterrupted run's features."""
    full_params = _params(tmp_path / "full")
    loop.run(full_params, "tiny", "random", 0, progress=False)
    full = _npz(layout.features_path(full_params, "tiny", "random", 0))

    params = _params(tmp_path / "b")
    out, ckpt = layout.features_path(params, "tiny", "random", 0), layout.checkpoint_dir(params, "tiny", "random", 0)
    with monkeypatch.context() as mp, pytest.raises(SimulatedCrash):
        crash_after_stage(mp, 0)
        loop.run(params, "tiny", "random", 0, progress=False)
    assert {k.partition("_")[0] for k in _npz(out)} == {"params", "stage0"}
    stage0_state = (ckpt / "state.json").read_text()
    with monkeypatch.context() as mp, pytest.raises(SimulatedCrash):
        crash_after_stage(mp, 1)
        loop.run(params, "tiny", "random", 0, progress=False)
    assert "stage1_features" in _npz(ckpt / "features.npz")
    (ckpt / "state.json").write_text(stage0_state)  # killed after saving stage 1's features, before committing it
    shutil.rmtree(tmp_path / "b" / "results")  # `dvc repro` removes a stage's outs before running it
    loop.run(params, "tiny", "random", 0, progress=False)
    resumed = _npz(out)
    assert resumed.keys() == full.keys()
    assert all(np.array_equal(resumed[k], full[k]) for k in full)

    params = _params(tmp_path / "c")
    ckpt = layout.checkpoint_dir(params, "tiny", "random", 0)
    with monkeypatch.context() as mp, pytest.raises(SimulatedCrash):
        crash_after_stage(mp, 0)
        loop.run(params, "tiny", "random", 0, progress=False)
    (ckpt / "features.npz").unlink()  # a finished stage's features lost: the run starts over
    loop.run(params, "tiny", "random", 0, progress=False)
    again = _npz(layout.features_path(params, "tiny", "random", 0))
    assert again.keys() == full.keys() and all(np.array_equal(again[k], full[k]) for k in full)


# ---- the figure -----------------------------------------------------------------------------------------------

METHODS = ("entropy", "random")  # stand-ins of ("ads", "ads-baseline"): the last one is the baseline


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    params = _params(tmp_path_factory.mktemp("emb"), methods=METHODS, features_of=METHODS)
    data = loop.load_experiment_data(params, "tiny")
    for m in METHODS:
        for seed in params.experiment("tiny").seeds:
            loop.run(params, "tiny", m, seed, data=data, progress=False)
    return params


def _fig(**kw):
    return EmbeddingFigure("mcdal", "fig-emb", "tiny", METHODS, "tiny embedding", **{"stages": (0, 1, 2), **kw})


def test_summary_numbers_per_method_and_stage(tiny_runs):
    s = embedding.embedding_summary(tiny_runs, _fig())
    assert [(a["method"], a["stage"]) for a in s["alignment"]] == [(m, k) for m in METHODS for k in (0, 1, 2)]
    assert s["baseline"] == "random" and s["seeds"] == [0, 1]
    for a in s["alignment"]:
        assert a["n"] == 2 and set(a["per_seed"]) == {0, 1} and a["mmd2_mean"] == pytest.approx(
            np.mean(list(a["per_seed"].values())))
    by = {(a["method"], a["stage"]): a for a in s["alignment"]}
    for d in s["differences"]:
        assert d["method"] == "entropy" and d["minus"] == "random" and d["n"] == 2
        for seed, v in d["per_seed"].items():
            assert v == pytest.approx(by[("entropy", d["stage"])]["per_seed"][seed] - by[("random", d["stage"])]["per_seed"][seed])
    # stage 0: both methods train on the same initial pool from the same init: the same features, no difference
    assert [d["mean"] for d in s["differences"] if d["stage"] == 0] == [0.0]


def test_figure_builds_png_and_json(tiny_runs):
    png, js = embedding.build_embedding_figure(tiny_runs, _fig(stages=(0, 2)))
    assert png.is_file() and png.stat().st_size > 10_000 and png.name == "fig-emb.png"
    out = json.loads(js.read_text())
    assert out["artifact"] == "mcdal/fig-emb" and out["measure"]["name"] == "mmd2_unbiased"
    assert len(out["alignment"]) == len(METHODS) * 2 and len(out["differences"]) == 2
    assert all(isinstance(a["mmd2_mean"], float) for a in out["alignment"])


def test_missing_or_short_features_are_clear_errors(tiny_runs, tmp_path):
    # a stage beyond the profile's schedule is left out (a reduced profile runs fewer than four iterations)
    assert embedding.embedding_summary(tiny_runs, _fig(stages=(0, 3)))["stages"] == [0]
    with pytest.raises(RecordError, match="none of stages"):
        embedding.embedding_summary(tiny_runs, _fig(stages=(3, 4)))
    path = layout.features_path(tiny_runs, "tiny", "random", 1)
    kept = tmp_path / "kept.npz"
    shutil.copy(path, kept)
    try:
        z = _npz(path)
        loop.atomic_write_npz(path, {k: v for k, v in z.items() if not k.startswith("stage2_")})
        with pytest.raises(RecordError, match="lack stage 2"):
            embedding.embedding_summary(tiny_runs, _fig())
        path.unlink()
        with pytest.raises(RecordError, match="missing features .*features_of"):
            embedding.embedding_summary(tiny_runs, _fig())
    finally:
        shutil.copy(kept, path)
    only = _params(tmp_path / "x", methods=METHODS, features_of=("entropy",))
    with pytest.raises(RecordError, match=r"features_of lacks \['random'\]"):
        embedding.embedding_summary(only, _fig())


def test_report_module_does_not_import_torch():
    code = "import sys, repro.report.embedding; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
