"""``audiocnn data shard``: shards read back with the webdataset library (the reader's), audio against librosa and
soundfile reads of the sources, sizes against tarfile, resume against an uninterrupted run; on generated data."""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from audiocnn.cli import main
from audiocnn.config import data_config
from audiocnn.core.errors import DataError
from audiocnn.core.io import WriteFailure
from audiocnn.data import shard_writer
from audiocnn.data.datasets import build_splits
from audiocnn.data.shard_format import example_key, parse_index
from audiocnn.data.shard_writer import parse_size, write_shards

SYN = ["data.num_classes=3", "data.num_per_class=5", "data.duration=0.3", "data.sample_rate=8000"]
JSON_FIELDS = {"target", "label", "split", "group", "duration_s", "sample_rate", "index", "source"}


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "synthetic"
    build_splits(data_config("synthetic", str(root), SYN, command="test"))  # generate the files once
    return root


@pytest.fixture()
def broken_folder(tmp_path) -> Path:
    """A ``folder`` dataset, two classes of six 8 kHz clips, and one file that is text, not audio."""
    root = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            sf.write(root / c / f"{c}_{i}.wav", 0.3 * rng.standard_normal(1200), 8000, subtype="PCM_16")
    (root / "dog" / "broken.wav").write_text("this is not audio, it is a note someone saved as .wav\n" * 20)
    return root


def samples(out: Path) -> dict[str, list[dict]]:
    """Every example of every split, as webdataset reads the tars the index names, in order."""
    index = parse_index((out / "index.json").read_text(), str(out))
    found: dict[str, list[dict]] = {}
    for split, shards in index.splits.items():
        found[split] = []
        for s in shards:
            for sample in wds.WebDataset(str(out / s.name), shardshuffle=False):
                found[split].append({k: v for k, v in sample.items() if k not in ("__url__", "__local_path__")})
    return found


def digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def test_every_example_is_read_back_by_webdataset_with_its_audio_and_fields(syn, tmp_path):
    out = tmp_path / "shards"
    result = write_shards("synthetic", out, root=syn, overrides=SYN, progress="never")
    reference = build_splits(data_config("synthetic", str(syn), SYN, command="test"))
    got = samples(out)
    assert set(got) == {"train", "val", "test"}
    for split, examples in reference.parts().items():
        assert len(got[split]) == len(examples) == result.index.examples(split)
        for i, (sample, ex) in enumerate(zip(got[split], examples)):
            assert set(sample) == {"__key__", "flac", "json"} and sample["__key__"] == f"{split}-{i:07d}"
            meta = json.loads(sample["json"])
            assert set(meta) == JSON_FIELDS
            assert meta["target"] == ex.target and meta["label"] == reference.labels[ex.target]
            assert meta["split"] == split and meta["index"] == i and meta["group"] == ""
            assert meta["source"] == Path(ex.path).relative_to(syn).as_posix()
            source, sr = librosa.load(ex.path, sr=None, mono=True)
            decoded, rate = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
            assert rate == sr == meta["sample_rate"] == 8000 and sf.info(io.BytesIO(sample["flac"])).subtype == "PCM_16"
            assert decoded.shape == source.shape and meta["duration_s"] == pytest.approx(len(source) / sr)
            assert np.abs(decoded - source).max() <= 1 / 32768
    index = json.loads((out / "index.json").read_text())
    assert index["source"]["dataset"] == "synthetic" and index["source"]["overrides"] == SYN
    assert index["source"]["created_by"].startswith("audiocnn ") and index["audio_format"] == "flac"
    assert index["sample_rate"] is None and not (out / ".progress.json").exists()
    assert result.summary().startswith("synthetic: train 12 examples in 1 shard (3.6 s), val 3 examples in 1 shard")
    assert result.summary().endswith(f"-> {out / 'index.json'}")


def test_wav_is_exact_float32_and_sample_rate_resamples(syn, tmp_path):
    write_shards("synthetic", tmp_path / "wav", root=syn, overrides=SYN, audio_format="wav", progress="never")
    reference = build_splits(data_config("synthetic", str(syn), SYN, command="test"))
    for sample, ex in zip(samples(tmp_path / "wav")["train"], reference.train):
        assert set(sample) == {"__key__", "wav", "json"}
        decoded, rate = sf.read(io.BytesIO(sample["wav"]), dtype="float32")
        assert sf.info(io.BytesIO(sample["wav"])).subtype == "FLOAT" and rate == 8000
        np.testing.assert_array_equal(decoded, sf.read(ex.path, dtype="float32")[0])

    write_shards("synthetic", tmp_path / "16k", root=syn, overrides=SYN, sample_rate=16000, progress="never")
    assert json.loads((tmp_path / "16k" / "index.json").read_text())["sample_rate"] == 16000
    for sample, ex in zip(samples(tmp_path / "16k")["val"], reference.val):
        decoded, rate = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
        expected = librosa.load(ex.path, sr=16000, res_type="soxr_hq")[0]
        assert rate == json.loads(sample["json"])["sample_rate"] == 16000 and decoded.shape == expected.shape
        assert np.abs(decoded - np.clip(expected, -1, 1)).max() <= 1 / 32768 + 1e-6


