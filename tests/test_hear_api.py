"""The HEAR API (``audiocnn.hear``): shapes, the timestamp grid, scene pooling, resampling against soxr,
run folders and VGGish weights, errors, and the official ``hear-validator`` in its own environment."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

import audiocnn.hear as hear
from audiocnn.config import load_config
from audiocnn.embed import Embedder, load_embedder
from audiocnn.pipelines import train
from audiocnn.audio.sinc import SincResampler
from audiocnn.hear.api import HearError, HearModel
from audiocnn.models import create_model
from audiocnn.models.vggish import to_reference_state_dict

ROOT = Path(__file__).resolve().parents[1]
HEAR_ENV = Path(os.environ.get("AUDIOCNN_HEAR_ENV", Path.home() / ".cache" / "audiocnn" / "hearvalidator-venv"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run of the quickstart recipe at 8 kHz (so the HEAR model resamples from 16 kHz), trained one epoch."""
    tmp = tmp_path_factory.mktemp("hear_run")
    cfg = load_config(ROOT / "recipes" / "quickstart.yaml", [
        f"data.root={tmp / 'synthetic'}", f"data.cache_dir={tmp / 'cache'}", f"trainer.output_dir={tmp / 'runs'}",
        "data.num_classes=3", "data.num_per_class=8", "data.duration=0.5", "data.batch_size=8",
        "model.name=cnn_tiny", "model.args.width=8", "trainer.epochs=1", "trainer.progress=never"])
    return train(cfg, quiet=True)


@pytest.fixture(scope="module")
def vggish_weights(tmp_path_factory) -> Path:
    """Random VGGish weights in the PyTorch port's format (the released ones cannot be downloaded here)."""
    path = tmp_path_factory.mktemp("hear_vggish") / "vggish-10086976.pth"
    torch.manual_seed(1)
    torch.save(to_reference_state_dict(create_model("vggish")), path)
    return path


@pytest.fixture(scope="module")
def run_model(run_dir) -> HearModel:
    return hear.load_model(str(run_dir))


def noise(n_sounds: int, seconds: float, sr: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_sounds, int(seconds * sr), generator=g) * 2 - 1


def centred_windows(wave: np.ndarray, window: int, hop: int, n_frames: int) -> np.ndarray:
    """Reference framing, written out: frame k is ``wave[k * hop - window // 2 : ... + window]``, zeros outside."""
    out = np.zeros((n_frames, window), np.float32)
    for k in range(n_frames):
        start = k * hop - window // 2
        lo, hi = max(start, 0), min(start + window, len(wave))
        if hi > lo:
            out[k, lo - start:hi - start] = wave[lo:hi]
    return out


class Locator(Embedder):
    """A stand-in network that says where a window's energy is: ``(centre of energy in samples, energy)``."""

    name, hop, dim, pad_short = "locator", 1, 2, True

    def __init__(self, sample_rate: int, window: int):
        super().__init__(device="cpu")
        self.sample_rate, self.window = sample_rate, window

    def _forward(self, windows: torch.Tensor) -> torch.Tensor:
        energy = windows.double() ** 2
        total = energy.sum(1)
        where = (energy * torch.arange(windows.shape[1], dtype=torch.float64)).sum(1) / total.clamp_min(1e-30)
        return torch.stack([where, total], 1).float()


