"""On-device augmentation samples torchvision's RandomCrop(32, 4) + HFlip (+ RandomRotation(15)) distribution."""

import numpy as np
import torch

from repro.data.augment import Augmenter, normalize, random_crop, random_flip, random_rotate


def _marker_batch(n, h=32, w=32):
    """Each image has a single bright pixel at (0, 0): where it lands reveals the crop offset."""
    x = torch.zeros(n, 1, h, w, dtype=torch.uint8)
    x[:, :, 0, 0] = 255
    return x


def test_crop_offsets_uniform_over_0_to_8():
    n = 40_000
    g = torch.Generator().manual_seed(0)
    # bright pixel at (4, 4) lands at (4 - oy + 4, ...) = (8 - oy); visible for every offset in 0..8
    x = torch.zeros(n, 1, 32, 32, dtype=torch.uint8)
    x[:, :, 4, 4] = 255
    out = random_crop(x, g)
    pos = out[:, 0].reshape(n, -1).argmax(1)
    oy, ox = 8 - pos // 32, 8 - pos % 32
    for o in (oy, ox):
        counts = np.bincount(o.numpy(), minlength=9)
        assert len(counts) == 9 and counts.min() > 0
        expected = n / 9
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 30, counts  # chi-square, 8 dof: p ~ 2e-4
    assert abs(np.corrcoef(oy.numpy(), ox.numpy())[0, 1]) < 0.03  # independent axes


def test_crop_pads_with_zero_in_raw_pixels():
    x = torch.full((500, 3, 32, 32), 200, dtype=torch.uint8)
    out = random_crop(x, torch.Generator().manual_seed(1))
    vals = torch.unique(out)
    assert set(vals.tolist()) <= {0, 200} and 0 in vals.tolist()
    # after normalisation the pad is -mean/std, not 0 (as torchvision, which pads before Normalize)
    mean, std = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])
    aug = Augmenter(["crop"], mean.tolist(), std.tolist(), "cpu")
    z = aug.train(x, torch.Generator().manual_seed(1))
    assert torch.isclose(z.min(), torch.tensor(-2.0))


def test_flip_rate_half_and_independent():
    n = 20_000
    x = _marker_batch(n)
    out = random_flip(x, torch.Generator().manual_seed(2))
    flipped = out[:, 0, 0, -1] == 255
    assert abs(flipped.float().mean().item() - 0.5) < 0.015
    assert torch.equal(out[~flipped], x[~flipped])
    assert torch.equal(out[flipped], x[flipped].flip(-1))


def test_rotation_keeps_centre_fills_zero_and_zero_angle_is_identity():
    x = torch.full((64, 1, 32, 32), 100, dtype=torch.uint8)
    out = random_rotate(x, torch.Generator().manual_seed(3))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert set(torch.unique(out).tolist()) <= {0, 100}  # nearest-neighbour: no new values; zero fill
    assert (out[:, :, 12:20, 12:20] == 100).all()  # the centre always maps inside the image
    assert (out == 0).any()  # some corners filled
    img = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(random_rotate(img, torch.Generator().manual_seed(0), degrees=0.0), img)


def test_augmenter_order_and_determinism():
    aug = Augmenter(["rotate", "flip", "crop"], [0.5] * 3, [0.5] * 3, "cpu")
    assert aug.names == ("crop", "flip", "rotate")
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = aug.train(x, torch.Generator().manual_seed(5))
    b = aug.train(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert torch.allclose(aug.eval(x), normalize(x, aug.mean, aug.std))