def test_a_shard_closes_before_an_example_would_take_it_past_the_size(syn, tmp_path):
    limit = 25_000
    result = write_shards("synthetic", tmp_path / "s", root=syn, overrides=SYN, shard_size=limit, progress="never")
    shards = result.index.splits["train"]
    assert len(shards) > 2 and sum(s.examples for s in shards) == 12

    def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
        with tarfile.open(path) as tar:
            return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]

    def tar_size(items) -> int:  # what tarfile makes of these members: the independent measure
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for info, data in items:
                tar.addfile(info, io.BytesIO(data))
        return len(buf.getvalue())

    for this, after in zip(shards, shards[1:]):
        path = tmp_path / "s" / this.name
        assert path.stat().st_size == this.bytes and (this.bytes <= limit or this.examples == 1)
        assert tar_size(members(path) + members(tmp_path / "s" / after.name)[:2]) > limit
    for info, _ in members(tmp_path / "s" / shards[0].name):  # deterministic headers
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)


def test_sizes_parse_in_decimal_and_binary_units():
    assert parse_size("256MB") == 256_000_000 and parse_size("1.5GB") == 1_500_000_000
    assert parse_size("500KB") == 500_000 and parse_size("64MiB") == 64 * 2**20 and parse_size("1000") == 1000
    for bad in ("12XB", "-5MB", "MB", ""):
        with pytest.raises(ValueError, match="write e.g. 256MB"):
            parse_size(bad)
    with pytest.raises(ValueError, match="positive"):
        parse_size("0")


def test_sharding_twice_gives_identical_bytes(syn, tmp_path):
    for name in ("a", "b"):
        write_shards("synthetic", tmp_path / name, root=syn, overrides=SYN, shard_size=25_000, progress="never")
    assert digests(tmp_path / "a") == digests(tmp_path / "b") and len(digests(tmp_path / "a")) > 4


def test_an_interrupted_run_resumes_to_the_bytes_of_an_uninterrupted_one(syn, tmp_path, monkeypatch):
    args = dict(root=syn, overrides=SYN, shard_size=25_000, progress="never")
    write_shards("synthetic", tmp_path / "whole", **args)
    out = tmp_path / "resumed"
    real_init = shard_writer._TarShard.__init__
    opened = []

    def second_shard_interrupts(self, path):
        opened.append(path.name)
        if len(opened) == 2:
            raise KeyboardInterrupt
        real_init(self, path)

    monkeypatch.setattr(shard_writer._TarShard, "__init__", second_shard_interrupts)
    with pytest.raises(KeyboardInterrupt):
        write_shards("synthetic", out, **args)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == [".progress.json", "train-000000.tar"]
    progress = json.loads((out / ".progress.json").read_text())
    assert progress["splits"]["train"]["covered"] == progress["splits"]["train"]["shards"][0]["examples"] > 0
    first = (out / "train-000000.tar").stat().st_mtime_ns

    with pytest.raises(DataError, match=r"other settings.*--overwrite"):
        write_shards("synthetic", out, **{**args, "shard_size": 40_000})
    result = write_shards("synthetic", out, **args)
    assert result.resumed_shards == 1 and (out / "train-000000.tar").stat().st_mtime_ns == first
    assert digests(out) == digests(tmp_path / "whole")


def test_a_finished_set_is_refused_without_overwrite(syn, tmp_path):
    out = tmp_path / "s"
    write_shards("synthetic", out, root=syn, overrides=SYN, shard_size=25_000, progress="never")
    with pytest.raises(DataError) as info:
        write_shards("synthetic", out, root=syn, overrides=SYN, progress="never")
    assert str(out) in str(info.value) and "--overwrite" in str(info.value)
    result = write_shards("synthetic", out, root=syn, overrides=SYN, audio_format="wav", overwrite=True,
                          progress="never")
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "train-000000.tar", "val-000000.tar"]
    assert result.index.audio_format == "wav"


