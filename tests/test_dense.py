"""Dense tasks end to end: every segmentation / detection method through the loop, the papers' dense reductions
(MCDAL reduces each head's map before the discrepancy), chunked pool scoring equal to unchunked, host memory
bounded while a pool is scored, joint augmentation of images and targets, and loud errors for unsupported
combinations."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from repro.al import loop, scores, selection
from repro.al.losses import mcdal as mcdal_losses
from repro.al.methods import check_methods
from repro.al.strategies import QueryContext, build_strategy
from repro.al.strategies.ads_detection import adversarial_epochs
from repro.al.strategies.mcdal import head_probs
from repro.core.train import fit
from repro.data.augment import Augmenter, flip_targets
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec import layout
from repro.spec.params import parse_params
from repro.spec.recipe import Recipe
from repro.spec.schema import ConfigError

from .conftest import ROOT, tiny_params

SEG_METHODS = ["random", "entropy", "coreset", "mcdal", "ll", "vaal", "sraal", "mc-entropy", "qbc", "sa", "daal",
               "ll+rd", "mal"]
DET_METHODS = ["random", "coreset", "ll", "ads"]


def seg_params(tmp_path, methods, **over):
    raw = tiny_params(tmp_path, methods=methods, dataset="synthetic-cityscapes", backbone="drn_d_22", metric="miou",
                      width=0.125, train_size=60, test_size=16, **over)
    raw["recipes"]["tiny"].update(augment=["frame_crop", "flip"], batch_size=8, eval_batch_size=16, epochs=1,
                                  milestones=[])
    raw["method_options"] = {"vaal": {"vae_width": 0.0625}, "sraal": {"vae_width": 0.0625}, "qbc": {"members": 2},
                             "sa": {"members": 2}, "mc-entropy": {"passes": 3}}
    return raw


@pytest.mark.parametrize("method", SEG_METHODS)
def test_every_segmentation_method_runs_through_the_loop(tmp_path, method):
    params = parse_params(seg_params(tmp_path, [method]))
    rec = loop.run(params, "tiny", method, 0, progress=False)
    assert [s["labeled"] for s in rec["stages"]] == [6, 12, 18]
    for s in rec["stages"]:
        assert s["metric"] == "miou" and 0.0 <= s["value"] <= 1.0 and "metrics" not in s
        assert len(s["selected_classes"]) == 19  # images showing each class


@pytest.mark.parametrize("method", DET_METHODS)
def test_every_detection_method_runs_through_the_loop(tmp_path, method):
    raw = tiny_params(tmp_path, methods=[method], dataset="synthetic-voc", backbone="ssd300", metric="map50_voc07",
                      width=0.125, train_size=40, test_size=8, schedule={"initial_size": 8, "query_size": 8, "queries": 1},
                      options={"ads": {"top_k": 50}} if method == "ads" else {},
                      predictions_of=["ads"] if method == "ads" else [])
    raw["recipes"]["tiny"].update(augment=["ssd"], batch_size=8, eval_batch_size=8, epochs=1, milestones=[], lr=0.001)
    params = parse_params(raw)
    rec = loop.run(params, "tiny", method, 0, progress=False)
    for s in rec["stages"]:
        assert s["metric"] == "map50_voc07" and set(s["metrics"]) == {"map50_voc07", "map50_coco101"}
        assert 0.0 <= s["value"] <= 1.0
    if method == "ads":  # ADS Fig. 7's drawing of the first query's picks
        from repro.report.predictions import load_predictions, predictions_file
        from repro.spec.artifacts import PredictionFigure

        fig = PredictionFigure("ads", "x", "tiny", "ads", "t")
        assert predictions_file(params, fig) == layout.predictions_path(params, "tiny", "ads", 0)
        arrays = load_predictions(params, fig)
        assert arrays["images"].shape[0] == 6 and arrays["c1_boxes"].shape == (6, 30, 4)
        assert ((arrays["c2_scores"] > 0.3) | (arrays["c2_scores"] == -1)).all()


def test_mcdal_reduces_each_map_before_the_discrepancy():
    """MCDAL Sec. 4.2: two classifiers whose pixels disagree everywhere but whose averaged masks agree have no
    discrepancy; the mean of per-pixel discrepancies would be maximal."""
    big = 30.0
    a = torch.tensor([[[[big, -big]], [[-big, big]]]])  # (1, C=2, H=1, W=2): pixel 1 class 0, pixel 2 class 1
    b = a.flip(-1)  # the opposite at every pixel
    probs = head_probs(nn.ModuleList([nn.Identity()]), a, b)
    assert probs.shape == (2, 1, 2)
    reduced_first = mcdal_losses.pairwise_discrepancy(probs, "l1")
    per_pixel = (torch.softmax(a, 1) - torch.softmax(b, 1)).abs().mean(1).mean()
    assert float(reduced_first) < 1e-6 and float(per_pixel) > 0.99


@pytest.fixture(scope="module")
def seg_ctx():
    torch.manual_seed(0)
    data = load_dataset("synthetic-cityscapes", train_size=48, test_size=8)
    model = build_model("drn_d_22", 19, 3, (32, 64), 0.125)
    recipe = Recipe(optimizer="sgd", lr=0.01, batch_size=8, epochs=1, eval_batch_size=64)
    pool = ActivePool.initial("synthetic-cityscapes", 48, 8, 0)
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    return model, data, pool, aug, recipe


@pytest.mark.parametrize("method", ["entropy", "margin", "coreset", "mcdal", "ll", "mal", "qbc", "mc-entropy", "daal"])
def test_chunked_pool_scoring_equals_unchunked(seg_ctx, method):
    model, data, pool, aug, recipe = seg_ctx
    strategy = build_strategy(method, dataclasses.replace(build_strategy(method).Options(),
                                                          **({"members": 2} if method == "qbc" else {})))
    m = strategy.adapt_model(build_model("drn_d_22", 19, 3, (32, 64), 0.125))
    trained = fit(m, data, pool.labeled, recipe, 0, hook=strategy.training_hook(), unlabeled=pool.unlabeled)
    picks = []
    for eval_batch in (64, 5):
        ctx = QueryContext(m, data, pool, aug, dataclasses.replace(recipe, eval_batch_size=eval_batch), 0, 0,
                           state=trained.state)
        if hasattr(strategy, "score"):
            picks.append(strategy.score(ctx, pool.unlabeled))
        else:
            picks.append(torch.as_tensor(strategy.query(ctx, 6)))
    assert torch.allclose(picks[0].float(), picks[1].float(), rtol=1e-5, atol=1e-6)


def test_scoring_a_pool_keeps_host_memory_bounded():
    """Scoring 3,000 32 x 64 images of 19 classes chunk by chunk: the whole pool's probabilities would be 467 MB;
    the process's peak resident memory grows by far less (a subprocess, so the peak is this scoring's)."""
    code = """
