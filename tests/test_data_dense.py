"""Dense datasets: the Cityscapes / BDD100K / VOC loaders on tiny trees the tests write (label mapping, NEAREST
masks, scaled boxes, difficult flags, padding, the subset decoded first, missing / corrupt data) and the synthetic
segmentation / detection stand-ins (determinism, formats, classes, ignore share, boxes)."""

import dataclasses

import numpy as np
import pytest
import torch
import torchvision.datasets  # noqa: F401  (imported at collection: seconds on a cold start, not a test's time)
from PIL import Image

from repro.data.datasets import _subsample
from repro.data.loaders import dense as dense_real
from repro.data.loaders.common import DatasetMissingError
from repro.data.loaders.dense import (
    CITYSCAPES_LUT,
    VOC_CLASSES,
    dense_dataset_present,
    load_dense_real,
    validate_dense,
)
from repro.data.synthetic_dense import make_synthetic_dense, smooth_fields
from repro.data.validate import DataError
from repro.spec.datasets import DATASETS, IGNORE_INDEX, REAL, get_spec


def fake_spec(monkeypatch, name: str, **changes):
    spec = dataclasses.replace(REAL[name], **changes)
    monkeypatch.setitem(REAL, name, spec)
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def write_png(path, arr: np.ndarray, fmt: str = "PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt, quality=100)


def flat_image(h: int, w: int, i: int) -> np.ndarray:
    """An RGB image whose red channel encodes its number i (20 * (i + 1)), a gradient in green."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = 20 * (i + 1)
    arr[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[..., 2] = 90
    return arr


def image_number(x: torch.Tensor) -> list[int]:
    return (x[:, 0].float().mean((1, 2)) / 20).round().long().sub(1).tolist()


def nearest(mask: np.ndarray, hw) -> np.ndarray:
    return np.array(Image.fromarray(mask).resize((hw[1], hw[0]), Image.Resampling.NEAREST))


# ---- Cityscapes ------------------------------------------------------------------------------------------------

CITY_FILES = {"train": [("bochum", 0), ("aachen", 1), ("aachen", 0)], "val": [("frankfurt", 1), ("frankfurt", 0)]}


def city_mask(i: int) -> np.ndarray:
    """32 x 64 labelIds: road (7) left, car (26) top right, unlabeled (0) and bicycle (33) blocks, a block of
    building / wall / fence (11 + i) and one of static (4) whose column depends on i (i in 0..2)."""
    m = np.full((32, 64), 7, dtype=np.uint8)
    m[:16, 32:] = 26
    m[16:, 48:] = 33
    m[:8, :8] = 0
    m[24:, 8 * i: 8 * i + 8] = 4
    m[8:16, 8:16] = 11 + i  # building (11 -> 2), wall (12 -> 3) or fence (13 -> 4)
    return m


def write_cityscapes(tmp_path, monkeypatch, hw=(16, 32)):
    root = tmp_path / "cityscapes"
    for split, files in CITY_FILES.items():
        for k, (city, j) in enumerate(files):
            stem = f"{city}_00000{j}_000019"
            n = 10 * (split == "val") + k
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", flat_image(32, 64, n))
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", city_mask(n % 3))
    fake_spec(monkeypatch, "cityscapes", height=hw[0], width=hw[1], stored_size=None, train_size=3, test_size=2)
    return root


def test_cityscapes_maps_label_ids_to_train_ids_and_resizes(tmp_path, monkeypatch):
    root = write_cityscapes(tmp_path, monkeypatch)
    assert dense_dataset_present("cityscapes", tmp_path) and not dense_dataset_present("voc", tmp_path)
    tx, ty, sx, sy = load_dense_real("cityscapes", root)
    assert tx.shape == (3, 3, 16, 32) and sx.shape == (2, 3, 16, 32) and tx.dtype == sx.dtype == torch.uint8
    assert ty.shape == (3, 16, 32) and sy.shape == (2, 16, 32) and ty.dtype == sy.dtype == torch.uint8
    # sorted by image path: aachen_000000, aachen_000001, bochum_000000 (written as images 2, 1, 0)
    assert image_number(tx) == [2, 1, 0] and image_number(sx) == [11, 10]
    for x, y in ((tx, ty), (sx, sy)):
        for img, mask in zip(image_number(x), y, strict=True):
            want = CITYSCAPES_LUT[nearest(city_mask(img % 3), (16, 32))]
            assert np.array_equal(mask.numpy(), want)
    m = ty[0]  # image 2: chosen pixels (stored at half resolution)
    assert m[12, 4] == 0 and m[2, 20] == 13 and m[12, 28] == 18 and m[1, 1] == IGNORE_INDEX  # road car bicycle void
    assert m[5, 5] == 4 and m[13, 8] == IGNORE_INDEX  # fence (13), static (4)
    assert set(torch.cat([ty.flatten(), sy.flatten()]).unique().tolist()) == {0, 2, 3, 4, 13, 18, IGNORE_INDEX}


def test_cityscapes_images_are_bilinear_resized(tmp_path, monkeypatch):
    root = write_cityscapes(tmp_path, monkeypatch, hw=(20, 24))  # another aspect ratio: a plain resize
    tx = load_dense_real("cityscapes", root)[0]
    want = np.array(Image.fromarray(flat_image(32, 64, 2)).resize((24, 20), Image.Resampling.BILINEAR))
    assert torch.equal(tx[0], torch.from_numpy(want).permute(2, 0, 1))


def test_cityscapes_subset_is_decoded_first_and_equals_subsampling(tmp_path, monkeypatch):
    root = write_cityscapes(tmp_path, monkeypatch)
    full = load_dense_real("cityscapes", root)
    calls = []
    read = dense_real._read_image
    monkeypatch.setattr(dense_real, "_read_image", lambda p, *a: calls.append(p) or read(p, *a))
    sub = load_dense_real("cityscapes", root, train_size=2, test_size=1)
    assert len(calls) == 3  # only the subset is decoded
    ex, ey = _subsample(full[0], full[1], 2, salt=1)
    vx, vy = _subsample(full[2], full[3], 1, salt=2)
    for got, want in zip(sub, (ex, ey, vx, vy), strict=True):
        assert torch.equal(got, want)


def test_cityscapes_corrupt_files_are_one_line(tmp_path, monkeypatch):
    root = write_cityscapes(tmp_path, monkeypatch)
    mask = root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000019_gtFine_labelIds.png"
    bad = city_mask(0)
    bad[0, 0] = 40
    write_png(mask, bad)
    with pytest.raises(DataError) as exc:
        load_dense_real("cityscapes", root)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{mask}: holds value 40, outside Cityscapes' labelIds 0..33")
    write_png(mask, np.zeros((32, 64, 3), dtype=np.uint8))  # a colour PNG in the labelIds' place
    with pytest.raises(DataError, match="3 channels, expected a single-channel label PNG"):
        load_dense_real("cityscapes", root)
    write_png(mask, city_mask(0)[:16])
    with pytest.raises(DataError, match="is 64x16 but its image is 64x32"):
        load_dense_real("cityscapes", root)
    mask.unlink()
    with pytest.raises(DataError, match=r"1 \*_gtFine_labelIds.png file\(s\) are absent"):
        load_dense_real("cityscapes", root)
    write_png(mask, city_mask(0))
    image = root / "leftImg8bit" / "train" / "aachen" / "aachen_000001_000019_leftImg8bit.png"
    image.write_bytes(b"not a png")
    with pytest.raises(DataError) as exc:
        load_dense_real("cityscapes", root)
    assert str(exc.value).startswith(f"{image}: cannot be read as an image")
    fake_spec(monkeypatch, "cityscapes", height=16, width=32, train_size=2975, test_size=2)
    with pytest.raises(DataError, match=r"3 train images, expected 2,975 \(cityscapes's train split\)"):
        load_dense_real("cityscapes", root)


def test_memory_cap_refuses_before_decoding(tmp_path, monkeypatch):
    root = write_cityscapes(tmp_path, monkeypatch)
    monkeypatch.setattr(dense_real, "_read_image", lambda *a: pytest.fail("decoded despite the cap"))
    monkeypatch.setenv("REPRO_MAX_DATASET_GIB", "0.000001")  # 1,074 bytes; 5 x 4 x 16 x 32 = 10,240 needed
    with pytest.raises(ValueError) as exc:
        load_dense_real("cityscapes", root)
    msg = str(exc.value)
    assert "\n" not in msg and "images and masks" in msg and "REPRO_MAX_DATASET_GIB" in msg


# ---- BDD100K ---------------------------------------------------------------------------------------------------

def bdd_mask(i: int) -> np.ndarray:
    m = np.full((36, 64), i, dtype=np.uint8)
    m[:, 32:] = 18 - i
    m[30:, :] = IGNORE_INDEX
    return m


def write_bdd(tmp_path, monkeypatch):
    root = tmp_path / "bdd100k"
    for split, stems in (("train", ["c3", "a1", "b2"]), ("val", ["e5", "d4"])):
        for stem in stems:
            i = int(stem[1])
            write_png(root / "images" / "10k" / split / f"{stem}.jpg", flat_image(36, 64, i), fmt="JPEG")
            write_png(root / "labels" / "sem_seg" / "masks" / split / f"{stem}.png", bdd_mask(i))
    fake_spec(monkeypatch, "bdd100k", height=12, width=16, train_size=3, test_size=2)
    return root


def test_bdd100k_masks_are_train_ids_paired_by_stem(tmp_path, monkeypatch):
    root = write_bdd(tmp_path, monkeypatch)
    tx, ty, sx, sy = load_dense_real("bdd100k", root)
    assert tx.shape == (3, 3, 12, 16) and ty.shape == (3, 12, 16) and sy.shape == (2, 12, 16)
    assert image_number(tx) == [1, 2, 3] and image_number(sx) == [4, 5]  # sorted by stem: a1 b2 c3 / d4 e5
    for x, y in ((tx, ty), (sx, sy)):
        for i, mask in zip(image_number(x), y, strict=True):
            assert np.array_equal(mask.numpy(), nearest(bdd_mask(i), (12, 16)))
    assert set(ty.unique().tolist()) == {1, 2, 3, 15, 16, 17, IGNORE_INDEX}
    sub = load_dense_real("bdd100k", root, train_size=1, test_size=1)
    assert torch.equal(sub[1], _subsample(tx, ty, 1, 1)[1]) and torch.equal(sub[2], _subsample(sx, sy, 1, 2)[0])


def test_bdd100k_wrong_values_and_unpaired_files_are_one_line(tmp_path, monkeypatch):
    root = write_bdd(tmp_path, monkeypatch)
    mask = root / "labels" / "sem_seg" / "masks" / "train" / "b2.png"
    bad = bdd_mask(2)
    bad[0, 0] = 19
    write_png(mask, bad)
    with pytest.raises(DataError) as exc:
        load_dense_real("bdd100k", root)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{mask}: holds value 19, outside BDD100K's train ids 0..18 and 255")
    mask.rename(mask.with_name("zz.png"))
    with pytest.raises(DataError, match=r"1 train image\(s\) have no mask of the same stem \(e.g. b2\)"):
        load_dense_real("bdd100k", root)


# ---- PASCAL VOC ------------------------------------------------------------------------------------------------

def voc_xml(objects, size=(60, 40)) -> str:
    parts = [f"<annotation><filename>x.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
             f"<depth>3</depth></size>"]
    for name, box, difficult in objects:
        tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>{tag}<bndbox>"
                     f"<xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax>"
                     f"</bndbox></object>")
    return "".join(parts) + "</annotation>"


# (year, image set) -> [(id, objects)]; objects (name, (xmin, ymin, xmax, ymax) 1-based, difficult or None)
VOC_TREE = {
    ("2007", "trainval"): [("000005", [("chair", (11, 5, 30, 20), 0)]),
                           ("000007", [("car", (1, 1, 60, 40), 0), ("person", (21, 9, 40, 36), 1),
                                       ("tvmonitor", (3, 3, 4, 4), None)])],
    ("2012", "trainval"): [("2008_000008", [("horse", (31, 11, 50, 30), 0), ("aeroplane", (2, 2, 10, 10), 0)])],
    ("2007", "test"): [("000001", [("dog", (11, 5, 30, 20), 0)]), ("000004", [("cat", (5, 5, 15, 15), 1)])],
}


def write_voc(tmp_path, monkeypatch):
    root = tmp_path / "voc"
    n = 0
    for (year, image_set), items in VOC_TREE.items():
        base = root / "VOCdevkit" / f"VOC{year}"
        (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i, _ in items))
        (base / "Annotations").mkdir(exist_ok=True)
        for ident, objects in items:
            write_png(base / "JPEGImages" / f"{ident}.jpg", flat_image(40, 60, n), fmt="JPEG")
            (base / "Annotations" / f"{ident}.xml").write_text(voc_xml(objects))
            n += 1
    fake_spec(monkeypatch, "voc", height=30, width=30, train_size=3, test_size=2)
    return root


def test_voc_boxes_are_scaled_padded_and_keep_difficult(tmp_path, monkeypatch):
    root = write_voc(tmp_path, monkeypatch)
    tx, ty, sx, sy = load_dense_real("voc", root)
    assert tx.shape == (3, 3, 30, 30) and sx.shape == (2, 3, 30, 30)
    assert ty.dtype == sy.dtype == torch.float32 and ty.shape == (3, 3, 6) and sy.shape == (2, 1, 6)
    assert image_number(tx) == [0, 1, 2] and image_number(sx) == [3, 4]  # 07 trainval, then 12 trainval
    sx_, sy_ = 30 / 60, 30 / 40  # 60 x 40 images stored at 30 x 30
    cls = VOC_CLASSES.index

    def row(box, name, difficult):  # 1-based inclusive corners -> [xmin - 1, ymin - 1, xmax, ymax], scaled
        return [(box[0] - 1) * sx_, (box[1] - 1) * sy_, box[2] * sx_, box[3] * sy_, cls(name), difficult]

    pad = [-1.0] * 6
    want_train = [
        [row((11, 5, 30, 20), "chair", 0), pad, pad],
        [row((1, 1, 60, 40), "car", 0), row((21, 9, 40, 36), "person", 1), row((3, 3, 4, 4), "tvmonitor", 0)],
        [row((31, 11, 50, 30), "horse", 0), row((2, 2, 10, 10), "aeroplane", 0), pad],
    ]
    assert torch.allclose(ty, torch.tensor(want_train))
    assert torch.allclose(sy, torch.tensor([[row((11, 5, 30, 20), "dog", 0)], [row((5, 5, 15, 15), "cat", 1)]]))
    assert ty[1, 0].tolist()[:4] == [0.0, 0.0, 30.0, 30.0]  # a whole-image box covers the stored image
    assert VOC_CLASSES[:3] == ("aeroplane", "bicycle", "bird") and VOC_CLASSES[-1] == "tvmonitor"


def test_voc_edge_box_of_a_299_px_image_stays_inside_the_stored_side(tmp_path, monkeypatch):
    """Issue 22.9: a 500 x 299 image's whole-image box (1-based 1..500 x 1..299) scaled to 300 x 300 in float32
    gives 299 * (300 / 299) = 300.0000305 > 300; the loader clips after scaling, so validate_dense accepts it
    and the box is exactly the stored image."""
    root = write_voc(tmp_path, monkeypatch)
    base = root / "VOCdevkit" / "VOC2007"
    write_png(base / "JPEGImages" / "000005.jpg", flat_image(299, 500, 0), fmt="JPEG")
    (base / "Annotations" / "000005.xml").write_text(voc_xml([("chair", (1, 1, 500, 299), 0)], size=(500, 299)))
    fake_spec(monkeypatch, "voc", height=300, width=300, train_size=3, test_size=2)
    assert (np.float32(299) * (300 / 299)).item() > 300  # the float32 overshoot this test is about
    tx, ty, _, sy = load_dense_real("voc", root)
    assert tx.shape == (3, 3, 300, 300)
    assert ty[0, 0].tolist() == [0.0, 0.0, 300.0, 300.0, VOC_CLASSES.index("chair"), 0.0]
    assert float(ty[..., :4].max()) <= 300 and float(sy[..., :4].max()) <= 300


def test_voc_subset_equals_subsampling_with_the_splits_box_count(tmp_path, monkeypatch):
    root = write_voc(tmp_path, monkeypatch)
    full = load_dense_real("voc", root)
    sub = load_dense_real("voc", root, train_size=1, test_size=1)
    ex, ey = _subsample(full[0], full[1], 1, salt=1)
    vx, vy = _subsample(full[2], full[3], 1, salt=2)
    assert sub[1].shape[1] == 3  # M is the whole split's largest count, as after a full load
    for got, want in zip(sub, (ex, ey, vx, vy), strict=True):
        assert torch.equal(got, want)


def test_voc_bad_annotations_are_one_line(tmp_path, monkeypatch):
    root = write_voc(tmp_path, monkeypatch)
    xml = root / "VOCdevkit" / "VOC2012" / "Annotations" / "2008_000008.xml"
    xml.write_text(voc_xml([("unicorn", (1, 1, 5, 5), 0)]))
    with pytest.raises(DataError) as exc:
        load_dense_real("voc", root)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{xml}: names class 'unicorn', not one of VOC's 20 classes")
    xml.write_text("<annotation><object>")
    with pytest.raises(DataError, match="cannot be read as a VOC annotation"):
        load_dense_real("voc", root)
    xml.write_text(voc_xml([("horse", (30, 11, 20, 30), 0)]))
    with pytest.raises(DataError, match="xmax < xmin"):
        load_dense_real("voc", root)
    xml.unlink()
    with pytest.raises(DataError, match=r"1 VOC2012 trainval annotation file\(s\) are absent"):
        load_dense_real("voc", root)


def test_missing_dense_data_names_the_expected_layout(tmp_path):
    for name, phrases in (
        ("cityscapes", ("leftImg8bit/{train,val}/<city>/*_leftImg8bit.png", "*_gtFine_labelIds.png")),
        ("bdd100k", ("images/10k/{train,val}/*.jpg", "labels/sem_seg/masks/{train,val}/*.png")),
        ("voc", ("VOCdevkit/VOC2007", "VOCdevkit/VOC2012", "VOCDetection")),
    ):
        assert not dense_dataset_present(name, tmp_path)
        with pytest.raises(DatasetMissingError) as exc:
            load_dense_real(name, tmp_path / name)
        msg = str(exc.value)
        assert "\n" not in msg and str(tmp_path / name) in msg and "data/README.md" in msg
        for phrase in phrases:
            assert phrase in msg, (phrase, msg)


def test_validate_dense_rejects_malformed_targets():
    spec = get_spec("synthetic-cityscapes")
    x = torch.zeros(2, *spec.stored_shape, dtype=torch.uint8)
    y = torch.zeros(2, *spec.stored_shape[1:], dtype=torch.uint8)
    validate_dense((x, y, x, y), spec, "here", "fix")
    validate_dense((x, y, x, torch.full_like(y, IGNORE_INDEX)), spec, "here", "fix")
    y[1, 0, 0] = 19
    with pytest.raises(DataError, match="train masks hold value 19"):
        validate_dense((x, y, x, y), spec, "here", "fix")
    det = get_spec("synthetic-voc")
    x = torch.zeros(1, 3, det.height, det.width, dtype=torch.uint8)
    boxes = torch.tensor([[[1.0, 2.0, 30.0, 40.0, 3.0, 0.0], [-1.0] * 6]])
    validate_dense((x, boxes, x, boxes), det, "here", "fix")
    for bad, problem in ((torch.tensor([[[1.0, 2.0, 30.0, 40.0, 20.0, 0.0]]]), "classes"),
                         (torch.tensor([[[1.0, 2.0, 30.0, 40.0, -1.0, 0.0]]]), "padding rows"),
                         (torch.tensor([[[10.0, 2.0, 5.0, 40.0, 3.0, 0.0]]]), "x1 < x2"),
                         (torch.tensor([[[1.0, 2.0, 97.0, 40.0, 3.0, 0.0]]]), "x2 <= 96"),
                         (torch.tensor([[[1.0, 2.0, 30.0, 40.0, 3.0, 2.0]]]), "difficult")):
        with pytest.raises(DataError, match=problem):
            validate_dense((x, bad, x, boxes), det, "here", "fix")


# ---- synthetic stand-ins ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["synthetic-cityscapes", "synthetic-bdd100k", "synthetic-voc"])
def test_synthetic_dense_is_deterministic_and_ignores_the_global_rng(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = make_synthetic_dense(spec, 40, 20)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither used nor advanced
    torch.manual_seed(123)
    b = make_synthetic_dense(spec, 40, 20)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    c = make_synthetic_dense(spec, 40, 7)  # the train split does not depend on the test size
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]) and not torch.equal(a[0][:20], a[2])
    validate_dense(a, spec, "generator", "bug", (40, 20))


@pytest.mark.parametrize("name", ["synthetic-cityscapes", "synthetic-bdd100k"])
def test_synthetic_segmentation_classes_ignore_and_texture(name):
    spec = get_spec(name)
    tx, ty, sx, sy = make_synthetic_dense(spec, 300, 50)
    assert tx.shape == (300, *spec.stored_shape) and tx.dtype == torch.uint8
    assert ty.shape == (300, *spec.stored_shape[1:]) and ty.dtype == torch.uint8 and sy.shape[0] == 50
    counts = torch.bincount(ty.flatten().long(), minlength=256)
    assert (counts[: spec.num_classes] > 0).all()  # all 19 classes occur
    assert counts[spec.num_classes: IGNORE_INDEX].sum() == 0
    ignore = counts[IGNORE_INDEX].item() / ty.numel()
    assert 0.005 < ignore < 0.1
    assert int(tx.min()) < 40 and int(tx.max()) > 215 and tx.float().std() > 30  # not flat
    # the class explains much of the colour, but not all of it (noise, shared colours)
    labelled = ty != IGNORE_INDEX
    px = tx.permute(0, 2, 3, 1)[labelled].float()
    cls = ty[labelled].long()
    means = torch.stack([px[cls == c].mean(0) for c in range(spec.num_classes)])
    explained = 1 - (px - means[cls]).var(0).sum() / px.var(0).sum()
    assert 0.3 < explained < 0.95, explained


def test_synthetic_detection_boxes():
    spec = get_spec("synthetic-voc")
    tx, ty, sx, sy = make_synthetic_dense(spec, 300, 60)
    assert tx.shape == (300, 3, 96, 96) and tx.dtype == torch.uint8 and sx.shape == (60, 3, 96, 96)
    for y, n in ((ty, 300), (sy, 60)):
        assert y.dtype == torch.float32 and y.shape[0] == n and y.shape[2] == 6 and 1 <= y.shape[1] <= 4
        real = y[..., 4] >= 0
        assert (y[~real] == -1).all()  # padding rows
        assert real[:, 0].all()  # at least one object each; objects first
        assert (real[:, 1:].int() <= real[:, :-1].int()).all()
        rows = y[real]
        assert (rows[:, 0] >= 0).all() and (rows[:, 1] >= 0).all() and (rows[:, 2] <= 96).all()
        assert (rows[:, 3] <= 96).all() and (rows[:, 0] < rows[:, 2]).all() and (rows[:, 1] < rows[:, 3]).all()
        assert set(rows[:, 5].unique().tolist()) <= {0.0, 1.0}
    rows = ty[ty[..., 4] >= 0]
    assert ty.shape[1] == 4 and set(rows[:, 4].long().unique().tolist()) == set(range(20))
    assert 0.01 < rows[:, 5].mean().item() < 0.12  # a small share of difficult (truncated) objects
    sides = torch.stack([rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]])[:, rows[:, 5] == 0]
    # 15%-60% of the side; a non-difficult truncated box keeps at least half of its side
    assert sides.min() >= 0.5 * 0.15 * 96 - 1 and sides.max() <= 0.6 * 96 + 1 and sides.median() > 0.25 * 96
    assert tx.float().std() > 30


def test_smooth_fields_match_bilinear_upsampling():
    from repro.data.synthetic import _smooth

    a = smooth_fields(torch.Generator().manual_seed(3), 2, 3, 32, 64, low=8)
    b = _smooth(torch.Generator().manual_seed(3), 2, 3, 32, 64, low=8)
    assert torch.allclose(a, b, atol=1e-5)


def test_synthetic_dense_rejects_classification_specs():
    with pytest.raises(ValueError, match="no dense generator"):
        make_synthetic_dense(get_spec("synthetic-cifar10"), 4, 4)
