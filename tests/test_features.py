"""Front-ends, normalisation and augmentation, checked against librosa (the independent reference).

Real recordings come from ``$AUDIOCNN_SHARED/datasets`` (default ``<repo>/../shared/datasets``);
those tests skip with a reason when the folder is absent. Generated signals always run.

The references are computed from float64 input: librosa windows and transforms in float64 anyway
(it only rounds its output to float32 for float32 input), so float32 and float64 references
agree to ~1e-5 dB and the measured error is all ours.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from audiocnn.config import FrontendConfig
from audiocnn.core.errors import ConfigError
from audiocnn.features import AUGMENT_STAGES, AUGMENTS, FrequencyNorm, Frontend, FrontendSettings, Mixup, SpecAugment

REPO = Path(__file__).resolve().parents[1]
TORCH_BACKENDS = ["torch", "nnaudio"]
DB_TOL = 1e-3  # dB, max abs: the project's "Done means" bound for log-mel in float32


def _datasets() -> Path:
    root = Path(os.environ.get("AUDIOCNN_SHARED", REPO.parent / "shared"))
    return root / "datasets" if (root / "datasets").is_dir() else root


def _signal(sr: int, n: int, seed: int = 0, *, silence: bool = False) -> np.ndarray:
    """A linear chirp 50 Hz -> ~0.45 sr plus white noise; optionally a stretch of digital silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f1 = 0.45 * sr
    y = 0.5 * np.sin(2 * np.pi * (50 * t + (f1 - 50) / (2 * t[-1]) * t**2)) + 0.05 * rng.standard_normal(n)
    if silence:
        y[n // 3: n // 2] = 0.0
    return y.astype(np.float32)


def _ref_mel(y: np.ndarray, cfg: FrontendConfig, sr: int) -> np.ndarray:
    """librosa power mel spectrogram for ``cfg``, from float64 input."""
    return librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window=cfg.window, center=cfg.center, pad_mode=cfg.pad_mode, power=cfg.power, n_mels=cfg.n_mels,
        fmin=cfg.f_min, fmax=cfg.f_max, htk=cfg.mel_scale == "htk", norm=cfg.norm,
    )


def _ref_logmel(y: np.ndarray, cfg: FrontendConfig, sr: int) -> np.ndarray:
    return librosa.power_to_db(_ref_mel(y, cfg, sr), ref=1.0, amin=cfg.amin, top_db=cfg.top_db)


def _run(fe: Frontend, y: np.ndarray) -> np.ndarray:
    return fe(torch.from_numpy(y)[None])[0].numpy()


# ----------------------------------------------------------------------------------------------
# Log-mel (dB) vs librosa: the 1e-3 dB bound


LOGMEL_SETTINGS = {
    "8k-1024": (8000, dict()),
    "16k-1024": (16000, dict()),
    "16k-512-win400-40mels": (16000, dict(n_fft=512, win_length=400, hop_length=160, n_mels=40)),
    "16k-htk-nonorm": (16000, dict(mel_scale="htk", norm=None, f_min=20.0, f_max=7600.0)),
    "8k-uncentered": (8000, dict(center=False, n_fft=256, hop_length=80)),
}


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("setting", list(LOGMEL_SETTINGS))
def test_logmel_db_matches_librosa_on_generated_signals(backend, setting):
    sr, kw = LOGMEL_SETTINGS[setting]
    cfg = FrontendConfig(kind="logmel", backend=backend, log="db", top_db=None, **kw)
    fe = FrontendSettings.of(cfg).build(sr)
    for seed, silence in ((0, False), (1, True)):
        y = _signal(sr, sr, seed, silence=silence)
        err = np.abs(_run(fe, y) - _ref_logmel(y, cfg, sr)).max()
        assert err < DB_TOL, f"{backend} {setting} silence={silence}: max abs error {err:.2e} dB"


