"""The shared trainer: schedule, batching, hooks, validation/best checkpoint, determinism."""

import numpy as np
import pytest
import torch

from repro.core.infer import accuracy
from repro.core.train import BatchStream, TrainingHook, fit, learning_rate
from repro.data.augment import Augmenter
from repro.data.datasets import load_dataset
from repro.models import build_model
from repro.spec.recipe import Recipe


def _recipe(**kw):
    base = dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16, epochs=2, augment=("crop", "flip"))
    base.update(kw)
    return Recipe(**base)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic-cifar10", train_size=200, test_size=100)


def test_learning_rate_warmup_and_milestones():
    r = _recipe(lr=0.1, epochs=10, milestones=(3, 6), gamma=0.2, warmup_epochs=1)
    assert learning_rate(r, 0, 0, 10) == pytest.approx(0.01)
    assert learning_rate(r, 0, 9, 10) == pytest.approx(0.1)
    assert learning_rate(r, 1, 0, 10) == pytest.approx(0.1)
    assert learning_rate(r, 3, 0, 10) == pytest.approx(0.02)
    assert learning_rate(r, 9, 5, 10) == pytest.approx(0.004)


def test_batch_stream_passes_cover_indices_once():
    idx = torch.arange(10, 47)
    s = BatchStream(idx, 8, torch.Generator().manual_seed(0))
    batches = s.pass_batches()
    assert [len(b) for b in batches] == [8, 8, 8, 8, 5]  # the last partial batch is kept
    assert sorted(torch.cat(batches).tolist()) == idx.tolist()
    s2 = BatchStream(idx, 8, torch.Generator().manual_seed(0), drop_last=True)
    drawn = [s2.next() for _ in range(9)]
    assert all(len(b) == 8 for b in drawn)
    assert len(set(torch.cat(drawn[:4]).tolist())) == 32  # no repeats within a pass


def test_fit_is_deterministic_for_a_seed(data):
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
        fit(m, data, np.arange(64), _recipe(), seed=3)
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(weights[0], weights[1])


class CountingHook(TrainingHook):
    uses_unlabeled = True

    def setup(self, ctx):
        self.extra = torch.nn.Linear(ctx.model.feature_dim, 10).to(ctx.device)
        self.opt = ctx.make_optimizer(self.extra.parameters())
        self.steps, self.lrs = 0, []

    def training_step(self, ctx, x, y):
        xu = ctx.next_unlabeled()
        assert xu.shape[1:] == x.shape[1:]
        self.steps += 1
        self.lrs.append(self.opt.param_groups[0]["lr"])
        loss = torch.nn.functional.cross_entropy(self.extra(ctx.model(x).features.detach()), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return ctx.default_step(x, y) + loss.detach()


def test_hook_gets_unlabeled_stream_and_shared_schedule(data):
    m = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    hook = CountingHook()
    r = _recipe(epochs=3, epoch_iterations=4, milestones=(2,), gamma=0.5)
    res = fit(m, data, np.arange(40), r, seed=0, hook=hook, unlabeled=np.arange(40, 200))
    assert hook.steps == 12 and res.steps == 12
    assert hook.lrs[0] == pytest.approx(0.05) and hook.lrs[-1] == pytest.approx(0.025)
    assert np.isfinite(res.final_loss)


def test_validation_split_restores_best_epoch(data):
    torch.manual_seed(0)
    m = build_model("lenet", 10, 3, (32, 32))
    r = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=5, validation_fraction=0.2, best_after_epoch=2)
    res = fit(m, data, np.arange(100), r, seed=0)
    assert res.best_epoch is not None and 2 <= res.best_epoch < 5
    # the loaded weights are the best epoch's: their validation accuracy is the recorded best
    from repro.core.train import split_validation

    _, val = split_validation(np.arange(100), 0.2, 0)
    aug = Augmenter((), data.spec.mean, data.spec.std, "cpu")
    assert accuracy(m, data.train_x, data.train_y, val, aug) == pytest.approx(res.best_val_accuracy)
    assert len(val) == 20


def test_synthetic_is_learnable_but_not_trivial():
    """A small CNN at 40% labels: well above chance, short of 100%."""
    d = load_dataset("synthetic-cifar10", train_size=1000, test_size=400)
    torch.manual_seed(0)
    m = build_model("lenet", 10, 3, (32, 32), dropout=0.0)
    fit(m, d, np.arange(400), Recipe(optimizer="adam", lr=1e-3, batch_size=32, epochs=12), seed=0)
    acc = accuracy(m, d.test_x, d.test_y, None, Augmenter((), d.spec.mean, d.spec.std, "cpu"))
    assert 0.3 < acc < 0.99, acc


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_syncs_per_epoch_not_per_step(data):
    """The number of host syncs does not grow with the number of steps in an epoch."""
    import warnings

    d = data.to("cuda")

    def syncs(iterations):
        m = build_model("resnet18", 10, 3, (32, 32), width=0.125).cuda()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit(m, d, np.arange(64), _recipe(epochs=1, epoch_iterations=iterations), seed=0)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(2)  # warm-up (cudnn autotuning, lazy init)
    assert syncs(20) == syncs(5)


