"""audiocnn.data: dataset builders on tiny fake layouts, splits, the decode cache, loaders, and the
synthetic dataset's claim that a linear model on the average spectrum cannot solve it."""
from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.config import DataConfig
from audiocnn.audio import load_audio
from audiocnn.tasks import get_task
from audiocnn.data import (
    DATASETS, AudioCache, AudioDataset, DataError, Example, build_loaders, build_splits, collate,
    group_split, prepare, stratified_split,
)

SR = 8000


def _wav(path: Path, seconds: float = 0.05, sr: int = SR, seed: int = 0, fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * sr)).astype(np.float32)
    sf.write(path, x, sr, format=fmt, subtype="PCM_16")
    return path


def _cfg(**kw) -> DataConfig:
    kw.setdefault("sample_rate", SR)
    kw.setdefault("cache_dir", "")
    return DataConfig(**kw)


def _paths(examples) -> set[str]:
    return {Path(e.path).name for e in examples}


def _no_group_overlap(splits) -> None:
    groups = [{e.group for e in part} for part in (splits.train, splits.val, splits.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])


# ------------------------------------------------------------------------------------------------
# builders


def test_registry_has_every_dataset():
    for name in ("synthetic", "folder", "manifest", "fsdd", "esc10", "esc50", "ravdess", "gtzan", "speech_commands"):
        assert name in DATASETS


def test_missing_root_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as info:
        build_splits(_cfg(name="fsdd", root=str(tmp_path / "nowhere")))
    msg = str(info.value)
    assert str(tmp_path / "nowhere") in msg and "audiocnn data download fsdd" in msg and "recordings/" in msg
    with pytest.raises(DataError, match="unknown dataset 'fsd'.*'fsdd'"):
        build_splits(_cfg(name="fsd"))


def test_fsdd_official_split(tmp_path):
    for d in range(10):
        for spk in ("alice", "bob_x"):
            for i in range(12):
                _wav(tmp_path / "recordings" / f"{d}_{spk}_{i}.wav")
    s = build_splits(_cfg(name="fsdd", root=str(tmp_path)))
    assert s.labels == [str(d) for d in range(10)] and s.task == "multiclass"
    assert {e.meta["index"] for e in s.test} == {0, 1, 2, 3, 4}
    assert {e.meta["index"] for e in s.val} == {5, 6, 7, 8, 9}
    assert {e.meta["index"] for e in s.train} == {10, 11}
    assert len(s.test) == 100 and len(s.val) == 100 and len(s.train) == 40
    assert {e.group for e in s.train} == {"alice", "bob_x"}
    ex = next(e for e in s.test if Path(e.path).name == "7_bob_x_3.wav")
    assert ex.target == 7 and ex.meta["label"] == "7"
    (tmp_path / "recordings" / "oops.wav").write_bytes(b"")
    with pytest.raises(DataError, match="oops.wav: not an FSDD name"):
        build_splits(_cfg(name="fsdd", root=str(tmp_path)))