def _real_clips(pattern: str, count: int) -> list[Path]:
    data = _datasets()
    files = sorted(data.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} under {data}: set AUDIOCNN_SHARED to the shared folder holding datasets/")
    return files[:: max(1, len(files) // count)][:count]


REAL = {"fsdd": ("fsdd/recordings/*.wav", 16), "esc10": ("esc10/audio/*.flac", 6)}


@pytest.mark.slow
@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("dataset", list(REAL))
def test_logmel_db_matches_librosa_on_recordings(backend, dataset):
    """Real recordings have bins 100+ dB below the loudest one in their frame.

    float32 cannot resolve those to 1e-3 dB: rounding ``x * window`` to float32 alone already
    leaves a noise floor ~150 dB below the frame's power, and the FFT / convolution adds to it, so
    the absolute error of a bin is ~1e-8 of its frame's magnitude whatever the algorithm. Measured
    on all 2,000 FSDD and 400 ESC-10 clips, the error stays below 1e-3 dB for bins within 70 dB of
    the clip maximum and reaches ~2e-3 dB at 70-80 dB, ~2e-2 dB beyond. Hence ``top_db=70`` here.
    """
    import soundfile as sf

    pattern, count = REAL[dataset]
    cfg = FrontendConfig(kind="logmel", backend=backend, top_db=70.0)
    frontends: dict[int, Frontend] = {}
    worst = 0.0
    for path in _real_clips(pattern, count):
        y, sr = sf.read(path, dtype="float32")
        fe = frontends.setdefault(sr, FrontendSettings.of(cfg).build(sr))
        err = np.abs(_run(fe, y) - _ref_logmel(y, cfg, sr)).max()
        worst = max(worst, err)
        assert err < DB_TOL, f"{backend} on {path.name}: max abs error {err:.2e} dB"
    assert worst > 0  # the comparison really ran


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_top_db_clips_each_example_at_its_own_max(backend):
    sr = 8000
    loud, quiet = _signal(sr, 4000, 0), 1e-3 * _signal(sr, 4000, 1)
    quiet[:1500] = 0.0  # bins down at amin, far below this example's max - top_db
    cfg = FrontendConfig(kind="logmel", backend=backend, top_db=40.0)
    out = FrontendSettings.of(cfg).build(sr)(torch.from_numpy(np.stack([loud, quiet]))).numpy()
    for got, y in zip(out, (loud, quiet)):
        assert np.abs(got - _ref_logmel(y, cfg, sr)).max() < DB_TOL
    # the quiet example is floored at its own max - 40 dB, which lies below the loud one's floor
    assert out[1].min() == pytest.approx(out[1].max() - 40.0, abs=1e-4)
    assert out[1].max() < out[0].max() - 40.0


# ----------------------------------------------------------------------------------------------
# STFT, mel, MFCC, natural log vs librosa


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("center", [True, False])
def test_stft_matches_librosa(backend, power, center):
    sr = 16000
    y = _signal(sr, 8000)
    cfg = FrontendConfig(kind="stft", backend=backend, n_fft=512, win_length=400, hop_length=128,
                         power=power, center=center)
    ref = np.abs(librosa.stft(y.astype(np.float64), n_fft=512, hop_length=128, win_length=400,
                              center=center, pad_mode="constant")) ** power
    out = _run(FrontendSettings.of(cfg).build(sr), y)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6 * ref.max())


@pytest.mark.parametrize("pad_mode", ["reflect", "replicate"])
def test_torch_stft_padding_matches_librosa(pad_mode):
    """The CPU path frames and pads itself (blocks of frames): its padding must match numpy.pad's."""
    sr = 16000
    y = _signal(sr, 3000)  # more frames than one CPU block of 256 frames at hop 8
    cfg = FrontendConfig(kind="stft", backend="torch", n_fft=64, hop_length=8, pad_mode=pad_mode)
    ref = np.abs(librosa.stft(y.astype(np.float64), n_fft=64, hop_length=8,
                              pad_mode={"reflect": "reflect", "replicate": "edge"}[pad_mode])) ** 2
    out = _run(FrontendSettings.of(cfg).build(sr), y)
    assert out.shape == ref.shape and ref.shape[1] > 256
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6 * ref.max())


