"""`vaal-code`: VAAL's official sampler (sinhasam/vaal@67263f3 sampler.py:18-20) scores with the VAE and the
discriminator in train mode, as solver.py:50 left them: BatchNorm normalises by each shuffled batch of 128."""

from pathlib import Path

import numpy as np
import torch

from repro.al.methods import method_spec
from repro.al.strategies import STRATEGIES, QueryContext, build_strategy
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.data.pool import ActivePool
from repro.models.nets.vae import ConvVAE, LatentDiscriminator
from repro.spec.params import load_params
from repro.spec.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


def _ctx():
    torch.manual_seed(0)
    data = load_dataset("synthetic-cifar10", train_size=300, test_size=10)
    pool = ActivePool.initial("x", 300, 40, 0)
    vae, disc = ConvVAE(3, 8, 0.0625), LatentDiscriminator(8, 1)
    with torch.no_grad():  # running statistics far from any batch's: eval and batch scoring must differ
        for m in vae.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-2.0, 2.0)
                m.running_var.uniform_(0.2, 5.0)
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    model = torch.nn.Linear(1, 1)  # the task model is not read by VAAL's score
    ctx = QueryContext(model, data, pool, aug, Recipe(optimizer="sgd", lr=0.1, batch_size=32, epochs=1), 3, 1,
                       state=torch.nn.ModuleDict({"vae": vae, "discriminator": disc}))
    return ctx, vae, disc


def _reference(ctx, vae, disc, candidates, batch=128):
    """The official sampler written out: train-mode VAE and D on shuffled batches, -D(mu), back in pool order
    (the order drawn from the same seeded generator the suite uses)."""
    order = torch.randperm(len(candidates), generator=ctx.generator("vaal-score-batches"))
    out = torch.zeros(len(candidates))
    vae.train(), disc.train()
    with torch.no_grad():
        for b in order.split(batch):
            x = ctx.augmenter.eval(ctx.data.train_x[torch.as_tensor(candidates)[b]])
            out[b] = -disc(vae.encode(x)[0])
    return out


def test_vaal_code_is_the_variant_with_batch_scoring():
    method, opts = method_spec(load_params(ROOT / "params.yaml", "paper"), "vaal-code")
    assert method == "vaal" and opts.scoring == "batch" and opts.score_batch_size == 128
    assert STRATEGIES["vaal"].Options().scoring == "eval"  # the default stays the paper-neutral eval mode


def test_vaal_code_scores_with_batch_statistics_and_leaves_running_stats():
    ctx, vae, disc = _ctx()
    cands = ctx.pool.unlabeled
    bns = [m for m in vae.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in bns]
    vae.eval(), disc.eval()
    code = build_strategy("vaal", STRATEGIES["vaal"].Options(scoring="batch")).score(ctx, cands)
    paper = build_strategy("vaal").score(ctx, cands)
    # running statistics, counters and modes untouched by the code reading's train-mode pass
    for m, (mean, var, n) in zip(bns, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
        assert int(m.num_batches_tracked) == n and not m.training
    assert not vae.training and not disc.training
    ref = _reference(ctx, vae, disc, cands)
    torch.testing.assert_close(code, ref, rtol=1e-5, atol=1e-6)
    assert (code - paper).abs().max() > 1e-3  # eval mode reads the (shifted) running statistics
    # the pick differs too
    k = 40
    assert set(np.asarray(cands)[torch.topk(code, k).indices.numpy()]) != \
        set(np.asarray(cands)[torch.topk(paper, k).indices.numpy()])
