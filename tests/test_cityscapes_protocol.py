"""Cityscapes protocol (issue 22.10): frames held at full resolution, trained on crops of them (MCDAL: fyu/drn's
random 688 crops + flips; DAAL: the fixed centre window, no augmentation), evaluated and queried on full frames with
full-frame labels; full frames stay in host memory behind HostFrames; the squashed storage is an option."""

import dataclasses

import numpy as np
import pytest
import torch

from repro.core.tasks import get_task
from repro.core.train import fit, make_augmenter
from repro.data.augment import Augmenter, center_crop, frame_crop
from repro.data.datasets import ImageData, load_dataset
from repro.data.host_frames import HostFrames, hold
from repro.data.loaders.dense import load_dense_real
from repro.models import build_model
from repro.spec.datasets import CITYSCAPES_FRAME, REAL, get_spec
from repro.spec.params import ConfigError, parse_params
from repro.spec.recipe import Recipe
from tests.conftest import tiny_params
from tests.test_data_dense import CITY_FILES, fake_spec, flat_image, write_png


def test_cityscapes_is_held_at_full_frames_and_trained_on_688_crops():
    spec = REAL["cityscapes"]
    assert spec.stored_shape == (3, *CITYSCAPES_FRAME) == (3, 1024, 2048)
    assert (spec.height, spec.width) == (688, 688) and spec.host_resident
    squashed = REAL["cityscapes-squashed"]
    assert squashed.stored_shape == (3, 688, 688) and squashed.root == "cityscapes" and not squashed.host_resident


def test_the_loader_keeps_frames_and_labels_at_their_native_size(tmp_path, monkeypatch):
    root = tmp_path / "cityscapes"
    rng = np.random.default_rng(0)
    masks = {}
    for split, files in CITY_FILES.items():
        for k, (city, j) in enumerate(files):
            stem = f"{city}_00000{j}_000019"
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", flat_image(32, 64, k))
            masks[split, city, j] = rng.choice([7, 8, 26, 0], size=(32, 64)).astype(np.uint8)  # pixel-level detail
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", masks[split, city, j])
    fake_spec(monkeypatch, "cityscapes", stored_size=(32, 64), height=16, width=16, train_size=3, test_size=2)
    tx, ty, sx, sy = load_dense_real("cityscapes", root)
    assert tx.shape == (3, 3, 32, 64) and sy.shape == (2, 32, 64)
    lut = {7: 0, 8: 1, 26: 13, 0: 255}
    want = np.vectorize(lut.get)(masks["val", "frankfurt", 0]).astype(np.uint8)  # sorted: frankfurt_000000 first
    assert np.array_equal(sy[0].numpy(), want)  # every pixel of the full-frame label, no resampling