def test_bad_files_raise_before_anything_is_written(broken_folder, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(DataError) as info:
        write_shards("folder", out, root=broken_folder, progress="never")
    message = str(info.value)
    assert "broken.wav" in message and "not an audio file" in message and "data.on_error=skip" in message
    assert not out.exists() or not any(out.iterdir())


def test_skip_leaves_bad_files_out_and_lists_them(broken_folder, tmp_path):
    out = tmp_path / "s"
    with pytest.warns(UserWarning, match="broken.wav"):
        result = write_shards("folder", out, root=broken_folder, overrides=["data.on_error=skip"], progress="never")
    with open(out / "skipped.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["split"], Path(r["path"]).name) for r in rows] == [(result.skipped[0][0], "broken.wav")]
    assert "not an audio file" in rows[0]["reason"]
    reference = build_splits(data_config("folder", str(broken_folder), [], command="test")).parts()
    got = samples(out)
    for split, examples in reference.items():
        good = [ex for ex in examples if not ex.path.endswith("broken.wav")]
        assert [json.loads(s["json"])["source"] for s in got[split]] == \
            [Path(ex.path).relative_to(broken_folder).as_posix() for ex in good]
        assert [s["__key__"] for s in got[split]] == [example_key(split, i) for i in range(len(good))]
        assert [json.loads(s["json"])["label"] for s in got[split]] == [ex.meta["label"] for ex in good]
    assert "1 skipped" in result.summary()


def test_a_file_failing_while_written_leaves_no_half_shard(broken_folder, tmp_path, monkeypatch):
    # the file breaks after the check: the check pass is told every file is fine
    monkeypatch.setattr(shard_writer, "_check_files", lambda parts, progress: {s: [None] * len(v)
                                                                              for s, v in parts.items()})
    out = tmp_path / "s"
    with pytest.raises(DataError, match="broken.wav"):
        write_shards("folder", out, root=broken_folder, shard_size=10_240, progress="never")  # 3 clips a shard
    leftover = sorted(p.name for p in out.iterdir())
    assert not [n for n in leftover if n.endswith(".tmp")] and "index.json" not in leftover
    progress = json.loads((out / ".progress.json").read_text()) if (out / ".progress.json").exists() else {}
    recorded = [s["name"] for part in progress.get("splits", {}).values() for s in part["shards"]]
    assert recorded and sorted(n for n in leftover if n.endswith(".tar")) == sorted(recorded)  # completed ones only


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_manifest_targets_and_labels(syn, tmp_path, task):
    clips = sorted(syn.rglob("*.wav"))[:6]
    manifest = tmp_path / "clips.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        if task == "multilabel":
            w.writerow(["path", "label", "split", "group"])
            tags = ["bird;wind", "wind", "bird", "rain", "bird;rain", "wind"]
            w.writerows([c, t, "train" if i < 4 else "test", f"g{i}"] for i, (c, t) in enumerate(zip(clips, tags)))
        else:
            w.writerow(["path", "pitch", "split"])
            w.writerows([c, 0.5 * i, "train" if i < 4 else "test"] for i, c in enumerate(clips))
    extra = ["data.label_columns=[pitch]"] if task == "regression" else []
    overrides = [f"data.manifest={manifest}", f"data.task={task}", "data.val_fraction=0", *extra]
    write_shards("manifest", tmp_path / "s", overrides=overrides, progress="never")
    got = [json.loads(s["json"]) for s in samples(tmp_path / "s")["train"]]
    if task == "multilabel":  # labels sorted: bird, rain, wind
        assert [m["label"] for m in got] == [["bird", "wind"], ["wind"], ["bird"], ["rain"]]
        assert [m["target"] for m in got] == [[1, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
        assert [m["group"] for m in got] == ["g0", "g1", "g2", "g3"]
    else:
        assert [m["label"] for m in got] == [None] * 4 and [m["target"] for m in got] == [[0.0], [0.5], [1.0], [1.5]]
    assert [m["source"] for m in got] == [c.name for c in clips[:4]]  # not under the manifest's folder


def test_cli_data_shard(syn, tmp_path, capsys, monkeypatch):
    out = tmp_path / "s"
    args = ["data", "shard", "synthetic", *SYN, "--root", str(syn), "--out", str(out), "--shard-size", "25KB",
            "--progress", "never"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("synthetic: train 12 examples in ")
    assert parse_index((out / "index.json").read_text(), str(out)).extra["source"]["shard_size"] == 25_000
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(out) in err and "--overwrite" in err
    assert main(["data", "shard", "synthetic", "trainer.epochs=2", "--out", str(tmp_path / "x")]) == 2
    assert "data.* settings only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(args[:-4] + ["--shard-size", "lots"])
    assert info.value.code == 2 and "--shard-size" in capsys.readouterr().err

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(args[:-2] + ["--overwrite"]) == 3
    assert "read-only" in capsys.readouterr().err


def test_a_full_disk_mid_shard_is_a_write_failure_and_leaves_no_temporary(syn, tmp_path, monkeypatch):
    real_add = shard_writer._TarShard.add
    calls = []

    def disk_fills(self, members, duration_s):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, members, duration_s)

    monkeypatch.setattr(shard_writer._TarShard, "add", disk_fills)
    out = tmp_path / "s"
    with pytest.raises(WriteFailure) as info:
        write_shards("synthetic", out, root=syn, overrides=SYN, progress="never")
    assert info.value.disk_full and info.value.exit_code == 3 and "train-000000.tar" in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == []
