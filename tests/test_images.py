"""Image data through the audio engine: IDX parsing, image folders, inversion, augmentation, a tiny MNIST run."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audiocnn.config import ConfigError, DataConfig, load_config
from audiocnn.data import DataError
from audiocnn.data.images import (
    IDX_IMAGES, IDX_LABELS, ImageDataset, ImageError, ImageStore, build_image_loaders, build_image_splits,
    decode_image, read_idx,
)
from audiocnn.pipelines import train
from audiocnn.features.image import ChannelNorm, ImageAugment, invert
from layouts import idx_bytes, images, mnist

ROOT = Path(__file__).resolve().parents[1]


# --- IDX files --------------------------------------------------------------------------------------------------

def test_idx_parses_hand_built_bytes(tmp_path):
    # magic 2051 = 0x00000803 (unsigned bytes, 3 dims), then big-endian sizes 2, 3, 4, then row-major pixels
    pixels = bytes(range(24))
    raw = b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03" + b"\x00\x00\x00\x04" + pixels
    (tmp_path / "images").write_bytes(raw)
    (tmp_path / "images.gz").write_bytes(gzip.compress(raw))
    expected = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("images", "images.gz"):
        out = read_idx(tmp_path / name, magic=IDX_IMAGES)
        assert out.dtype == np.uint8 and np.array_equal(out, expected)
    # labels: magic 2049 = 0x00000801, one size; the gzip check looks at content, not at the name
    (tmp_path / "labels.gz").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x00\x09")
    assert read_idx(tmp_path / "labels.gz", magic=IDX_LABELS).tolist() == [7, 0, 9]
    # other type codes are big-endian too: 0x0B int16
    (tmp_path / "shorts").write_bytes(b"\x00\x00\x0b\x01\x00\x00\x00\x02\x01\x02\xff\xfe")
    assert read_idx(tmp_path / "shorts").tolist() == [258, -2]


@pytest.mark.parametrize("raw, magic, message", [
    (b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02", IDX_IMAGES, "magic number 2049"),       # labels given as images
    (b"P5\n28 28\n255\n" + bytes(10), IDX_IMAGES, "not an IDX file"),                    # not IDX at all
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c" + bytes(100), IDX_IMAGES, "truncated"),
    (b"\x00\x00\x08\x03\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00" + bytes(2), IDX_IMAGES, "truncated"),  # little-endian sizes
    (b"\x00\x00\x08\x03\x00\x00", IDX_IMAGES, "header truncated"),
    (b"\x00\x00", None, "too short"),
    (b"\x1f\x8b\x08\x00garbage", IDX_IMAGES, "corrupt gzip"),
])
def test_idx_bad_header_is_a_clear_error(tmp_path, raw, magic, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path, magic=magic)
    assert str(path) in str(err.value)


def test_mnist_splits_and_errors(tmp_path):
    mnist(tmp_path / "mnist", n_train=10, n_test=3)
    cfg = DataConfig(name="mnist", root=str(tmp_path / "mnist"), val_fraction=0.2, extra_tests=["test_inverted"])
    splits, store = build_image_splits(cfg)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 30)
    assert sorted(ex.target for ex in splits.val) == sorted(list(range(10)) * 2)  # stratified
    assert len(splits.parts()["test_inverted"]) == 30 and store.load(splits.train[0].path).shape == (1, 28, 28)
    doubled, _ = build_image_splits(DataConfig(name="mnist", root=str(tmp_path / "mnist"), val_fraction=0.2,
                                               add_inverted=True))
    assert (len(doubled.train), len(doubled.val), len(doubled.test)) == (160, 40, 30)
    # resized and converted for models that want another geometry
    _, big = build_image_splits(DataConfig(name="mnist", root=str(tmp_path / "mnist"), image_size=[32], channels=3))
    assert big.load(splits.test[0].path).shape == (3, 32, 32)

    with pytest.raises(DataError, match="extra_tests"):
        build_image_splits(DataConfig(name="mnist", root=str(tmp_path / "mnist"), extra_tests=["test_upside_down"]))
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29), IDX_LABELS))
    with pytest.raises(DataError, match="30 images but .* 29 labels"):
        build_image_splits(cfg)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        build_image_splits(cfg)


def test_real_mnist_headers_if_present():
    root = Path("/work/shared/datasets/mnist")
    if not (root / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("MNIST not available here")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz", magic=IDX_LABELS)
    # published class counts of the test set (digits 0..9)
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- image folders ----------------------------------------------------------------------------------------------

def test_decode_resizes_and_converts(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (200, 10, 10)   # left half red
    pixels[:, 20:] = (10, 10, 200)   # right half blue
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = decode_image(tmp_path / "a.png", size=(10, 20), channels=3)
    assert out.shape == (3, 10, 20) and out.dtype == np.uint8
    assert out[:, :, :9].reshape(3, -1).T.tolist() == [[200, 10, 10]] * 90      # away from the edge, exact colours
    assert out[:, :, 11:].reshape(3, -1).T.tolist() == [[10, 10, 200]] * 90
    gray = decode_image(tmp_path / "a.png", size=(20, 40), channels=1)
    reference = np.asarray(Image.fromarray(pixels).convert("L"))
    assert gray.shape == (1, 20, 40) and np.array_equal(gray[0], reference)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        decode_image(tmp_path / "bad.jpg", size=(10, 10), channels=3)


def test_image_folder_layouts(tmp_path):
    images(tmp_path / "split", n_train=10, n_val=3)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "split"), task="binary", image_size=[24, 32],
                     test_fraction=0.2)
    splits, store = build_image_splits(cfg)
    assert splits.labels == ["cats", "dogs"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 6, 4)   # no test/ folder: carved from train
    batch = next(iter(build_image_loaders(cfg, splits, store, seed=0)["val"]))
    assert batch.wave.shape == (6, 3, 24, 32) and batch.wave.dtype == torch.float32
    assert 0.0 <= batch.wave.min() and batch.wave.max() <= 1.0 and batch.clip_index.tolist() == list(range(6))
    red = batch.wave[batch.target == 0][:, 0].mean() - batch.wave[batch.target == 0][:, 2].mean()
    assert red > 0.4 and batch.target.dtype == torch.float32   # class 0 is reddish; binary targets are floats

    flat = tmp_path / "flat"
    flat.mkdir()
    for c in ("cats", "dogs"):
        (tmp_path / "split" / "train" / c).rename(flat / c)
    (flat / "dogs" / "broken.png").write_bytes(b"\x89PNG broken")
    cfg = DataConfig(name="imagefolder", root=str(flat), task="multiclass", image_size=[16], test_fraction=0.25,
                     val_fraction=0.2)
    with pytest.raises(DataError, match=r"(?s)1 of 21 image files .*broken\.png"):
        build_image_splits(cfg)
    cfg.on_error = "skip"
    with pytest.warns(UserWarning, match="broken.png"):
        splits, _ = build_image_splits(cfg)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 5)
    assert sum(ex.target for ex in splits.test) in (2, 3)   # stratified
    with pytest.raises(DataError, match="image_size"):
        build_image_splits(DataConfig(name="imagefolder", root=str(flat)))


# --- inversion, augmentation, normalisation ---------------------------------------------------------------------

def test_inversion_is_exactly_255_minus_pixel(tmp_path):
    mnist(tmp_path / "mnist", n_train=2, n_test=2)
    cfg = DataConfig(name="mnist", root=str(tmp_path / "mnist"), val_fraction=0.0, extra_tests=["test_inverted"],
                     batch_size=64)
    splits, store = build_image_splits(cfg)
    plain, inverted = (ImageDataset(splits.parts()[name], store, task="multiclass") for name in ("test", "test_inverted"))
    for i in range(len(plain)):
        (a, ya), (b, yb) = plain[i], inverted[i]
        assert a.dtype == torch.uint8 and torch.equal(b, 255 - a) and ya == yb
    loaders = build_image_loaders(cfg, splits, store, seed=0)
    x, x_inv = next(iter(loaders["test"])).wave, next(iter(loaders["test_inverted"])).wave
    assert torch.equal(torch.round(x_inv * 255), 255 - torch.round(x * 255))
    assert torch.allclose(x_inv, invert(x), atol=1e-6)
    aug = ImageAugment(invert=1.0).train()
    assert torch.equal(aug(x), 1.0 - x)


def test_augmentation_only_in_training_and_seeded():
    x = torch.rand(6, 3, 20, 20)
    aug = ImageAugment(invert=0.5, rotation=20, translate=0.1, shear=10, zoom=0.1, hflip=0.5)
    assert torch.equal(aug.eval()(x), x)
    aug.train()
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    torch.manual_seed(4)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    assert a.shape == x.shape
    with pytest.raises(ValueError, match="augment.invert"):
        ImageAugment(invert=1.5)


def test_channel_norm_matches_numpy():
    batches = [torch.rand(5, 3, 4, 6) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] for _ in range(3)]
    norm = ChannelNorm(3).fit(batches)
    every = torch.cat(batches).numpy()
    assert np.allclose(norm.mean.numpy(), every.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(norm.std.numpy(), every.std(axis=(0, 2, 3)), atol=1e-6)
    assert norm(batches[0]).shape == (5, 3, 4, 6)
    with pytest.raises(ValueError, match="ChannelNorm"):
        norm(torch.rand(2, 1, 4, 4))


# --- through the engine -----------------------------------------------------------------------------------------

def test_tiny_mnist_run_through_the_engine(tmp_path):
    mnist(tmp_path / "mnist", n_train=20, n_test=4)
    overrides = [f"data.root={tmp_path / 'mnist'}", f"trainer.output_dir={tmp_path / 'runs'}", "trainer.epochs=4",
                 "trainer.progress=never", "data.batch_size=16", "optim.lr=3e-3", "data.extra_tests=[test_inverted]",
                 "augment.rotation=5", "augment.translate=0.05"]
    cfg = load_config(ROOT / "recipes" / "mnist_lenet.yaml", overrides)
    run = train(cfg, quiet=True)
    log = (run / "log.txt").read_text()
    assert "test (best checkpoint)" in log and "test_inverted (best checkpoint)" in log
    metrics = {split: json.loads((run / "eval" / f"{split}_metrics.json").read_text())
               for split in ("test", "test_inverted")}
    assert metrics["test"]["n"] == metrics["test_inverted"]["n"] == 40
    assert metrics["test"]["accuracy"] > 0.5, metrics["test"]   # chance is 0.1
    assert (run / "eval" / "test_inverted_predictions.csv").is_file()

    from audiocnn.evaluation.predict import predict_files
    Image.fromarray(np.full((56, 56), 30, np.uint8)).save(tmp_path / "digit.png")   # resized to 28x28
    (tmp_path / "bad.png").write_bytes(b"nope")
    out = predict_files(run, [tmp_path / "digit.png", tmp_path / "bad.png"], top_k=2)
    assert len(out[0]["top"]) == 2 and sum(p for _, p in out[0]["top"]) <= 1.0 + 1e-6
    assert "error" in out[1]


def test_normaliser_sees_plain_and_inverted_training_images(tmp_path):
    from audiocnn.engine.loop import fit_normalizer
    from audiocnn.runs import load_data
    from audiocnn.build import build_classifier

    mnist(tmp_path / "mnist", n_train=5, n_test=1)
    cfg = load_config(ROOT / "recipes" / "mnist_inverted.yaml", [f"data.root={tmp_path / 'mnist'}"])
    data = load_data(cfg, log=lambda *_: None)
    model = build_classifier(cfg, data.splits.labels)
    fit_normalizer(model, data, cfg, torch.device("cpu"))
    train_set = data.loaders["train"].dataset
    pixels = torch.stack([train_set[i][0] for i in range(len(train_set))]).double() / 255
    assert abs(model.norm.mean.item() - 0.5) < 1e-6   # x and 1 - x in equal numbers
    assert np.isclose(model.norm.std.item(), pixels.std(unbiased=False).item(), atol=1e-5)


def test_modality_options_do_not_mix(tmp_path):
    from audiocnn.build import build_classifier

    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", ["augment.rotation=10"])
    with pytest.raises(ConfigError, match="augment.rotation"):
        build_classifier(cfg, ["a", "b"])
    cfg = load_config(ROOT / "recipes" / "mnist_lenet.yaml", ["augment.time_masks=2"])
    with pytest.raises(ConfigError, match="augment.time_masks"):
        build_classifier(cfg, [str(i) for i in range(10)])
    cfg = load_config(ROOT / "recipes" / "mnist_lenet.yaml", ["frontend.normalize=per_frequency"])
    with pytest.raises(ConfigError, match="per_channel"):
        build_classifier(cfg, [str(i) for i in range(10)])
    cfg = load_config(ROOT / "recipes" / "imagefolder.yaml")
    model = build_classifier(cfg, ["cats", "dogs"]).eval()
    x = torch.rand(2, 3, 150, 150)
    assert model.input_shape == (3, 150, 150) and model(x).shape == (2, 1) and model.embed(x).shape == (2, 64)
    assert sum(p.numel() for p in model.parameters()) == 896 + 18_496 + 73_856 + 36_992 * 64 + 64 + 65   # Keras model.summary()

    from audiocnn.runs import load_data
    cfg = load_config(ROOT / "recipes" / "mnist_lenet.yaml", ["frontend.kind=logmel", "frontend.normalize=per_frequency"])
    with pytest.raises(DataError, match="frontend.kind: image"):
        load_data(cfg)
