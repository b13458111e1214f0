"""``audiocnn data shard``: the tars are what the ``webdataset`` library reads, hold the source audio, and come
out the same bytes every time, also after an interruption."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

import audiocnn.data.shard_writer as writer
from audiocnn.cli import main
from audiocnn.core.errors import ConfigError, DataError
from audiocnn.data import build_splits
from audiocnn.data.shard_writer import parse_size, write_shards
from audiocnn.hear.make_task import _data_config

SYNTH = ["data.num_classes=3", "data.num_per_class=5", "data.duration=0.3", "data.sample_rate=8000"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    build_splits(_data_config("synthetic", str(root), SYNTH))  # generated once
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tar"))}


def test_layout_read_back_by_webdataset_equals_the_source(source, tmp_path):
    out = tmp_path / "s"
    result = write_shards("synthetic", out, root=source, overrides=SYNTH, shard_size="10KB", progress="never")
    splits = build_splits(_data_config("synthetic", str(source), SYNTH))
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "audiocnn-shards" and index["labels"] == splits.labels
    for name in ("train", "val"):
        examples = getattr(splits, name)
        assert index["splits"][name]["examples"] == len(examples) == result.index.examples(name)
        urls = [str(out / s["name"]) for s in index["splits"][name]["shards"]]
        assert len(urls) > 1  # 10 KB shards: several
        got = list(wds.WebDataset(urls, shardshuffle=False))
        assert [g["__key__"] for g in got] == [f"{name}-{i:07d}" for i in range(len(examples))]
        for i, (g, ex) in enumerate(zip(got, examples)):
            meta = json.loads(g["json"])
            wave, sr = sf.read(io.BytesIO(g["flac"]), dtype="float32")
            ref, ref_sr = librosa.load(ex.path, sr=None)
            assert sr == ref_sr == meta["sample_rate"] and len(wave) == len(ref)
            assert np.abs(wave - ref).max() <= 1 / 32768 + 1e-7  # 16-bit FLAC
            assert meta == {"target": ex.target, "label": splits.labels[ex.target], "split": name, "group": ex.group,
                            "duration_s": round(len(ref) / sr, 4), "sample_rate": sr, "index": i,
                            "source": Path(ex.path).relative_to(source).as_posix()}
        for s in index["splits"][name]["shards"]:
            size = (out / s["name"]).stat().st_size
            assert size == s["bytes"] and (size <= 10_000 + 10240 or s["examples"] == 1)
    with tarfile.open(next(out.glob("train-*.tar"))) as t:
        assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in t.getmembers()} == {(0, 0, 0, "", 0o644)}


def test_wav_is_exact_and_resampling_happens_once(source, tmp_path):
    write_shards("synthetic", tmp_path / "w", root=source, overrides=SYNTH, audio_format="wav", sample_rate=16000,
                 progress="never")
    ex = build_splits(_data_config("synthetic", str(source), SYNTH)).train[0]
    g = next(iter(wds.WebDataset([str(tmp_path / "w" / "train-000000.tar")], shardshuffle=False)))
    wave, sr = sf.read(io.BytesIO(g["wav"]), dtype="float32")
    ref = librosa.resample(librosa.load(ex.path, sr=None)[0], orig_sr=8000, target_sr=16000, res_type="soxr_hq")
    assert sr == 16000 and len(wave) == len(ref) and np.abs(wave - ref).max() < 1e-5


def test_deterministic_and_resumable(source, tmp_path, monkeypatch):
    kw = dict(root=source, overrides=SYNTH, shard_size="10KB", progress="never")
    write_shards("synthetic", tmp_path / "a", **kw)
    write_shards("synthetic", tmp_path / "b", **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")

    real, calls = writer._tar_bytes, []

    def interrupted(members):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(members)
    monkeypatch.setattr(writer, "_tar_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_shards("synthetic", tmp_path / "c", **kw)
    monkeypatch.setattr(writer, "_tar_bytes", real)
    assert (tmp_path / "c" / ".progress.json").is_file() and not (tmp_path / "c" / "index.json").exists()
    assert len(list((tmp_path / "c").glob("*.tar"))) == 2 and not list((tmp_path / "c").glob(".*.tmp"))
    with pytest.raises(DataError, match="progress of another `data shard` command.*--overwrite"):
        write_shards("synthetic", tmp_path / "c", **{**kw, "shard_size": "20KB"})
    write_shards("synthetic", tmp_path / "c", **kw)  # the same command goes on
    assert _digest(tmp_path / "c") == _digest(tmp_path / "a")
    assert (tmp_path / "c" / "index.json").read_text() == (tmp_path / "a" / "index.json").read_text()
    with pytest.raises(DataError, match="holds finished shards.*--overwrite"):
        write_shards("synthetic", tmp_path / "c", **kw)
    write_shards("synthetic", tmp_path / "c", **{**kw, "overwrite": True, "shard_size": "1MB"})
    assert len(list((tmp_path / "c").glob("train-*.tar"))) == 1


def _folder_with_a_broken_file(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            sf.write(root / c / f"{c}{i}.wav", np.full(800, 0.1 * (i + 1), np.float32), 8000, subtype="PCM_16")
    (root / "a" / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    return root


def test_bad_files_follow_on_error(tmp_path):
    root = _folder_with_a_broken_file(tmp_path)
    with pytest.raises(DataError, match=r"broken\.wav.*data\.on_error=skip"):
        write_shards("folder", tmp_path / "x", root=root, overrides=["data.test_fraction=0.2"], progress="never")
    with pytest.warns(UserWarning, match="broken.wav"):
        result = write_shards("folder", tmp_path / "y", root=root,
                              overrides=["data.test_fraction=0.2", "data.on_error=skip"], progress="never")
    with open(tmp_path / "y" / "skipped.csv") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == ["broken.wav"]
    assert sum(result.index.examples(s) for s in result.index.splits) == 10
    for name, shards in result.index.splits.items():  # numbered without gaps
        got = list(wds.WebDataset([str(tmp_path / "y" / s.name) for s in shards], shardshuffle=False))
        assert [json.loads(g["json"])["index"] for g in got] == list(range(len(got)))


def test_sizes_and_settings_are_checked(source, tmp_path):
    assert parse_size("256MB") == 256_000_000 and parse_size("64MiB") == 64 * 2**20 and parse_size("1.5GB") == 1.5e9
    assert parse_size("500") == 500
    for bad in ("12XB", "-1MB", "MB"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ConfigError, match="data shard takes data.\\* settings only"):
        write_shards("synthetic", tmp_path / "z", overrides=["model.name=x"])
    with pytest.raises(DataError, match="not an audio dataset"):
        write_shards("mnist", tmp_path / "z")


def test_cli(source, tmp_path, capsys):
    code = main(["data", "shard", "synthetic", *SYNTH, "--root", str(source), "--out", str(tmp_path / "cli"),
                 "--progress", "never"])
    assert code == 0 and "synthetic: train 12 examples in 1 shard" in capsys.readouterr().out
    assert main(["data", "shard", "synthetic", *SYNTH, "--root", str(source), "--out", str(tmp_path / "cli")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "shard", "synthetic", "--out", str(tmp_path / "q"), "--shard-size", "12XB"])