MEL_VARIANTS = {
    "slaney": dict(),
    "htk": dict(mel_scale="htk"),
    "norm-none": dict(norm=None),
    "uncentered": dict(center=False),
    "band-limited": dict(f_min=300.0, f_max=3400.0, n_mels=32),
    "power1": dict(power=1.0),
}


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("variant", list(MEL_VARIANTS))
def test_mel_power_matches_librosa(backend, variant):
    sr = 8000
    cfg = FrontendConfig(**{**dict(kind="mel", backend=backend, n_fft=512, hop_length=128, n_mels=40), **MEL_VARIANTS[variant]})
    y = _signal(sr, 6000)
    ref = _ref_mel(y, cfg, sr)
    out = _run(FrontendSettings.of(cfg).build(sr), y)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6 * ref.max())


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_mfcc_matches_librosa_feature_mfcc(backend):
    sr = 16000
    y = _signal(sr, 12000)
    # librosa.feature.mfcc(y=...) uses power_to_db(top_db=80): set the same
    cfg = FrontendConfig(kind="mfcc", backend=backend, n_mfcc=13, n_mels=40, n_fft=512, hop_length=160, top_db=80.0)
    ref = librosa.feature.mfcc(y=y.astype(np.float64), sr=sr, n_mfcc=13, n_mels=40, n_fft=512, hop_length=160,
                               center=True, pad_mode="constant")
    out = _run(FrontendSettings.of(cfg).build(sr), y)
    assert out.shape == ref.shape == (13, 1 + 12000 // 160)
    np.testing.assert_allclose(out, ref, atol=2e-3, rtol=0)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_natural_log_matches_numpy(backend):
    sr = 8000
    cfg = FrontendConfig(kind="logmel", backend=backend, log="log", log_offset=1e-6, n_fft=512, hop_length=128)
    y = _signal(sr, 4000)
    ref = np.log(_ref_mel(y, cfg, sr) + 1e-6)
    np.testing.assert_allclose(_run(FrontendSettings.of(cfg).build(sr), y), ref, rtol=0, atol=3e-4)


def test_librosa_backend_agrees_with_torch_backend():
    sr = 8000
    y = torch.from_numpy(np.stack([_signal(sr, 5000, s) for s in range(2)]))
    for kind in ("stft", "mel", "logmel", "mfcc"):
        outs = [FrontendSettings.of(FrontendConfig(kind=kind, backend=b, n_fft=512, n_mels=40)).build(sr)(y) for b in ("librosa", "torch")]
        tol = 1e-3 if kind in ("logmel", "mfcc") else 1e-4 * float(outs[0].max())
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=tol)


# ----------------------------------------------------------------------------------------------
# Frame counts


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large")  # librosa, for clips shorter than n_fft
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_fft", [512, 511])
def test_num_frames_matches_librosa_and_output(center, n_fft):
    sr, hop = 8000, 160
    lengths = [100, 255, 256, 511, 512, 513, 1000, 1001, 4001, 8000]
    fes = {b: FrontendSettings.of(FrontendConfig(kind="mel", backend=b, n_fft=n_fft, hop_length=hop, n_mels=32, center=center)).build(sr)
           for b in ("torch", "nnaudio", "librosa")}
    for n in lengths:
        y = _signal(sr, n)
        if not center and n < n_fft:
            with pytest.raises(ValueError, match="frontend.center"):
                fes["torch"].num_frames(n)
            continue
        expected = librosa.stft(y, n_fft=n_fft, hop_length=hop, center=center, pad_mode="constant").shape[-1]
        for backend, fe in fes.items():
            assert fe.num_frames(n) == expected, (backend, n)
            assert fe(torch.from_numpy(y)[None]).shape[-1] == expected, (backend, n)


def test_num_frames_of_cqt_and_waveform():
    sr = 8000
    cqt = FrontendSettings.of(FrontendConfig(kind="cqt", backend="nnaudio", hop_length=128, n_bins=60)).build(sr)
    wav = FrontendSettings.of(FrontendConfig(kind="waveform")).build(sr)
    for n in (3000, 8001):
        x = torch.from_numpy(_signal(sr, n))[None]
        assert cqt(x).shape == (1, 60, cqt.num_frames(n))
        assert wav(x).shape == (1, 1, n) and wav.num_frames(n) == n and wav.n_features == 1


# ----------------------------------------------------------------------------------------------
# Module behaviour


ALL_KINDS = [(k, b) for k in ("stft", "mel", "logmel", "mfcc") for b in ("torch", "nnaudio", "librosa")] + [
    ("cqt", "nnaudio"), ("waveform", "torch"), ("efficientat_mel", "torch")]
