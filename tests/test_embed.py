"""``audiocnn embed`` and ``audiocnn probe``: windows, streaming, batching across files, outputs, resume, bad
files, bf16, run folders as embedders, and the probe on the embeddings."""
from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.audio import load_audio
from audiocnn.cli import main
from audiocnn.embed import (EmbedError, Embedder, VGGishEmbedder, embed_array, embed_arrays, embed_files, iter_windows,
                            load_embedder, read_clip_embeddings)
from audiocnn.embed.windows import stream_file
from audiocnn.models import create_model
from audiocnn.models.vggish import Postprocessor, to_reference_state_dict
from audiocnn.probe import ProbeError, probe


def tone(path: Path, seconds: float, *, sr: int = 16000, freq: float = 440.0, channels: int = 1, seed: int = 0,
         fmt: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape)
    data = np.stack([wave, 0.5 * wave], axis=1)[:, :channels] if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr, subtype="PCM_16", format=fmt)
    return path


@pytest.fixture(scope="module")
def tiny_vggish() -> VGGishEmbedder:
    """The VGGish pipeline with the small network: the engine tests do not need 72 M parameters."""
    torch.manual_seed(0)
    return VGGishEmbedder(create_model("vggish_tiny").eval(), device="cpu")


@pytest.fixture(scope="module")
def vggish_files(tmp_path_factory) -> tuple[Path, Path]:
    """Weights in the PyTorch port's format (random) and the same VGGish loaded through `load_embedder`."""
    root = tmp_path_factory.mktemp("vggish")
    torch.manual_seed(1)
    sd = to_reference_state_dict(create_model("vggish"))
    torch.save(sd, root / "vggish-10086976.pth")
    rng = np.random.default_rng(0)
    np.savez(root / "vggish_pca_params.npz", pca_eigen_vectors=rng.normal(size=(128, 128)) * 5,
             pca_means=rng.normal(size=128) * 0.01)
    return root / "vggish-10086976.pth", root / "vggish_pca_params.npz"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    tone(root / "a.wav", 2.5, freq=300)
    tone(root / "sub" / "b.flac", 5.0, freq=900, fmt="FLAC")
    tone(root / "sub" / "c.wav", 1.2, sr=8000, freq=500)          # resampled to 16 kHz
    tone(root / "d.wav", 3.1, sr=44100, channels=2, freq=1200)     # stereo, 44.1 kHz
    tone(root / "short.wav", 0.5, freq=700)                        # shorter than one VGGish example
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "notes.txt").write_text("not audio, not picked up")
    return root


# --- windows and streaming -----------------------------------------------------------------------------------------

def test_iter_windows_same_for_any_block_split():
    wave = np.arange(1000, dtype=np.float32)
    whole = list(iter_windows([wave], window=100, hop=30, pad_short=False, chunk=7))
    starts = np.concatenate([s + 30 * np.arange(len(w)) for s, w in whole])
    windows = np.concatenate([w for _, w in whole])
    assert starts.tolist() == list(range(0, 901, 30))  # trailing partial window dropped
    assert all(np.array_equal(w, wave[s:s + 100]) for s, w in zip(starts, windows))
    rng = np.random.default_rng(0)
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, 1000), size=rng.integers(1, 20), replace=False))
        split = list(iter_windows(np.split(wave, cuts), window=100, hop=30, pad_short=False, chunk=4))
        assert np.array_equal(np.concatenate([w for _, w in split]), windows)
    assert list(iter_windows([wave[:50]], window=100, hop=30, pad_short=False)) == []
    (start, padded), = iter_windows([wave[:20], wave[20:50]], window=100, hop=30, pad_short=True)
    assert start == 0 and padded.shape == (1, 100) and np.array_equal(padded[0, :50], wave[:50]) and not padded[0, 50:].any()
    gaps = list(iter_windows([wave], window=10, hop=400, pad_short=False))  # hop longer than the window
    assert [s for s, _ in gaps] == [0] and len(gaps[0][1]) == 3


def test_stream_equals_load_audio(clips):
    for name in ("sub/c.wav", "d.wav", "sub/b.flac"):
        blocks = list(stream_file(clips / name, 16000, block_seconds=0.37))
        assert len(blocks) > 1
        np.testing.assert_array_equal(np.concatenate(blocks), load_audio(clips / name, 16000))