def _position_frames(n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames whose pixels encode (image, row, col) and masks holding the row (mod 19) of each pixel."""
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    x = torch.stack([torch.stack([rows, cols, torch.full((h, w), i)]) for i in range(n)]).to(torch.uint8)
    return x, (rows % 19).to(torch.uint8).expand(n, h, w).clone()


def test_frame_crop_cuts_image_and_mask_at_the_same_uniform_window():
    x, y = _position_frames(400, 12, 20)
    gen = torch.Generator().manual_seed(0)
    cx, cy = frame_crop(x, y, gen, (5, 8))
    assert cx.shape == (400, 3, 5, 8) and cy.shape == (400, 5, 8)
    top, left = cx[:, 0, 0, 0].long(), cx[:, 1, 0, 0].long()
    for i in range(len(x)):  # a window of the frame itself, the mask's the same window
        assert torch.equal(cx[i], x[i, :, top[i]: top[i] + 5, left[i]: left[i] + 8])
        assert torch.equal(cy[i], y[i, top[i]: top[i] + 5, left[i]: left[i] + 8])
    assert set(top.tolist()) == set(range(8)) and set(left.tolist()) == set(range(13))  # every offset reachable
    assert torch.equal(cx[:, 2, 0, 0], (torch.arange(400) % 256).to(torch.uint8))  # the images kept their order


def test_frame_center_is_the_fixed_centre_window_and_draws_nothing():
    x, y = _position_frames(3, 12, 20)
    aug = Augmenter(["frame_center"], [0.0] * 3, [1.0] * 3, "cpu", input_size=(6, 8))
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    ax, ay = aug.train_pair(x, y, gen, "segmentation")
    assert torch.equal(gen.get_state(), state)
    assert torch.equal(ax, (center_crop(x, (6, 8)).float() / 255)) and torch.equal(ay, y[:, 3:9, 6:14])


def test_training_sees_crops_and_evaluation_sees_full_frames():
    """The stand-in keeps the protocol: frames stored at 32 x 64, trained on 24 x 24 windows, evaluated whole."""
    data = load_dataset("synthetic-cityscapes", train_size=16, test_size=4)
    assert data.train_x.shape[-2:] == (32, 64) and data.test_y.shape[-2:] == (32, 64)
    model = build_model("drn_d_22", 19, 3, (24, 24), width=0.125)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append((m.training, tuple(args[0].shape[-2:]))))
    recipe = Recipe(optimizer="sgd", lr=0.01, batch_size=8, epochs=1, augment=("frame_crop", "flip"),
                    eval_batch_size=4)
    fit(model, data, np.arange(16), recipe, seed=0)
    scores = get_task("segmentation").evaluate(model, data.test_x, data.test_y,
                                               Augmenter((), data.spec.mean, data.spec.std, "cpu"), 4, False)
    assert {s for t, s in seen if t} == {(24, 24)} and {s for t, s in seen if not t} == {(32, 64)}
    assert 0.0 <= scores["miou"] <= 1.0


def test_host_frames_train_and_evaluate_exactly_as_device_tensors():
    data = load_dataset("synthetic-cityscapes", train_size=16, test_size=4)
    host = ImageData(data.spec, *(HostFrames(t, "cpu") for t in (data.train_x, data.train_y, data.test_x,
                                                                   data.test_y)))
    recipe = Recipe(optimizer="sgd", lr=0.01, batch_size=8, epochs=2, augment=("frame_crop", "flip"),
                    eval_batch_size=4)
    results = []
    for d in (data, host):
        model = build_model("drn_d_22", 19, 3, (24, 24), width=0.125)
        torch.manual_seed(0)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.05)
        fit(model, d, np.arange(16), recipe, seed=3)
        aug = make_augmenter(d, recipe, "cpu")
        results.append((model.state_dict(), get_task("segmentation").evaluate(model, d.test_x, d.test_y, aug, 4,
                                                                                False)))
    (s0, m0), (s1, m1) = results
    assert all(torch.equal(s0[k], s1[k]) for k in s0) and m0 == m1
    assert isinstance(host.train_x[torch.tensor([2, 0])], torch.Tensor) and host.train_x.device.type == "cpu"


def test_hold_keeps_host_resident_data_on_the_host_only_off_the_cpu():
    t = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert hold(t, "cpu", True) is t or torch.equal(hold(t, "cpu", True), t)
    assert not isinstance(hold(t, "cpu", True), HostFrames)
    assert isinstance(hold(t, "meta", True), HostFrames) and not isinstance(hold(t, "meta", False), HostFrames)
    frames = HostFrames(t, "meta")
    assert frames[torch.tensor([1])].device.type == "meta" and len(frames) == 2 and frames.shape == t.shape


def test_frames_stored_larger_than_the_input_must_name_their_crop(tmp_path):
    raw = tiny_params(tmp_path, dataset="synthetic-cityscapes", backbone="drn_d_22", metric="miou")
    raw["recipes"]["tiny"]["augment"] = ["flip"]
    with pytest.raises(ConfigError, match="frame_crop"):
        parse_params(raw)
    raw["recipes"]["tiny"]["augment"] = ["frame_crop", "frame_center"]
    with pytest.raises(ConfigError, match="not both"):
        parse_params(raw)
    raw["recipes"]["tiny"]["augment"] = ["frame_crop", "rotate"]
    with pytest.raises(ConfigError, match="rotate"):
        parse_params(raw)
    raw["recipes"]["tiny"]["augment"] = ["frame_crop", "flip"]
    parse_params(raw)


def test_the_paper_recipes_crop_as_stated():
    from repro.spec.params import load_params

    params = load_params("params.yaml", profile="paper")
    assert params.recipe("mcdal_drn").augment == ("frame_crop", "flip")
    assert params.recipe("daal_drn").augment == ("frame_center",)
    assert get_spec("synthetic-cityscapes").stored_shape == (3, 32, 64)
    assert dataclasses.replace(get_spec("cityscapes")).host_resident