# --- resampling ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("orig, new", [(16000, 8000), (16000, 22050), (48000, 44100)])
def test_resampler_matches_soxr_and_keeps_frequencies(orig, new):
    rng = np.random.default_rng(0)
    t = np.arange(orig) / orig
    freqs = rng.uniform(50, 0.85 * min(orig, new) / 2, 6)
    wave = sum(0.15 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs).astype(np.float32)
    ours = SincResampler(orig, new)(torch.from_numpy(wave)[None])[0].numpy()
    ref = soxr.resample(wave, orig, new, quality="VHQ")
    assert len(ours) == -(-len(wave) * new // orig) and abs(len(ours) - len(ref)) <= 1
    inner = slice(len(ref) // 10, -len(ref) // 10)   # the two differ in how they treat the edges only
    np.testing.assert_allclose(ours[inner], ref[inner], atol=2e-4)

    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)      # keeps its frequency
    out = SincResampler(orig, new)(torch.from_numpy(tone)[None])[0].numpy()
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert np.fft.rfftfreq(len(out), 1 / new)[spectrum.argmax()] == pytest.approx(1000.0, abs=new / len(out))


def test_resampler_removes_what_the_new_rate_cannot_hold():
    t = np.arange(16000) / 16000
    above = np.sin(2 * np.pi * 5000.0 * t).astype(np.float32)     # above 4 kHz: would alias to 3 kHz
    out = SincResampler(16000, 8000)(torch.from_numpy(above)[None])[0].numpy()
    ref = soxr.resample(above, 16000, 8000, quality="VHQ")
    inner = slice(800, -800)
    assert np.sqrt(np.mean(out[inner] ** 2)) < 1e-4 and np.sqrt(np.mean(ref[inner] ** 2)) < 1e-4
    assert SincResampler(16000, 8000).kernel.shape[0] == 1 and SincResampler(16000, 22050).kernel.shape[0] == 441


# --- the model -----------------------------------------------------------------------------------------------------

def test_run_model_attributes(run_model, run_dir):
    m = run_model
    assert isinstance(m, torch.nn.Module) and not m.training
    assert (m.sample_rate, m.native_rate, m.window, m.hop, m.hop_ms) == (16000, 8000, 4000, 400, 50.0)
    assert isinstance(m.resampler, SincResampler)
    dim = load_embedder(run_dir, device="cpu").dim
    assert type(m.scene_embedding_size) is int and m.scene_embedding_size == m.timestamp_embedding_size == dim
    assert not any("kernel" in k for k in m.state_dict())    # the resampler's filter is rebuilt, never saved


def test_timestamp_embeddings_equal_the_run_on_soxr_resampled_centred_windows(run_model, run_dir):
    """Everything at once against independent pieces: soxr for the resampling, windows cut by hand, and the
    run's own embedder one window at a time."""
    audio = noise(3, 1.23, 16000)
    emb, ts = hear.get_timestamp_embeddings(audio, run_model)
    n_frames = 1 + int(1230 // 50)
    assert emb.shape == (3, n_frames, run_model.timestamp_embedding_size) and emb.dtype == torch.float32
    assert ts.shape == (3, n_frames)
    reference = load_embedder(run_dir, device="cpu")
    for i in range(3):
        wave = soxr.resample(audio[i].numpy(), 16000, 8000, quality="VHQ")
        expected = reference.embed_windows(centred_windows(wave, 4000, 400, n_frames))
        inner = slice(2, -2)   # soxr and ours differ within a few ms of the ends
        # Within 1 % of the largest value (0.25 % seen; white noise differs in the filters' transition bands,
        # under the run's f_max); windows 5 ms off are 4-5 % off.
        np.testing.assert_allclose(emb[i, inner].numpy(), expected[inner], rtol=0,
                                   atol=0.01 * np.abs(expected).max())


@pytest.mark.parametrize("sample_rate, window", [(16000, 4000), (16000, 4001), (8000, 3000), (22050, 4410)])
def test_timestamps_are_regular_centred_and_cover_the_sound(sample_rate, window):
    m = HearModel(Locator(sample_rate, window), batch_size=7)
    for n in (0, 1, 123, m.sample_rate // 2 + 17, 2 * m.sample_rate):
        audio = torch.zeros(2, n)
        emb, ts = hear.get_timestamp_embeddings(audio, m)
        duration_ms = 1000 * n / m.sample_rate
        assert emb.shape == (2, len(ts[0]), 2) and ts.shape == emb.shape[:2]
        assert ts[0, 0] == pytest.approx(500 * (window % 2) / sample_rate)   # 0, or half a sample for odd windows
        steps = torch.diff(ts, dim=1)
        assert torch.all((steps - m.hop_ms).abs() < 1e-9) and 49 < m.hop_ms <= 50
        assert ts[0, -1] <= duration_ms + 500 / sample_rate and ts[0, -1] + m.hop_ms > duration_ms   # to the end
    emb, ts = hear.get_timestamp_embeddings(torch.zeros(0, 3000), m)     # no sounds
    assert emb.shape == (0, m.num_frames(3000), 2) and ts.shape == emb.shape[:2]
    # A click at a known time: each frame's window holds it at (click - centre) + window / 2.
    click_ms = 613.0
    audio = torch.zeros(1, m.sample_rate)
    audio[0, round(click_ms * m.sample_rate / 1000)] = 1.0
    emb, ts = hear.get_timestamp_embeddings(audio, m)
    half = window / 2 / sample_rate * 1000
    near = (ts[0] - click_ms).abs() < half - 3          # frames that hold the click well inside their window
    assert near.sum() >= 2
    where_ms = (emb[0, near, 0].double() - window / 2) * 1000 / sample_rate   # from the window's centre
    np.testing.assert_allclose(where_ms.numpy(), (click_ms - ts[0, near]).numpy(), atol=1000 / sample_rate)
    far = (ts[0] - click_ms).abs() > half + 10           # beyond the resampling filter's reach too
    assert far.sum() >= 2 and torch.all(emb[0, far, 1] == 0)   # the others do not see it


def test_scene_is_the_mean_of_frames_inside_the_sound(run_model):
    m = run_model
    half = 1000 * m.window / 2 / m.native_rate
    for seconds in (1.3, 0.62):
        audio = noise(2, seconds, 16000, seed=3)
        emb, ts = hear.get_timestamp_embeddings(audio, m)
        inside = (ts[0] - half >= 0) & (ts[0] + half <= 1000 * seconds)
        assert 0 < inside.sum() < len(ts[0])
        scene = hear.get_scene_embeddings(audio, m)
        assert scene.shape == (2, m.scene_embedding_size) and scene.dtype == torch.float32
        torch.testing.assert_close(scene, emb[:, inside].mean(1), rtol=1e-5, atol=1e-5)
    short = noise(1, 0.2, 16000, seed=4)                # no window fits: the frame at the middle (100 ms)
    emb, ts = hear.get_timestamp_embeddings(short, m)
    (middle,) = torch.nonzero(ts[0] == 100.0)[:, 0].tolist()
    torch.testing.assert_close(hear.get_scene_embeddings(short, m), emb[:, middle], rtol=1e-5, atol=1e-5)


def test_deterministic_and_independent_of_batching(run_dir):
    audio = noise(4, 0.9, 16000, seed=5)
    big, small = hear.load_model(str(run_dir)), hear.load_model(str(run_dir), batch_size=3)
    a, ts = hear.get_timestamp_embeddings(audio, big)
    b, _ = hear.get_timestamp_embeddings(audio, big)
    assert torch.equal(a, b)
    c, _ = hear.get_timestamp_embeddings(audio, small)
    alone, _ = hear.get_timestamp_embeddings(audio[2:3], small)     # a sound does not depend on its batch
    torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone[0], a[2], rtol=1e-5, atol=1e-6)
    assert not a.requires_grad and a.grad_fn is None


def test_checkpoint_file_of_a_run(run_dir, run_model):
    audio = noise(1, 0.5, 16000, seed=6)
    via_file = hear.load_model(str(run_dir / "checkpoints" / "best.pt"))
    torch.testing.assert_close(hear.get_scene_embeddings(audio, via_file), hear.get_scene_embeddings(audio, run_model))


def test_vggish_weights_file(vggish_weights):
    m = hear.load_model(str(vggish_weights))
    assert (m.sample_rate, m.native_rate, m.window, m.hop) == (16000, 16000, 15600, 800)
    assert m.resampler is None and m.timestamp_embedding_size == m.scene_embedding_size == 128
    audio = noise(2, 0.26, 16000, seed=7)               # 6 frames: VGGish is 72 M parameters on a CPU
    emb, ts = hear.get_timestamp_embeddings(audio, m)
    assert emb.shape == (2, 6, 128) and ts[0].tolist() == [0.0, 50.0, 100.0, 150.0, 200.0, 250.0]
    reference = load_embedder("vggish", weights=vggish_weights, device="cpu")
    expected = reference.embed_windows(centred_windows(audio[1].numpy(), 15600, 800, 6))
    np.testing.assert_allclose(emb[1].numpy(), expected, rtol=1e-4, atol=1e-5)
    prefixed = hear.load_model(f"vggish:{vggish_weights}")
    torch.testing.assert_close(hear.get_scene_embeddings(audio, prefixed), emb[:, 3])   # 150 ms: nearest 130 ms


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(run_dir):
    audio = noise(3, 1.1, 16000, seed=8)
    cpu = hear.load_model(str(run_dir))
    gpu = hear.load_model(str(run_dir)).to("cuda")
    emb, ts = hear.get_timestamp_embeddings(audio.cuda(), gpu)
    scene = hear.get_scene_embeddings(audio.cuda(), gpu)
    assert emb.device.type == ts.device.type == scene.device.type == "cuda"
    ref, ref_ts = hear.get_timestamp_embeddings(audio, cpu)
    torch.testing.assert_close(emb.cpu(), ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(ts.cpu(), ref_ts)
    torch.testing.assert_close(scene.cpu(), hear.get_scene_embeddings(audio, cpu), rtol=1e-4, atol=1e-4)


def test_errors_say_what_to_pass(tmp_path, run_model):
    for bad in ("", tmp_path / "nope", tmp_path):
        with pytest.raises(HearError, match="run folder .*vggish"):
            hear.load_model(str(bad))
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(HearError, match="(?s)notes.txt.* as VGGish weights: .*run folder"):
        hear.load_model(str(tmp_path / "notes.txt"))
    with pytest.raises(HearError, match="not a file"):
        hear.load_model(f"vggish:{tmp_path}")
    with pytest.raises(HearError, match=r"\(n_sounds, n_samples\)"):
        hear.get_scene_embeddings(torch.zeros(16000), run_model)
    with pytest.raises(HearError, match="load_model"):
        hear.get_scene_embeddings(torch.zeros(1, 16000), torch.nn.Linear(2, 2))
    with pytest.raises(HearError, match="hop_ms"):
        HearModel(Locator(16000, 100), hop_ms=60)


# --- the official validator ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not (HEAR_ENV / "bin" / "hear-validator").exists(),
                    reason=f"no hear-validator environment at {HEAR_ENV}: build it with .ci/hear-validator-env "
                           "(TensorFlow; set AUDIOCNN_HEAR_ENV to put it elsewhere)")
@pytest.mark.parametrize("which", ["run", "vggish"])
def test_hear_validator_passes(which, run_dir, vggish_weights):
    model = run_dir if which == "run" else vggish_weights
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}   # this checkout's audiocnn
    proc = subprocess.run([str(HEAR_ENV / "bin" / "hear-validator"), "audiocnn.hear", "--model", str(model)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and "Looks good!" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Interval between timestamps is 50.0ms" in proc.stdout