class BandMeans(Embedder):
    """A cheap stand-in network: the mean of four quarters of each VGGish-sized window."""

    name, sample_rate, window, hop, dim, pad_short = "band-means", 16000, 15600, 15360, 4, False

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        return windows.reshape(len(windows), 4, -1).mean(-1)


def test_long_file_streams_in_bounded_memory(tmp_path):
    seconds = 20 * 60
    path = tone(tmp_path / "long.wav", seconds, freq=250)   # 20 minutes: 77 MB as float32
    tracemalloc.start()
    try:
        summary = embed_files(BandMeans(device="cpu"), [path], tmp_path / "out", batch_size=64, log=None,
                              block_seconds=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = 1 + (seconds * 16000 - 15600) // 15360
    assert summary["ok"] == 1 and summary["rows"][0]["windows"] == n
    assert peak < 20e6, f"peak NumPy/Python memory {peak / 1e6:.0f} MB for a file of {seconds * 16000 * 4 / 1e6:.0f} MB"
    wave = load_audio(path, 16000)
    frames = np.load(tmp_path / "out" / "long.frames.npy")
    last = wave[(n - 1) * 15360:(n - 1) * 15360 + 15600].reshape(4, -1).mean(-1)
    np.testing.assert_allclose(frames[-1], last, atol=1e-6)


# --- arrays and files ----------------------------------------------------------------------------------------------

def test_embed_array_timestamps_and_pooling(tiny_vggish):
    wave = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    r = embed_array(tiny_vggish, wave, 16000)
    assert r.embeddings.shape == (3, 128) and r.duration == 3.0
    np.testing.assert_allclose(r.starts, [0.0, 0.96, 1.92])
    np.testing.assert_allclose(r.ends, r.starts + 0.975)
    np.testing.assert_allclose(r.clip, r.embeddings.mean(0), rtol=1e-6)
    assert np.allclose(embed_array(tiny_vggish, wave, 16000, pool="max").clip, r.embeddings.max(0))
    assert embed_array(tiny_vggish, wave, 16000, pool="none").clip is None
    half = embed_array(tiny_vggish, wave, 16000, hop=0.48)
    assert len(half.embeddings) == 5 and np.allclose(half.embeddings[::2], r.embeddings, atol=1e-5)
    short = embed_arrays(tiny_vggish, [wave[:8000]] * 2, 16000)
    assert short[0].embeddings.shape == (0, 128) and short[0].clip is None
    padded = embed_array(tiny_vggish, wave[:8000], 16000, pad_short=True)
    assert padded.embeddings.shape == (1, 128) and padded.ends[0] == 0.5


@pytest.fixture(scope="module")
def vggish_emb(vggish_files) -> VGGishEmbedder:
    return load_embedder("vggish", weights=vggish_files[0], device="cpu")


def test_batched_files_equal_one_file_at_a_time(clips, tmp_path, vggish_emb):
    emb = vggish_emb
    summary = embed_files(emb, [clips], tmp_path / "out", batch_size=4, log=None)  # batches span files
    rows = {r["name"]: r for r in summary["rows"]}
    assert set(rows) == {"a", "sub/b", "sub/c", "d", "short", "broken"}
    assert rows["broken"]["status"] == "error" and "broken.wav" in rows["broken"]["source"]
    assert rows["short"]["status"] == "empty" and "--pad-short" in rows["short"]["error"]
    assert summary["ok"] == 4 and summary["errors"] == 1
    for name in ("a", "sub/b", "sub/c", "d"):
        frames = np.load(tmp_path / "out" / f"{name}.frames.npy")
        times = np.load(tmp_path / "out" / f"{name}.times.npy")
        alone = embed_array(emb, load_audio(rows[name]["source"], 16000), 16000)
        assert frames.shape == alone.embeddings.shape and frames.shape[0] == rows[name]["windows"] >= 1
        scale = np.abs(alone.embeddings).max()
        assert np.abs(frames - alone.embeddings).max() <= 1e-5 * scale, name
        np.testing.assert_allclose(times[:, 0], alone.starts)
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.clip.npy"), alone.clip, rtol=1e-5,
                                   atol=1e-5 * scale)
    with open(tmp_path / "out" / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    assert [r["name"] for r in manifest] == [r["name"] for r in summary["rows"]]


def test_resume_skips_done_files_and_refuses_other_settings(clips, tmp_path, tiny_vggish):
    out = tmp_path / "out"
    first = embed_files(tiny_vggish, [clips], out, log=None)
    stamp = (out / "a.frames.npy").stat().st_mtime_ns
    (out / "sub" / "b.json").unlink()                       # as if interrupted before b was finished
    again = embed_files(tiny_vggish, [clips], out, log=None)
    assert again["skipped"] == 4 and again["ok"] == first["ok"] and again["errors"] == 1  # bad files retried
    assert (out / "a.frames.npy").stat().st_mtime_ns == stamp and (out / "sub" / "b.json").is_file()
    with pytest.raises(EmbedError, match="hop_s"):
        embed_files(tiny_vggish, [clips], out, hop=0.5, log=None)
    assert embed_files(tiny_vggish, [clips], out, hop=0.5, overwrite=True, log=None)["skipped"] == 0


def test_formats_and_reading_back(clips, tmp_path, tiny_vggish):
    npy = embed_files(tiny_vggish, [clips / "a.wav", clips / "sub"], tmp_path / "npy", log=None)
    csv_ = embed_files(tiny_vggish, [clips / "a.wav", clips / "sub"], tmp_path / "csv", fmt="csv", pool="max",
                       log=None)
    assert npy["ok"] == csv_["ok"] == 3
    with open(tmp_path / "csv" / "b.frames.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:3] == ["start_s", "end_s", "e000"] and len(header) == 130
    rows, X = read_clip_embeddings(tmp_path / "csv")
    frames = np.load(tmp_path / "npy" / "b.frames.npy")
    b = [r["name"] for r in rows].index("b")
    np.testing.assert_allclose(X[b], frames.max(0), rtol=1e-6)
    embed_files(tiny_vggish, [clips / "a.wav"], tmp_path / "none", pool="none", log=None)
    _, Xn = read_clip_embeddings(tmp_path / "none")
    np.testing.assert_allclose(Xn[0], np.load(tmp_path / "none" / "a.frames.npy").mean(0), rtol=1e-5)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(EmbedError, match="pip install pyarrow"):
            embed_files(tiny_vggish, [clips / "a.wav"], tmp_path / "pq", fmt="parquet", log=None)
    else:
        embed_files(tiny_vggish, [clips / "a.wav"], tmp_path / "pq", fmt="parquet", log=None)
        np.testing.assert_allclose(read_clip_embeddings(tmp_path / "pq")[1], read_clip_embeddings(tmp_path / "npy")[1][:1],
                                   rtol=1e-5, atol=1e-6)  # a batch of other files' windows rounds differently


def test_bf16_reports_its_deviation(vggish_files, vggish_emb):
    wave = np.random.default_rng(2).standard_normal(16000 * 4).astype(np.float32) * 0.1
    fp32 = embed_array(vggish_emb, wave, 16000).embeddings
    emb = load_embedder("vggish", weights=vggish_files[0], device="cpu", precision="bf16")
    bf16 = embed_array(emb, wave, 16000).embeddings
    assert emb.deviation is not None and 0 < emb.deviation["rel_l2"] < 0.05 and emb.deviation["min_cosine"] > 0.99
    assert np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32) < 0.05
    assert next(emb.net.parameters()).dtype == torch.bfloat16


def test_pca_postprocessing(vggish_files, vggish_emb):
    post = Postprocessor.from_file(vggish_files[1])
    wave = np.random.default_rng(3).standard_normal(16000 * 3).astype(np.float32) * 0.1
    got = embed_array(VGGishEmbedder(vggish_emb.net, postprocessor=post, device="cpu"), wave, 16000).embeddings
    want = post(torch.from_numpy(embed_array(vggish_emb, wave, 16000).embeddings)).numpy()
    assert got.min() >= 0 and got.max() <= 255 and np.array_equal(got, got.round())
    assert np.abs(got - want).max() <= 1 and (got != want).mean() < 0.01


def test_run_folder_as_embedder(tmp_path, clips, capsys):
    """A run folder (checkpoint of the vggish_fsdd recipe; training itself is the recipe smoke test's job)."""
    from audiocnn.config import config_to_dict, load_config
    from audiocnn.core.checkpoint import save_checkpoint
    from audiocnn.build import build_classifier

    cfg = load_config(Path(__file__).resolve().parents[1] / "recipes" / "vggish_fsdd.yaml", [])
    labels = [str(d) for d in range(10)]
    torch.manual_seed(0)
    model = build_classifier(cfg, labels).eval()
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "best.pt", model=model, config=config_to_dict(cfg), labels=labels,
                    task="multiclass", epoch=1)
    emb = load_embedder(run, device="cpu")
    assert (emb.sample_rate, emb.window, emb.hop, emb.dim) == (16000, 16000, 8000, 128)
    wave = load_audio(clips / "a.wav", 16000)
    r = embed_array(emb, wave, 16000)
    assert r.embeddings.shape == (4, 128)                  # 2.5 s: windows at 0, 0.5, 1.0, 1.5 s
    with torch.no_grad():
        want = emb.model.embed(torch.from_numpy(np.stack([wave[s:s + 16000] for s in (0, 8000, 16000, 24000)])))
    np.testing.assert_allclose(r.embeddings, want.numpy(), rtol=1e-5, atol=1e-6)
    assert embed_array(emb, wave[:4000], 16000).embeddings.shape == (1, 128)   # runs pad short clips
    out = tmp_path / "emb"
    # clips/ holds broken.wav: the others are embedded, and the exit status says one input failed
    assert main(["embed", str(run), str(clips), "--out", str(out), "--progress", "never"]) == 1
    assert "1 of 6 inputs failed" in capsys.readouterr().err
    assert (out / "manifest.csv").is_file() and json.loads((out / "embed_config.json").read_text())["dim"] == 128