def _esc_layout(root: Path, csv_name: str = "esc10.csv", extra_esc50: bool = False) -> None:
    classes = [(10, "rain"), (1, "rooster")] + ([(5, "cat")] if extra_esc50 else [])
    rows = []
    for fold in range(1, 6):
        for target, category in classes:
            for k in range(2):
                stem = f"{fold}-{1000 + 10 * target + k}-A-{target}"
                _wav(root / "audio" / f"{stem}.flac", fmt="FLAC")  # the CSV says .wav
                rows.append([f"{stem}.wav", fold, target, category, str(target != 5), 1000 + 10 * target + k, "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / csv_name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)


def test_esc10_folds_and_flac_resolution(tmp_path):
    _esc_layout(tmp_path)
    s = build_splits(_cfg(name="esc10", root=str(tmp_path)))
    assert s.labels == ["rooster", "rain"]  # ordered by ESC target (1, 10)
    assert {e.meta["fold"] for e in s.test} == {"1"} and {e.meta["fold"] for e in s.val} == {"2"}
    assert {e.meta["fold"] for e in s.train} == {"3", "4", "5"}
    assert len(s.test) == 4
    assert all(e.path.endswith(".flac") and os.path.isfile(e.path) for e in s.train + s.val + s.test)
    assert all(e.target == s.labels.index(e.meta["label"]) for e in s.test)
    s5 = build_splits(_cfg(name="esc10", root=str(tmp_path), test_fold=5))
    assert {e.meta["fold"] for e in s5.test} == {"5"} and {e.meta["fold"] for e in s5.val} == {"1"}
    s3 = build_splits(_cfg(name="esc10", root=str(tmp_path), test_fold=3, val_fold=1))
    assert {e.meta["fold"] for e in s3.val} == {"1"}
    with pytest.raises(DataError, match="test_fold=7"):
        build_splits(_cfg(name="esc10", root=str(tmp_path), test_fold=7))


def test_esc50_and_esc10_from_the_esc50_csv(tmp_path):
    _esc_layout(tmp_path, "esc50.csv", extra_esc50=True)
    s50 = build_splits(_cfg(name="esc50", root=str(tmp_path)))
    assert s50.labels == ["rooster", "cat", "rain"] and len(s50.test) == 6
    s10 = build_splits(_cfg(name="esc10", root=str(tmp_path)))
    assert s10.labels == ["rooster", "rain"] and len(s10.test) == 4


def test_ravdess_actor_split(tmp_path):
    for actor in range(1, 9):
        for emotion in range(1, 9):
            for rep in (1, 2):
                _wav(tmp_path / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-{rep:02d}-{actor:02d}.wav")
    s = build_splits(_cfg(name="ravdess", root=str(tmp_path), test_groups=["7", "Actor_08"], val_fraction=0.2))
    assert s.labels[:3] == ["neutral", "calm", "happy"] and len(s.labels) == 8
    assert {e.group for e in s.test} == {"Actor_07", "Actor_08"} and len(s.test) == 32
    assert len({e.group for e in s.val}) == 1  # 20 % of 6 remaining actors, whole actors
    _no_group_overlap(s)
    ex = next(e for e in s.test if Path(e.path).name == "03-01-05-01-01-02-07.wav")
    assert ex.target == 4 and ex.meta["label"] == "angry" and ex.meta["gender"] == "male"
    s2 = build_splits(_cfg(name="ravdess", root=str(tmp_path), test_fraction=0.25, val_fraction=0.2))
    assert len({e.group for e in s2.test}) == 2
    _no_group_overlap(s2)
    with pytest.raises(DataError, match="Actor_13"):
        build_splits(_cfg(name="ravdess", root=str(tmp_path), test_groups=["13"]))


@pytest.mark.parametrize("sub", ["genres", "genres_original"])
def test_gtzan_skips_broken_jazz_54(tmp_path, sub):
    for g in ("blues", "jazz", "rock"):
        for i in range(50, 60):
            _wav(tmp_path / sub / g / f"{g}.{i:05d}.wav", seed=i)
    (tmp_path / sub / "jazz" / "jazz.00054.wav").write_bytes(os.urandom(2000))
    with pytest.warns(UserWarning, match="jazz.00054.wav"):
        s = build_splits(_cfg(name="gtzan", root=str(tmp_path), test_fraction=0.2, val_fraction=0.125))
    everything = s.train + s.val + s.test
    assert s.labels == ["blues", "jazz", "rock"] and len(everything) == 29
    assert "jazz.00054.wav" not in _paths(everything)
    assert Counter(e.target for e in s.test) == Counter({0: 2, 1: 2, 2: 2})


def test_speech_commands_lists(tmp_path):
    for w in ("no", "yes"):
        for spk in ("aa11", "bb22", "cc33"):
            for n in range(2):
                _wav(tmp_path / w / f"{spk}_nohash_{n}.wav")
    _wav(tmp_path / "_background_noise_" / "white_noise.wav")
    (tmp_path / "validation_list.txt").write_text(
        "yes/bb22_nohash_0.wav\nyes/bb22_nohash_1.wav\nno/bb22_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/cc33_nohash_0.wav\nno/cc33_nohash_1.wav\n")
    s = build_splits(_cfg(name="speech_commands", root=str(tmp_path)))
    assert s.labels == ["no", "yes"]
    assert _paths(s.test) == {"cc33_nohash_0.wav", "cc33_nohash_1.wav"} and len(s.val) == 3 and len(s.train) == 7
    assert all("white_noise" not in e.path for e in s.train) and {e.group for e in s.val} == {"bb22"}


def test_folder_stratified_and_seeded(tmp_path):
    for c, n in (("cat", 10), ("dog", 20), ("owl", 10)):
        for i in range(n):
            _wav(tmp_path / c / f"{i}.wav")
    cfg = _cfg(name="folder", root=str(tmp_path), test_fraction=0.2, val_fraction=0.25)
    s = build_splits(cfg)
    assert s.labels == ["cat", "dog", "owl"]
    assert Counter(e.meta["label"] for e in s.test) == Counter({"cat": 2, "dog": 4, "owl": 2})
    assert len(s.val) == 8 and len(s.train) == 24
    again = build_splits(cfg)
    assert [e.path for e in again.test] == [e.path for e in s.test]
    other = build_splits(_cfg(name="folder", root=str(tmp_path), test_fraction=0.2, val_fraction=0.25, split_seed=1))
    assert [e.path for e in other.test] != [e.path for e in s.test]


def _manifest(root: Path, header: list[str], rows: list[list]) -> Path:
    for r in rows:
        _wav(root / "clips" / r[0])
    path = root / "meta.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["clips/" + r[0]] + r[1:] for r in rows])
    return path


def test_manifest_multiclass_with_split_column(tmp_path):
    rows = [[f"{i}.wav", ["a", "b", "c"][i % 3], ["train", "train", "val", "test"][i % 4]] for i in range(24)]
    m = _manifest(tmp_path, ["path", "label", "split"], rows)
    s = build_splits(_cfg(name="manifest", manifest=str(m)))
    assert s.labels == ["a", "b", "c"] and len(s.train) == 12 and len(s.val) == 6 and len(s.test) == 6
    assert all(Path(e.path).parent == tmp_path / "clips" and isinstance(e.target, int) for e in s.train)
    assert s.test[0].target == s.labels.index(s.test[0].meta["label"])


def test_manifest_binary_with_groups(tmp_path):
    rows = [[f"{i}.wav", "yes" if i % 2 else "no", f"spk{i // 4}"] for i in range(40)]
    m = _manifest(tmp_path, ["path", "is_speech", "group"], rows)
    s = build_splits(_cfg(name="manifest", manifest=str(m), task="binary", label_columns=["is_speech"],
                          test_fraction=0.2, val_fraction=0.25))
    assert s.labels == ["no", "yes"] and {e.target for e in s.train} == {0, 1}
    _no_group_overlap(s)
    assert len(s.test) == 8
    ds = AudioDataset(s.test, AudioCache(None, SR), task="binary", num_samples=100, mode="center")
    assert ds[0][1].dtype == torch.float32 and ds[0][1].shape == ()


def test_manifest_multilabel_columns_and_semicolons(tmp_path):
    rows = [[f"{i}.wav", str(i % 2), str((i // 2) % 2), "dog;cat" if i % 3 == 0 else ("cat" if i % 3 == 1 else "")]
            for i in range(20)]
    m = _manifest(tmp_path, ["path", "dog", "cat", "tags"], rows)
    s = build_splits(_cfg(name="manifest", manifest=str(m), task="multilabel", label_columns=["dog", "cat"]))
    assert s.labels == ["dog", "cat"]
    ex = next(e for e in s.train + s.val + s.test if Path(e.path).name == "3.wav")
    assert ex.target == (1, 1)
    s2 = build_splits(_cfg(name="manifest", manifest=str(m), task="multilabel", label_columns=["tags"]))
    assert s2.labels == ["cat", "dog"]
    by_name = {Path(e.path).name: e.target for e in s2.train + s2.val + s2.test}
    assert by_name["0.wav"] == (1, 1) and by_name["1.wav"] == (1, 0) and by_name["2.wav"] == (0, 0)
    ds = AudioDataset(s2.train, AudioCache(None, SR), task="multilabel", num_samples=100, mode="center")
    assert ds[0][1].dtype == torch.float32 and ds[0][1].shape == (2,)


def test_manifest_regression_with_folds(tmp_path):
    rows = [[f"{i}.wav", str(i * 0.5), str(-i), str(i % 4 + 1)] for i in range(16)]
    m = _manifest(tmp_path, ["path", "valence", "arousal", "fold"], rows)
    s = build_splits(_cfg(name="manifest", manifest=str(m), task="regression", label_columns=["valence", "arousal"],
                          test_fold=2))
    assert s.labels == ["valence", "arousal"]
    assert {e.meta["fold"] for e in s.test} == {"2"} and {e.meta["fold"] for e in s.val} == {"3"}
    ex = next(e for e in s.test if Path(e.path).name == "5.wav")
    assert ex.target == (2.5, -5.0)
    ds = AudioDataset(s.test, AudioCache(None, SR), task="regression", num_samples=100, mode="center")
    assert ds[0][1].dtype == torch.float32 and ds[0][1].shape == (2,)
    bad = _manifest(tmp_path / "bad", ["path", "valence"], [["0.wav", "high"]])
    with pytest.raises(DataError, match=r"meta.csv, line 2: regression targets must be numbers"):
        build_splits(_cfg(name="manifest", manifest=str(bad), task="regression", label_columns=["valence"]))


def test_manifest_errors_name_the_column(tmp_path):
    m = _manifest(tmp_path, ["file", "label"], [["0.wav", "a"]])
    with pytest.raises(DataError, match="no 'path' column.*file, label"):
        build_splits(_cfg(name="manifest", manifest=str(m)))
    m = _manifest(tmp_path, ["path", "label"], [["0.wav", "a"]])
    with pytest.raises(DataError, match="label_columns=\\['genre'\\]"):
        build_splits(_cfg(name="manifest", manifest=str(m), label_columns=["genre"]))


def test_encode_target_kinds():
    assert get_task("multiclass").encode(["a", "b"], "b") == 1
    assert get_task("binary").encode(["no", "yes"], "yes") == 1
    assert get_task("multilabel").encode(["a", "b", "c"], ["c", "a"]) == (1, 0, 1)
    assert get_task("multilabel").encode(["a", "b"], ["0", "1"]) == (0, 1)
    assert get_task("regression").encode(["x"], "1.5") == (1.5,)
    with pytest.raises(ValueError, match="'z' is not one of"):
        get_task("multiclass").encode(["a", "b"], "z")


# ------------------------------------------------------------------------------------------------
# split helpers


def test_group_split_keeps_groups_whole():
    rng = np.random.default_rng(0)
    examples = [Example(f"{i}.wav", int(rng.integers(3)), f"g{rng.integers(40)}") for i in range(400)]
    parts = group_split(examples, (0.7, 0.15, 0.15), seed=3)
    groups = [{e.group for e in p} for p in parts]
    assert sum(len(p) for p in parts) == 400
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert [len(p) / 400 for p in parts] == pytest.approx([0.7, 0.15, 0.15], abs=0.05)
    assert [e.path for e in group_split(examples, (0.7, 0.15, 0.15), seed=3)[2]] == [e.path for e in parts[2]]


def test_stratified_split_with_many_small_classes():
    examples = [Example(f"{c}_{i}.wav", c) for c in range(10) for i in range(3)]
    train, val, test = stratified_split(examples, (0.8, 0.1, 0.1), seed=0)
    assert len(test) == 3 and len(val) == 3 and len(train) == 24
    assert {e.target for e in train} == set(range(10))  # every class keeps a training example
    assert len({e.target for e in test}) == 3  # no class twice in a 3-clip test set


# ------------------------------------------------------------------------------------------------
# cache


def test_cache_decodes_once_and_reads_back_from_disk(tmp_path, monkeypatch):
    files = [_wav(tmp_path / "a" / f"{i}.wav", sr=16000, seed=i) for i in range(3)]
    cache = AudioCache(str(tmp_path / "cache"), sample_rate=SR)
    first = [cache.load(f).copy() for f in files]
    assert cache.decodes == 3 and all(w.shape == (400,) and w.dtype == np.float32 for w in first)
    for f in files:
        cache.load(f)
    assert cache.decodes == 3  # later epochs: memory
    npys = list((tmp_path / "cache").rglob("*.npy"))
    assert len(npys) == 3 and not list((tmp_path / "cache").rglob("*.tmp"))

    import audiocnn.audio.io as io

    def refuse(*a, **k):
        raise AssertionError("soundfile was called for a cached file")

    monkeypatch.setattr(io.sf, "SoundFile", refuse)
    fresh = AudioCache(str(tmp_path / "cache"), sample_rate=SR)  # a new process: disk only
    again = [fresh.load(f) for f in files]
    assert fresh.decodes == 0 and not again[0].flags.writeable
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    mapped = AudioCache(str(tmp_path / "cache"), sample_rate=SR, small_bytes=0, max_open=2)  # all mapped
    for _ in range(2):
        waves = [mapped.load(f) for f in files]
        assert all(isinstance(w, np.memmap) for w in waves) and mapped.decodes == 0
        assert mapped._mapped <= 2  # at most max_open maps held; the oldest is re-mapped on demand
    np.testing.assert_array_equal(waves[0], first[0])
    held = AudioCache(str(tmp_path / "cache"), sample_rate=SR, max_bytes=2 * 400 * 4)  # two waves' worth
    for f in files:
        held.load(f)
    assert held._held <= 2 * 400 * 4 and len(held._memory) == 2


def test_cache_invalidates_when_the_file_changes(tmp_path):
    f = _wav(tmp_path / "x.wav", seconds=0.05)
    cache = AudioCache(str(tmp_path / "cache"), sample_rate=SR, dataset="demo")
    assert cache.load(f).shape == (400,) and cache.decodes == 1
    _wav(f, seconds=0.1, seed=1)  # new content, new size
    assert cache.load(f).shape == (800,) and cache.decodes == 2
    _wav(f, seconds=0.1, seed=2)  # new content, same size
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    np.testing.assert_allclose(cache.load(f), load_audio(f, SR), atol=1e-6)
    assert cache.decodes == 3
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # touched: same content, read and hashed again
    hashes = cache.hashes
    cache.load(f)
    assert cache.decodes == 3 and cache.hashes == hashes + 1
    assert (tmp_path / "cache" / "demo" / f"sr{SR}").is_dir()
    mem = AudioCache(None, sample_rate=SR)  # memory-only cache writes nothing
    mem.load(f), mem.load(f)
    assert mem.decodes == 1 and mem.dir is None


def test_cache_is_keyed_by_content_and_remembers_hashes(tmp_path):
    import shutil

    f = _wav(tmp_path / "a.wav", seconds=0.05)
    cache = AudioCache(str(tmp_path / "cache"), sample_rate=SR, dataset="demo")
    first = cache.load(f).copy()
    copy = shutil.copy(f, tmp_path / "copy.wav")  # a copy or a renamed file: same bytes, same array
    np.testing.assert_array_equal(cache.load(copy), first)
    assert cache.decodes == 1 and cache.hashes == 2
    cache.flush()
    fresh = AudioCache(str(tmp_path / "cache"), sample_rate=SR, dataset="demo")  # a later run
    fresh.load(f), fresh.load(copy)
    assert fresh.decodes == 0 and fresh.hashes == 0  # index.json: unchanged files are not even read
    other = AudioCache(str(tmp_path / "cache"), sample_rate=SR, dataset="other")  # datasets apart
    other.load(f)
    assert other.decodes == 1
    (tmp_path / "cache" / "demo" / f"sr{SR}" / "index.json").write_text("{not json")  # damaged: hash again
    again = AudioCache(str(tmp_path / "cache"), sample_rate=SR, dataset="demo")
    np.testing.assert_array_equal(again.load(f), first)
    assert again.decodes == 0 and again.hashes == 1


def test_cache_rebuilds_a_damaged_entry(tmp_path):
    f = _wav(tmp_path / "x.wav")
    cache = AudioCache(str(tmp_path / "cache"), sample_rate=SR)
    good = cache.load(f).copy()
    cache.file_for(cache.key(f)).write_bytes(b"garbage")
    fresh = AudioCache(str(tmp_path / "cache"), sample_rate=SR)
    np.testing.assert_array_equal(fresh.load(f), good)
    assert fresh.decodes == 1


# ------------------------------------------------------------------------------------------------
# datasets and loaders


def _clips(tmp_path, n=6, seconds=0.5):
    return [Example(str(_wav(tmp_path / f"{i}.wav", seconds=seconds, seed=i)), i % 2) for i in range(n)]


def test_random_crops_are_deterministic_by_seed_epoch_index(tmp_path):
    examples = _clips(tmp_path)
    cache = AudioCache(None, SR)

    def make(seed):
        return AudioDataset(examples, cache, task="multiclass", num_samples=1000, mode="train", seed=seed)

    a, b, c = make(0), make(0), make(1)
    assert torch.equal(a[2][0], b[2][0]) and not torch.equal(a[2][0], c[2][0])
    a.set_epoch(1)
    assert not torch.equal(a[2][0], b[2][0])
    b.set_epoch(1)
    assert torch.equal(a[2][0], b[2][0]) and torch.equal(a[(2, 5)][0], b[(2, 5)][0])
    assert a[0][0].shape == (1000,) and a[0][1].dtype == torch.int64


def _run_epochs(cfg, splits, seed, epochs=2):
    loaders = build_loaders(cfg, splits, AudioCache(None, SR), seed=seed)
    out = []
    for epoch in range(epochs):
        loaders["train"].dataset.set_epoch(epoch)
        out.append(torch.cat([b.wave for b in loaders["train"]]))
    return out


def test_build_loaders_reproducible_and_shaped(tmp_path):
    for c in ("a", "b"):
        for i in range(10):
            _wav(tmp_path / "data" / c / f"{i}.wav", seconds=0.3 + 0.05 * i, seed=i)
    cfg = _cfg(name="folder", root=str(tmp_path / "data"), duration=0.25, batch_size=4, test_fraction=0.2,
               val_fraction=0.0)
    splits = build_splits(cfg)
    loaders = build_loaders(cfg, splits, AudioCache(None, SR), seed=0)
    assert set(loaders) == {"train", "test"}  # empty val omitted
    batch = next(iter(loaders["train"]))
    assert batch.wave.shape == (4, 2000) and batch.target.shape == (4,)
    assert torch.equal(batch.clip_index, torch.arange(4))
    assert len(loaders["train"]) == 4 and loaders["train"].drop_last  # 16 clips, batches of 4
    r1, r2 = _run_epochs(cfg, splits, seed=0), _run_epochs(cfg, splits, seed=0)
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1]) and not torch.equal(r1[0], r1[1])
    assert not torch.equal(_run_epochs(cfg, splits, seed=1)[0], r1[0])
    # without set_epoch every pass still gets new crops; a worker process gets the same ones
    ld = build_loaders(cfg, splits, AudioCache(None, SR), seed=0)["train"]
    p0, p1 = torch.cat([b.wave for b in ld]), torch.cat([b.wave for b in ld])
    assert torch.equal(p0, r1[0]) and torch.equal(p1, r1[1])
    cfg.num_workers = 1
    assert torch.equal(_run_epochs(cfg, splits, seed=0, epochs=1)[0], r1[0])


def test_windows_collate_maps_rows_to_clips(tmp_path):
    examples = [Example(str(_wav(tmp_path / f"{i}.wav", seconds=s)), i) for i, s in enumerate((0.1, 0.5, 0.3))]
    ds = AudioDataset(examples, AudioCache(None, SR), task="multiclass", num_samples=800, mode="windows",
                      hop_samples=400)
    # 800, 4000 and 2400 samples -> 1, 9 and 5 windows
    assert [ds[i][0].shape[0] for i in range(3)] == [1, 9, 5]
    batch = collate([ds[i] for i in range(3)])
    assert batch.wave.shape == (15, 800) and batch.target.tolist() == [0, 1, 2]
    assert batch.clip_index.tolist() == [0] + [1] * 9 + [2] * 5
    center = AudioDataset(examples, AudioCache(None, SR), task="multiclass", num_samples=800, mode="center")
    assert collate([center[i] for i in range(3)]).clip_index.tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------------
# synthetic


def _logmel(wave: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.power_to_db(librosa.feature.melspectrogram(y=wave, sr=sr, n_fft=256, hop_length=64, n_mels=32))


def test_synthetic_needs_time_frequency_structure(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = _cfg(name="synthetic", root=str(tmp_path / "syn"), num_classes=8, num_per_class=40, duration=1.0)
    s = build_splits(cfg)
    assert len(s.labels) == 8 and (len(s.train), len(s.val), len(s.test)) == (224, 48, 48)
    assert [e.meta["index"] for e in s.test if e.target == 0] == list(range(34, 40))

    def features(examples):
        specs = np.stack([_logmel(sf.read(e.path, dtype="float32")[0], SR) for e in examples])
        frames = specs.shape[2] // 8 * 8
        coarse = specs[:, :, :frames].reshape(len(specs), 8, 4, 8, frames // 8).mean(axis=(2, 4))
        return specs.mean(axis=2), coarse.reshape(len(specs), -1), np.array([e.target for e in examples])

    mean_tr, coarse_tr, y_tr = features(s.train)
    mean_te, coarse_te, y_te = features(s.val + s.test)
    model = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # noqa: E731
    chance = 1 / 8
    mean_acc = model().fit(mean_tr, y_tr).score(mean_te, y_te)
    time_acc = model().fit(coarse_tr, y_tr).score(coarse_te, y_te)
    assert mean_acc < chance + 0.15, f"clip-mean spectrum should be near chance, got {mean_acc:.2f}"
    assert time_acc > 0.6, f"a coarse spectrogram should solve it, got {time_acc:.2f}"


def test_synthetic_generates_once_and_regenerates_on_change(tmp_path):
    cfg = _cfg(name="synthetic", root=str(tmp_path), num_classes=2, num_per_class=4, duration=0.2)
    s = build_splits(cfg)
    first = Path(s.train[0].path)
    mtime = first.stat().st_mtime_ns
    info = sf.info(first)
    assert info.subtype == "PCM_16" and info.samplerate == SR and info.frames == 1600
    data_a = sf.read(first)[0]
    build_splits(cfg)
    assert first.stat().st_mtime_ns == mtime  # not rewritten
    np.testing.assert_array_equal(sf.read(first)[0], data_a)
    cfg.num_per_class = 5
    s2 = build_splits(cfg)
    assert len(s2.train + s2.val + s2.test) == 10 and len(list(tmp_path.rglob("*.wav"))) == 10
    np.testing.assert_array_equal(sf.read(first)[0], data_a)  # deterministic content
    cfg.num_classes = 4
    s4 = build_splits(cfg)
    assert s4.labels == ["up", "down", "up_down", "down_up"]


# ------------------------------------------------------------------------------------------------
# the real datasets, when this checkout sits next to ../shared


def _shared() -> Path | None:
    env = os.environ.get("AUDIOCNN_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return path if path.is_dir() else None


SHARED = _shared()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared datasets not found (set AUDIOCNN_SHARED)")


@needs_shared
def test_real_fsdd():
    s = build_splits(_cfg(name="fsdd", root=str(SHARED / "fsdd")))
    assert len(s.train) + len(s.val) + len(s.test) == 2000 and len(s.test) == 200 and len(s.val) == 200
    assert Counter(e.target for e in s.test) == Counter({d: 20 for d in range(10)})


@needs_shared
def test_real_esc10():
    s = build_splits(_cfg(name="esc10", root=str(SHARED / "esc10")))
    assert len(s.train) + len(s.val) + len(s.test) == 400 and len(s.test) == 80 and len(s.val) == 80
    assert s.labels[:3] == ["dog", "rooster", "rain"] and all(os.path.isfile(e.path) for e in s.test)
    assert {e.meta["fold"] for e in s.test} == {"1"}
    folds = {}
    for e in s.train + s.val + s.test:  # clips from one recording share a fold
        assert folds.setdefault(e.group, e.meta["fold"]) == e.meta["fold"]


@needs_shared
def test_real_ravdess():
    s = build_splits(_cfg(name="ravdess", root=str(SHARED / "ravdess_speech16"), test_groups=["13", "14", "15", "16"]))
    assert len(s.train) + len(s.val) + len(s.test) == 960 and len(s.test) == 240
    assert {e.group for e in s.test} == {"Actor_13", "Actor_14", "Actor_15", "Actor_16"}
    _no_group_overlap(s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a few real files decode without warnings
        assert len(prepare(s.test[:5], AudioCache(None, 16000), on_error="raise", split_name="test")) == 5