# what efficientat_mel computes, as its settings must state (EFFICIENTAT_FIXED in frontends.py)
EFFICIENTAT = dict(window="hann", center=True, pad_mode="reflect", power=2.0, norm=None, mel_scale="htk", log="log",
                   log_offset=1e-5, preemphasis=0.97)


def _small(kind: str, backend: str) -> FrontendConfig:
    more = EFFICIENTAT if kind == "efficientat_mel" else {}
    return FrontendConfig(kind=kind, backend=backend, n_fft=256, hop_length=64, n_mels=32, n_mfcc=13, n_bins=48,
                          **more)


@pytest.mark.parametrize("kind,backend", ALL_KINDS)
def test_state_dict_holds_no_kernels_and_module_moves(kind, backend):
    fe = FrontendSettings.of(_small(kind, backend)).build(8000)
    assert fe.state_dict() == {}
    assert list(fe.parameters()) == []
    x = torch.from_numpy(np.stack([_signal(8000, 2000, s) for s in range(2)]))
    before = fe(x)
    # a model cast to half / bf16 takes its front-end along: kernels must stay float32
    model = torch.nn.Sequential(fe).to(torch.bfloat16).to("cpu")
    assert all(b.dtype == torch.float32 for b in fe.buffers())
    after = model(x)
    assert after.dtype == torch.float32
    torch.testing.assert_close(after, before)
    fe.load_state_dict({})  # strict load of an empty dict works


@pytest.mark.parametrize("kind,backend", [("logmel", "torch"), ("logmel", "nnaudio"), ("mfcc", "torch"), ("cqt", "nnaudio"),
                                          ("efficientat_mel", "torch")])
def test_float32_under_bf16_autocast(kind, backend):
    fe = FrontendSettings.of(_small(kind, backend)).build(8000)
    x = torch.from_numpy(np.stack([_signal(8000, 2000, s) for s in range(2)]))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = fe(x)
        out_bf16_input = fe(x.to(torch.bfloat16))
    assert out.dtype == out_bf16_input.dtype == torch.float32
    torch.testing.assert_close(out, fe(x), rtol=0, atol=0)
    torch.testing.assert_close(out_bf16_input, fe(x.to(torch.bfloat16).float()), rtol=0, atol=0)