class OwnOptimizersHook(TrainingHook):
    """A method network with its own Adam at a constant 5e-4 (VAAL, DAAL) beside the task SGD on the recipe's
    schedule, plus one on a callable schedule; modules come from build_modules and return in the state."""

    def build_modules(self, model, spec):
        return {"aux": torch.nn.Linear(model.feature_dim, 10), "aux2": torch.nn.Linear(model.feature_dim, 10)}

    def setup(self, ctx):
        self.adam = ctx.make_optimizer(ctx.state["aux"].parameters(), "adam", 5e-4, "constant", weight_decay=0.0)
        self.halving = ctx.make_optimizer(ctx.state["aux2"].parameters(), "sgd", 0.2, lambda e, s, n: 0.5**e)
        self.lrs = []

    def training_step(self, ctx, x, y):
        self.lrs.append((ctx.task_optimizer.param_groups[0]["lr"], self.adam.param_groups[0]["lr"],
                         self.halving.param_groups[0]["lr"]))
        feats = ctx.model(x).features.detach()
        for name, opt in (("aux", self.adam), ("aux2", self.halving)):
            ctx.step(opt, torch.nn.functional.cross_entropy(ctx.state[name](feats), y))
        return ctx.default_step(x, y)


def test_optimizers_keep_their_own_kind_rate_and_schedule(data):
    m = build_model("resnet18", 10, 3, (32, 32), width=0.0625)
    hook = OwnOptimizersHook()
    r = _recipe(epochs=3, epoch_iterations=2, milestones=(2,), gamma=0.1)
    res = fit(m, data, np.arange(40), r, seed=0, hook=hook)
    assert isinstance(hook.adam, torch.optim.Adam) and isinstance(hook.halving, torch.optim.SGD)
    task, adam, halving = zip(*hook.lrs)
    assert task == pytest.approx((0.05, 0.05, 0.05, 0.05, 0.005, 0.005))
    assert adam == pytest.approx((5e-4,) * 6)
    assert halving == pytest.approx((0.2, 0.2, 0.1, 0.1, 0.05, 0.05))
    assert set(res.state) == {"aux", "aux2"} and res.state["aux"].weight.grad is not None


def test_unknown_optimizer_settings_are_clear_errors(data):
    class Bad(TrainingHook):
        def setup(self, ctx):
            ctx.make_optimizer(ctx.model.parameters(), "adagrad")

    with pytest.raises(ValueError, match="adagrad"):
        fit(build_model("lenet", 10, 3, (32, 32)), data, np.arange(20), _recipe(epochs=1), 0, hook=Bad())


def _logit_dtypes(model):
    seen = []
    model.register_forward_hook(lambda m, _inp, out: seen.append((m.training, out.logits.dtype)))
    return seen


@pytest.mark.parametrize("grouped", [False, True])
def test_bf16_cpu_is_opt_in_and_trains_only(grouped):
    """On a CPU the training steps run in fp32 unless the recipe opts in with bf16_cpu; with it they run under bf16
    autocast (lone runs and lockstep groups alike), while validation and evaluation stay fp32."""
    from repro.core.train import TrainRequest
    from repro.exec.lockstep import fit_group

    d = load_dataset("synthetic-mnist", train_size=120, test_size=40)
    trained = {}
    for opt_in in (False, True):
        recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=2, validation_fraction=0.25, bf16_cpu=opt_in)
        torch.manual_seed(0)
        models = [build_model("lenet", 10, 1, (28, 28), dropout=0.5) for _ in range(2 if grouped else 1)]
        seen = _logit_dtypes(models[0])
        if grouped:  # the group steps a stacked copy (no module hooks fire): its precision shows in the weights
            fit_group([TrainRequest(m, d, np.arange(60 * i, 60 * i + 60), recipe, i, name=f"r/seed{i}")
                       for i, m in enumerate(models)])
        else:
            fit(models[0], d, np.arange(80), recipe, seed=0)
            assert {dt for training, dt in seen if training} == {torch.bfloat16 if opt_in else torch.float32}
            assert {dt for training, dt in seen if not training} == {torch.float32}  # validation passes
        seen.clear()
        accuracy(models[0], d.test_x, d.test_y, None, Augmenter((), d.spec.mean, d.spec.std, "cpu"))
        assert seen == [(False, torch.float32)]
        assert all(torch.isfinite(p).all() for m in models for p in m.parameters())
        trained[opt_in] = torch.cat([p.detach().flatten() for m in models for p in m.parameters()])
    assert not torch.equal(trained[False], trained[True])  # the opt-in reached the training steps
    assert not Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=1).bf16_cpu


def test_no_profile_opts_into_bf16_on_cpu():
    """bf16 training on a CPU changes rounding: no recipe of either profile turns it on."""
    from repro.spec.params import load_params

    for profile in ("smoke", "paper"):
        params = load_params(profile=profile)
        assert not any(r.bf16_cpu for _, r in params.recipes), profile