import torch, numpy as np
torch.set_num_threads(1)
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models import build_model
from repro.spec.recipe import Recipe
from repro.al.strategies import QueryContext, build_strategy
from repro.al import scores
def peak():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) // 1024
data = load_dataset('synthetic-cityscapes', train_size=3000, test_size=8)
model = build_model('drn_d_22', 19, 3, (32, 64), 0.0625)
ctx = QueryContext(model, data, ActivePool.initial('x', 3000, 10, 0), Augmenter((), data.spec.mean, data.spec.std, 'cpu'),
                   Recipe(optimizer='sgd', lr=0.1, batch_size=8, epochs=1, eval_batch_size=50), 0, 0)
torch.zeros(1); before = peak()
with torch.no_grad():
    s = ctx.position_scores(ctx.pool.unlabeled, scores.entropy)
print(before, peak(), s.shape[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    before, after, n = map(int, out.stdout.split())
    full_mb = 2990 * 19 * 32 * 64 * 4 / 2**20
    assert n == 2990 and after - before < full_mb / 3, (before, after, full_mb)


def test_joint_flip_moves_masks_and_boxes_with_their_images():
    gen = torch.Generator().manual_seed(3)
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6).to(torch.uint8)
    mask = torch.arange(2 * 4 * 6).reshape(2, 4, 6).to(torch.uint8)
    aug = Augmenter(("flip",), (0.0,) * 3, (1.0,) * 3, "cpu")
    xa, ma = aug.train_pair(x, mask, gen, "segmentation")
    for i in range(2):  # the flip of image i is the flip of mask i
        flipped = bool((xa[i] * 255).round().to(torch.uint8).equal(x[i].flip(-1)))
        assert torch.equal(ma[i], mask[i].flip(-1) if flipped else mask[i])
    boxes = torch.tensor([[[1.0, 0, 3, 2, 4, 0], [-1, -1, -1, -1, -1, -1]]])
    out = flip_targets(boxes, torch.tensor([True]), 6, "detection")
    assert out[0, 0].tolist() == [3.0, 0, 5, 2, 4, 0] and out[0, 1].tolist() == [-1.0] * 6
    with pytest.raises(ValueError, match="not defined for segmentation"):
        Augmenter(("crop",), (0.0,) * 3, (1.0,) * 3, "cpu").train_pair(x, mask, gen, "segmentation")


def test_unsupported_combinations_fail_loudly(tmp_path):
    with pytest.raises(ConfigError, match="has no segmentation reading"):
        parse_params(seg_params(tmp_path, ["dal"]), checks=(check_methods,))
    with pytest.raises(ConfigError, match="segmentation dataset: expected one of"):
        parse_params(tiny_params(tmp_path, dataset="synthetic-cityscapes", backbone="drn_d_22"))
    with pytest.raises(ConfigError, match="solves segmentation"):
        parse_params(tiny_params(tmp_path, backbone="drn_d_22", metric="miou"))


@settings(max_examples=20)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2**16))
def test_max_cover_greedy_is_greedy_and_within_the_bound(u, k, seed):
    g = torch.Generator().manual_seed(seed)
    sim = torch.rand(u + 3, u, generator=g)
    k = min(k, u)
    picks = selection.max_cover_greedy(sim, k)
    assert len(set(picks.tolist())) == k
    assert int(picks[0]) == int(sim.sum(0).argmax())

    def cover(cols):
        return float(sim[:, list(cols)].max(1).values.sum())

    import itertools

    best = max(cover(c) for c in itertools.combinations(range(u), k))
    assert cover(picks.tolist()) >= (1 - 1 / np.e) * best - 1e-6