def test_cli_errors(tmp_path, clips, capsys):
    assert main(["embed", "vggish", str(clips), "--out", str(tmp_path / "o")]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["embed", "resnet_nothing", str(clips), "--out", str(tmp_path / "o")]) == 2
    assert "neither" in capsys.readouterr().err


# --- probe ---------------------------------------------------------------------------------------------------------

def _fake_embeddings(root: Path, n_per_class: int = 12, classes: int = 3) -> list[tuple[str, str, int]]:
    """An embed folder with separable clip embeddings, and (path, label, fold) rows for it."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, 16)) * 3
    rows, manifest = [], []
    for c in range(classes):
        for i in range(n_per_class):
            name = f"c{c}_{i}"
            np.save(root / f"{name}.clip.npy", (centres[c] + rng.normal(size=16)).astype(np.float32))
            manifest.append({"source": str(root / "audio" / f"{name}.flac"), "name": name, "status": "ok",
                             "clip": f"{name}.clip.npy", "frames": f"{name}.frames.npy"})
            rows.append((f"{name}.wav", f"class{c}", i % 4 + 1))
    manifest.append({"source": "broken.wav", "name": "broken", "status": "error"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["source", "name", "status", "windows", "duration_s", "frames", "times",
                                          "clip", "error"], extrasaction="ignore")
        w.writeheader()
        w.writerows(manifest)
    return rows


def _labels_csv(path: Path, rows, header=("filename", "category", "fold")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_probe_with_folds_and_stratified(tmp_path, capsys):
    rows = _fake_embeddings(tmp_path)
    labels = _labels_csv(tmp_path / "labels.csv", rows)
    r = probe(tmp_path, labels)
    out = capsys.readouterr().out
    assert [f["fold"] for f in r["folds"]] == ["1", "2", "3", "4"] and "fold 1: accuracy" in out
    assert r["mean"]["accuracy"] == 1.0 and r["mean"]["macro_f1"] == 1.0 and r["n_clips"] == 36
    assert json.loads((tmp_path / "probe_logreg.json").read_text())["folds"][0]["n_test"] == 9
    s = probe(tmp_path, labels, fold_column="none", folds=3, classifier="mlp", log=None)
    assert s["scheme"].startswith("stratified 3-fold") and len(s["folds"]) == 3 and s["mean"]["accuracy"] > 0.9
    renamed = _labels_csv(tmp_path / "renamed.csv", rows, header=("clip", "kind", "split"))
    with pytest.raises(ProbeError, match="path column"):
        probe(tmp_path, renamed, log=None)
    t = probe(tmp_path, renamed, path_column="clip", label_column="kind", fold_column="split", log=None)
    assert t["mean"]["accuracy"] == 1.0
    assert main(["probe", str(tmp_path), str(labels), "--out", str(tmp_path / "p.json")]) == 0
    assert (tmp_path / "p.json").is_file()