@pytest.mark.parametrize("kind,backend", ALL_KINDS)
def test_batch_equals_single_calls(kind, backend):
    fe = FrontendSettings.of(_small(kind, backend)).build(8000)
    x = torch.from_numpy(np.stack([_signal(8000, 2500, s) for s in range(3)]))
    batch = fe(x)
    assert batch.shape == (3, fe.n_features, fe.num_frames(2500))
    singles = torch.cat([fe(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, singles, rtol=1e-5, atol=1e-5 * float(batch.abs().max()))


def test_rejects_non_2d_input():
    fe = FrontendSettings.of(_small("logmel", "torch")).build(8000)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        fe(torch.zeros(1, 1, 1000))


# ----------------------------------------------------------------------------------------------
# CQT


def test_cqt_pure_tone_peaks_at_its_bin():
    sr, f_min, bpo = 16000, 55.0, 12
    cfg = FrontendConfig(kind="cqt", backend="nnaudio", f_min=f_min, n_bins=72, bins_per_octave=bpo,
                         hop_length=256, log="db")
    fe = FrontendSettings.of(cfg).build(sr)
    t = np.arange(sr) / sr
    tones = [(k, np.sin(2 * np.pi * f_min * 2 ** (k / bpo) * t).astype(np.float32)) for k in (9, 30, 57)]
    out = fe(torch.from_numpy(np.stack([y for _, y in tones])))
    assert out.shape == (3, 72, fe.num_frames(sr)) == (3, 72, 1 + sr // 256)
    mid = out[:, :, out.shape[-1] // 2]
    assert mid.argmax(dim=1).tolist() == [k for k, _ in tones]
    # and librosa's CQT puts the tone in the same bin
    ref = np.abs(librosa.cqt(tones[1][1], sr=sr, hop_length=256, fmin=f_min, n_bins=72, bins_per_octave=bpo))
    assert ref[:, ref.shape[1] // 2].argmax() == 30


def test_cqt_uses_c1_when_f_min_is_zero():
    fe = FrontendSettings.of(FrontendConfig(kind="cqt", backend="nnaudio", n_bins=24)).build(8000)
    assert fe.f_min == pytest.approx(librosa.note_to_hz("C1"))


# ----------------------------------------------------------------------------------------------
# Config errors


@pytest.mark.parametrize("changes,message", [
    (dict(kind="cqt", backend="torch"), "frontend.kind=cqt is not available with frontend.backend=torch; use frontend.backend=nnaudio"),
    (dict(kind="cqt", backend="librosa"), "frontend.backend=nnaudio"),
    (dict(backend="nnaudio", pad_mode="replicate"), "frontend.pad_mode"),
    (dict(pad_mode="symmetric"), "frontend.pad_mode"),
    (dict(kind="mfcc", n_mfcc=80, n_mels=64), "frontend.n_mfcc"),
    (dict(f_max=9000.0), "frontend.f_max"),
    (dict(win_length=2048), "frontend.win_length"),
    (dict(norm="l2"), "frontend.norm"),
    (dict(window="hannn"), "frontend.window"),
    (dict(kind="cqt", backend="nnaudio", n_bins=100), "frontend.n_bins"),
])
def test_invalid_settings_name_the_key(changes, message):
    cfg = dataclasses.replace(FrontendConfig(), **changes)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        FrontendSettings.of(cfg).build(16000)


def _torchaudio_error() -> str:
    try:
        import torchaudio  # noqa: F401
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return ""


@pytest.mark.skipif(bool(_torchaudio_error()), reason=f"torchaudio does not import here ({_torchaudio_error()[:120]})")
@pytest.mark.parametrize("kind", ["stft", "logmel"])
def test_torchaudio_backend_matches_librosa(kind):
    sr = 16000
    cfg = FrontendConfig(kind=kind, backend="torchaudio", n_fft=512, hop_length=128, n_mels=40)
    fe = FrontendSettings.of(cfg).build(sr)
    assert fe.state_dict() == {}
    y = _signal(sr, sr)
    if kind == "stft":
        ref = np.abs(librosa.stft(y.astype(np.float64), n_fft=512, hop_length=128, pad_mode="constant")) ** 2
        np.testing.assert_allclose(_run(fe, y), ref, rtol=1e-4, atol=1e-6 * ref.max())
    else:
        assert np.abs(_run(fe, y) - _ref_logmel(y, cfg, sr)).max() < DB_TOL


@pytest.mark.skipif(not _torchaudio_error(), reason="torchaudio imports here")
def test_torchaudio_backend_missing_says_what_to_do():
    with pytest.raises(ImportError, match="frontend.backend=torch"):
        FrontendSettings.of(FrontendConfig(backend="torchaudio")).build(16000)


# ----------------------------------------------------------------------------------------------
# FrequencyNorm


def test_frequency_norm_fit_standardises_each_row():
    gen = torch.Generator().manual_seed(0)
    n_features = 16
    offset = torch.linspace(-80, 10, n_features)[:, None]
    scale = torch.linspace(0.5, 20, n_features)[:, None]
    batches = [offset + scale * torch.randn(b, n_features, f, generator=gen) for b, f in ((4, 50), (7, 50), (1, 50))]
    norm = FrequencyNorm(n_features)
    x0 = batches[0]
    assert torch.equal(norm(x0), x0)  # identity until fitted
    norm.fit(iter(batches))
    rows = torch.cat([b.transpose(0, 1).reshape(n_features, -1) for b in batches], dim=1).double()
    torch.testing.assert_close(norm.mean.double(), rows.mean(1), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(norm.std.double(), rows.std(1, unbiased=False), rtol=1e-5, atol=1e-5)
    z = torch.cat([norm(b) for b in batches]).transpose(0, 1).reshape(n_features, -1)
    assert z.mean(1).abs().max() < 1e-4 and (z.std(1, unbiased=False) - 1).abs().max() < 1e-4
    assert set(norm.state_dict()) == {"mean", "std"}
    with pytest.raises(ValueError, match="16"):
        norm(torch.zeros(2, 8, 10))


# ----------------------------------------------------------------------------------------------
# SpecAugment and mixup


def test_spec_augment_only_in_training():
    x = torch.randn(4, 32, 50) + 10.0  # no exact zeros of its own
    aug = SpecAugment(freq_masks=2, freq_mask_param=8, time_masks=2, time_mask_param=10)
    aug.eval()
    assert torch.equal(aug(x), x)
    assert torch.equal(SpecAugment().train()(x), x)  # zero masks: identity
    aug.train()
    torch.manual_seed(0)
    out = aug(x)
    zero = out == 0
    assert zero.any()
    assert torch.equal(out[~zero], x[~zero])
    for i in range(4):
        full_rows = zero[i].all(dim=1)
        full_cols = zero[i].all(dim=0)
        # every zero lies in a fully masked row or column, and there are at most 2 bands each
        assert torch.equal(zero[i], full_rows[:, None] | full_cols[None, :])
        assert int(full_rows.sum()) <= 16 and int(full_cols.sum()) <= 20
    assert any(not torch.equal(zero[0], zero[i]) for i in range(1, 4))  # independent per example


def test_mixup_draw_and_mix():
    x = torch.eye(6).reshape(6, 6, 1)  # one-hot rows reveal the partner of each example
    mixup = Mixup(alpha=0.4).train()
    np.random.seed(1)
    torch.manual_seed(1)
    perm, lam = mixup.draw(6)
    np.random.seed(1)
    assert lam == np.random.beta(0.4, 0.4)  # Beta(alpha, alpha) from NumPy's global RNG
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(6))
    torch.testing.assert_close(mixup(x, (perm, lam)), lam * x + (1 - lam) * x[perm])
    np.random.seed(1)
    torch.manual_seed(1)
    again = mixup.draw(6)  # the engine's seeded global RNGs give the same draw on resume
    assert again[1] == lam and torch.equal(again[0], perm)
    assert Mixup(alpha=0.0).train().draw(6) is None and mixup(x, None) is x
    assert mixup.eval().draw(6) is None  # training only


def test_every_augmentation_is_registered_in_one_stage():
    staged = [name for names in AUGMENT_STAGES.values() for name in names]
    assert sorted(staged) == AUGMENTS.names()  # each registered transform has exactly one place in the order
    assert AUGMENTS.get("masks") is SpecAugment and AUGMENTS.get("mixup") is Mixup
    with pytest.raises(ConfigError, match="mixup_alpha"):
        Mixup(alpha=-1)

# --- filters.py: librosa's mel bank and scipy's windows without importing either -----------------------------

from audiocnn.features.filters import _TORCH_WINDOWS  # noqa: E402


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(8000, 256, 40, 0.0, 4000.0), (16000, 512, 64, 50.0, 7600.0),
                                                       (22050, 2048, 128, 0.0, 11025.0), (44100, 1024, 96, 20.0, 15000.0)])
@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None])
def test_mel_filters_match_librosa(sr, n_fft, n_mels, fmin, fmax, htk, norm):
    from audiocnn.features.filters import mel_filters, mel_frequencies

    np.testing.assert_allclose(mel_frequencies(n_mels, fmin=fmin, fmax=fmax, htk=htk),
                               librosa.mel_frequencies(n_mels, fmin=fmin, fmax=fmax, htk=htk), rtol=1e-12)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    got = mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", [*_TORCH_WINDOWS, ("kaiser", 8.0)])  # every name computed with torch, and scipy's
@pytest.mark.parametrize("length", [16, 255, 400])
def test_windows_match_scipy(name, length):
    import scipy.signal
    from audiocnn.features.filters import get_window

    np.testing.assert_allclose(get_window(name, length), scipy.signal.get_window(name, length, fftbins=True),
                               rtol=0, atol=1e-12)


def test_building_a_torch_frontend_imports_neither_librosa_nor_scipy_signal():
    code = ("import sys; from audiocnn.features import build_frontend; "
            "build_frontend(kind='logmel', n_mels=40, sample_rate=8000)(__import__('torch').zeros(1, 8000)); "
            "print(sorted(m for m in ('librosa', 'scipy.signal', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