@given(st.integers(2, 4), st.integers(1, 3), st.integers(2, 5), st.integers(0, 2**16))
def test_committee_disagreement_is_zero_when_members_agree(k, n, c, seed):
    p = torch.softmax(torch.randn(1, n, 3, c, generator=torch.Generator().manual_seed(seed)), -1).expand(k, -1, -1, -1)
    assert torch.allclose(scores.committee_js_divergence(p), torch.zeros(n, 3), atol=1e-5)
    assert torch.allclose(scores.committee_variance(p), torch.zeros(n, 3), atol=1e-7)
    q = torch.softmax(torch.randn(k, n, 3, c, generator=torch.Generator().manual_seed(seed + 1)) * 3, -1)
    assert (scores.committee_js_divergence(q) >= 0).all() and torch.allclose(
        scores.committee_js_divergence(q), scores.bald(q))


def test_ads_adversarial_epochs_are_spread_evenly():
    assert adversarial_epochs(150, 30) == set(range(0, 150, 5))
    assert adversarial_epochs(10, None) == set(range(10)) and len(adversarial_epochs(7, 3)) == 3


@pytest.mark.slow
def test_reduced_ssd_overfits_eight_images():
    """The detection pipeline (targets, matcher, loss, post-processing, VOC07 mAP) end to end: the reduced SSD
    learns 8 synthetic images to mAP 1.0 (the smoke profile's 2 epochs are far too short to show learning)."""
    from repro.core.metrics import DetectionMeter

    torch.manual_seed(0)
    torch.set_num_threads(2)
    d = load_dataset("synthetic-voc", train_size=8, test_size=4)
    m = build_model("ssd300", 20, 3, (96, 96), 0.25)
    aug = Augmenter((), d.spec.mean, d.spec.std, "cpu")
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = aug.eval(d.train_x)
    for _ in range(250):
        m.train()
        loss = sum(m.losses(x, d.train_y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    meter = DetectionMeter(20, "cpu")
    with torch.no_grad():
        meter.update(m.detect(x), d.train_y)
    assert meter.compute()["map50_voc07"] > 0.9


def test_dense_params_validate_in_both_profiles():
    from repro.al.methods import load_params

    for profile in ("smoke", "paper"):
        params = load_params(ROOT / "params.yaml", profile)
        for name in ("mcdal_fig6", "daal_fig3_cityscapes", "mal_fig4_bdd100k", "ads_fig6_voc"):
            exp = params.experiment(name)
            assert exp.metric in ("miou", "map50_voc07")
    paper = load_params(ROOT / "params.yaml", "paper")
    assert paper.experiment("mcdal_fig6").schedule.labeled_counts(2975)[:2] == (298, 446)  # budget ~150 (5%)
    assert paper.experiment("mal_fig4_bdd100k").schedule.labeled_counts(7000) == (350, 700, 1050, 1400)
    assert json.loads(json.dumps(paper.experiment("ads_fig6_voc").predictions_of)) == ["ads"]
    assert Path(ROOT / "params.yaml").is_file()


@pytest.mark.parametrize("task,method", [("segmentation", "mcdal"), ("detection", "ll")])
def test_bench_sample_times_dense_workloads(task, method):
    from repro.tools.sampling import dense_sampling_workload, time_query

    w = dense_sampling_workload(task, torch.device("cpu"), full=False)
    assert w.data.spec.task == task and w.pool.n_unlabeled == 448
    seconds, params = time_query(method, w)
    assert seconds > 0 and params > 0


def _pin(monkeypatch, backbone, path):
    import hashlib

    from repro.models import weights

    w = weights.PRETRAINED[backbone]
    monkeypatch.setitem(weights.PRETRAINED, backbone, weights.WeightsFile(
        path.name, hashlib.sha256(path.read_bytes()).hexdigest()[:8], w.source))


def test_pretrained_weights_load_pinned_files_only(tmp_path, monkeypatch):
    import torchvision

    from repro.models import weights
    from repro.models.drn import DRN
    from repro.spec.params import PRETRAINED_BACKBONES

    assert set(PRETRAINED_BACKBONES) == set(weights.PRETRAINED)
    with pytest.raises(weights.WeightsError, match="missing; place .*pretrained: false"):
        weights.weights_path("ssd300", tmp_path)
    (tmp_path / "weights").mkdir()
    # SSD300: VGG-16's 13 convolutions into conv1_1 .. conv5_3, conv1 frozen
    vgg = torchvision.models.vgg16().features.state_dict()
    f = tmp_path / "weights" / "vgg16_features-test.pth"
    torch.save({f"features.{k}": v for k, v in vgg.items()}, f)
    bad = weights.PRETRAINED["ssd300"]
    monkeypatch.setitem(weights.PRETRAINED, "ssd300", weights.WeightsFile(f.name, "00000000", bad.source))
    with pytest.raises(weights.WeightsError, match="is not the pinned 00000000"):
        weights.weights_path("ssd300", tmp_path)
    _pin(monkeypatch, "ssd300", f)
    ssd = build_model("ssd300", 20, 3, (300, 300))
    weights.load_pretrained_backbone(ssd, "ssd300", tmp_path)
    convs = [m for m in ssd.ssd.backbone.features if isinstance(m, nn.Conv2d)]
    assert torch.equal(convs[0].weight, vgg["0.weight"]) and torch.equal(convs[-1].bias, vgg["21.bias"])
    conv5_3 = [m for m in ssd.ssd.backbone.extra[0] if isinstance(m, nn.Conv2d)][2]
    assert torch.equal(conv5_3.weight, vgg["28.weight"]) and not convs[0].weight.requires_grad
    # DRN-D-22: fyu's body into DRNSeg.base
    body = DRN(num_classes=1000)
    g = tmp_path / "weights" / "drn_d_22-test.pth"
    torch.save(body.state_dict(), g)
    _pin(monkeypatch, "drn_d_22", g)
    seg = build_model("drn_d_22", 19, 3, (64, 64))
    weights.load_pretrained_backbone(seg, "drn_d_22", tmp_path)
    assert torch.equal(seg.base.layer0[0].weight, body.layer0[0].weight)


def test_pretrained_needs_full_width(tmp_path):
    with pytest.raises(ConfigError, match="width 1 only"):
        parse_params(seg_params(tmp_path, ["random"], pretrained=True))
