"""Every kind of bad audio file: a named AudioError from load_audio, one DataError listing all of
them before training (on_error=raise), or warnings and the good files only (on_error=skip)."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.audio import AudioError, load_audio
from audiocnn.config import DataConfig
from audiocnn.data import AudioCache, AudioDataset, DataError, Example, Splits, build_loaders, prepare

SR = 8000


def _good(path: Path, seconds: float = 0.25, seed: int = 0, **kw) -> Path:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * SR)).astype(np.float32)
    sf.write(path, x, SR, **kw)
    return path


def _make_bad(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its AudioError reason must contain)."""
    d.mkdir(parents=True, exist_ok=True)
    bad = {}
    (d / "corrupt.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    bad["corrupt"] = (d / "corrupt.wav", "not a readable audio file")
    (d / "empty.wav").write_bytes(b"")
    bad["empty"] = (d / "empty.wav", "empty file (0 bytes)")
    full = _good(d / "full.wav", seconds=0.5, subtype="PCM_16").read_bytes()
    (d / "full.wav").unlink()
    (d / "half.wav").write_bytes(full[:len(full) // 2])
    bad["truncated"] = (d / "half.wav", "truncated")
    (d / "header_cut.wav").write_bytes(full[:30])
    bad["header_cut"] = (d / "header_cut.wav", "corrupt or truncated audio header")
    flac = _good(d / "f.flac", seconds=0.5, format="FLAC").read_bytes()
    (d / "f.flac").unlink()
    (d / "half.flac").write_bytes(flac[:len(flac) // 2])
    bad["truncated_flac"] = (d / "half.flac", "corrupt or truncated audio data")
    (d / "text.wav").write_text("id,label\n1,dog\nthis is a CSV, not audio\n")
    bad["not_audio"] = (d / "text.wav", "look like text")
    nan = np.zeros(800, np.float32)
    nan[100:200] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    bad["nan"] = (d / "nan.wav", "NaN or Inf")
    inf = np.zeros(800, np.float32)
    inf[5] = np.inf
    sf.write(d / "inf.wav", inf, SR, subtype="FLOAT")
    bad["inf"] = (d / "inf.wav", "NaN or Inf")
    sf.write(d / "zero.wav", np.zeros((0, 1), np.float32), SR)
    bad["zero_samples"] = (d / "zero.wav", "0 frames")
    sf.write(d / "wide.wav", np.zeros((40, 200), np.float32), SR)  # a (channels, time) array saved as-is
    bad["many_channels"] = (d / "wide.wav", "200 channels")
    sf.write(d / "one.wav", np.array([0.5], np.float32), SR)
    bad["one_sample"] = (d / "one.wav", "too short: 1 sample")
    bad["missing"] = (d / "missing.wav", "file not found")
    (d / "folder.wav").mkdir()
    bad["directory"] = (d / "folder.wav", "is a folder, not an audio file")
    return bad


BAD_KINDS = ["corrupt", "empty", "truncated", "header_cut", "truncated_flac", "not_audio", "nan", "inf",
             "zero_samples", "many_channels", "one_sample", "missing", "directory"]


@pytest.fixture()
def bad(tmp_path):
    return _make_bad(tmp_path / "bad")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_load_audio_names_file_and_reason(bad, kind):
    path, phrase = bad[kind]
    with pytest.raises(AudioError) as info:
        load_audio(path, sample_rate=16000)
    e = info.value
    assert e.path == str(path) and phrase in e.reason and str(e).startswith(f"{path}: ")
    again = pickle.loads(pickle.dumps(e))  # survives the trip back from a DataLoader worker
    assert (again.path, again.reason) == (e.path, e.reason)


def test_good_files_next_to_bad_ones_load(tmp_path):
    assert load_audio(_good(tmp_path / "ok.wav")).shape == (2000,)
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (2000, 4)).astype(np.float32)
    sf.write(tmp_path / "four.wav", stereo, SR, subtype="FLOAT")
    assert load_audio(tmp_path / "four.wav").shape == (2000,)  # a few channels are fine


def _examples(tmp_path, bad):
    good = [Example(str(_good(tmp_path / f"good{i}.wav", seed=i)), i % 2) for i in range(6)]
    broken = [Example(str(path), 0) for path, _ in bad.values()]
    mixed = good[:3] + broken + good[3:]
    return good, broken, mixed


def test_prepare_raise_lists_every_bad_file(tmp_path, bad):
    good, broken, mixed = _examples(tmp_path, bad)
    cache = AudioCache(None, SR)
    with pytest.raises(DataError) as info:
        prepare(mixed, cache, on_error="raise", split_name="train")
    msg = str(info.value)
    for ex in broken:
        assert ex.path in msg
    for path, phrase in bad.values():
        assert phrase in msg
    assert f"{len(broken)} of {len(mixed)}" in msg and "set data.on_error=skip to skip them" in msg
    assert not any(ex.path in msg for ex in good)


def test_prepare_skip_warns_and_keeps_the_good_files(tmp_path, bad):
    good, broken, mixed = _examples(tmp_path, bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = prepare(mixed, AudioCache(str(tmp_path / "cache"), SR), on_error="skip", split_name="train")
    assert [e.path for e in kept] == [e.path for e in good]
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == len(broken)
    for ex in broken:
        assert any(ex.path in m for m in messages)


def _splits(tmp_path, bad) -> Splits:
    good, broken, _ = _examples(tmp_path, bad)
    return Splits("multiclass", ["a", "b"], train=good[:4] + broken[:8], val=[], test=good[4:] + broken[8:])


def test_build_loaders_raises_before_training_across_splits(tmp_path, bad):
    splits = _splits(tmp_path, bad)
    cfg = DataConfig(sample_rate=SR, duration=0.1, batch_size=2, on_error="raise", cache_dir="")
    with pytest.raises(DataError) as info:
        build_loaders(cfg, splits, AudioCache(None, SR), seed=0)
    msg = str(info.value)
    assert "train: 8" in msg and f"test: {len(bad) - 8}" in msg
    assert all(str(path) in msg for path, _ in bad.values())


def test_loader_iterates_to_the_end_with_skip(tmp_path, bad):
    splits = _splits(tmp_path, bad)
    cfg = DataConfig(sample_rate=SR, duration=0.1, batch_size=3, on_error="skip", cache_dir=str(tmp_path / "c"),
                     eval_crop="windows", window_hop=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaders = build_loaders(cfg, splits, AudioCache(cfg.cache_dir, SR), seed=0)
    seen = 0
    for epoch in range(2):
        loaders["train"].dataset.set_epoch(epoch)
        for batch in loaders["train"]:
            assert torch.isfinite(batch.wave).all() and batch.wave.shape == (3, 800)
            seen += len(batch.target)
    assert seen == 2 * 3  # 4 good train clips, batches of 3, drop_last
    test_rows = sum(b.wave.shape[0] for b in loaders["test"])
    assert test_rows == 2 * 4  # 2 good test clips of 0.25 s: windows at 0, .05, .1, .15 s


def test_unprepared_bad_file_fails_with_its_name(tmp_path, bad):
    path, _ = bad["corrupt"]
    ds = AudioDataset([Example(str(path), 0)], AudioCache(None, SR), task="multiclass", num_samples=100)
    with pytest.raises(AudioError, match="corrupt.wav"):
        ds[0]
