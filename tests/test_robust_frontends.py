"""Robust front-end parts against librosa: PCEN (librosa.pcen) and deltas (librosa.feature.delta, mode interp)."""
import librosa
import numpy as np
import pytest
import torch

from audiocnn.features.deltas import Deltas
from audiocnn.features.pcen import PCEN, PCEN_INPUT_SCALE


def _tone(sr: int = 16000, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.5) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_pcen_matches_librosa_on_a_mel_spectrogram():
    sr, hop = 16000, 256
    S = librosa.feature.melspectrogram(y=_tone(sr), sr=sr, n_fft=1024, hop_length=hop, n_mels=40, power=1.0)
    ref = librosa.pcen(S.astype(np.float64) * PCEN_INPUT_SCALE, sr=sr, hop_length=hop)
    assert S.shape[-1] > 128  # more than one block of the recursion
    out = PCEN(sample_rate=sr, hop_length=hop)(torch.from_numpy(S)[None] * PCEN_INPUT_SCALE)[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("kw", [dict(gain=0.8, bias=10.0, power=0.25, time_constant=0.06), dict(power=0.0),
                                dict(bias=0.0)])
def test_pcen_other_parameters_match_librosa(kw):
    E = np.random.default_rng(1).random((3, 7, 300)) * 1e10
    ref = librosa.pcen(E, sr=22050, hop_length=512, **kw)
    out = PCEN(sample_rate=22050, hop_length=512, **kw)(torch.from_numpy(E).float()).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("width", [3, 9])
def test_deltas_match_librosa_on_random_and_logmel(width):
    rand = np.random.default_rng(2).standard_normal((4, 50)).astype(np.float32)
    logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=_tone(), sr=16000, n_mels=32)).astype(np.float32)
    for S in (rand, logmel):
        out = Deltas(order=2, width=width)(torch.from_numpy(S)[None])[0].numpy()
        assert out.shape == (3, *S.shape)
        np.testing.assert_array_equal(out[0], S)
        for k in (1, 2):
            ref = librosa.feature.delta(S.astype(np.float64), width=width, order=k, mode="interp")
            np.testing.assert_allclose(out[k], ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_deltas_reject_short_input_and_bad_width():
    with pytest.raises(ValueError, match="at least 9 frames"):
        Deltas(order=1, width=9)(torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match="odd width"):
        Deltas(order=1, width=4)


@pytest.mark.parametrize("backend", ["torch", "librosa"])
def test_frontend_log_pcen_is_librosa_pcen_of_librosa_mel(backend):
    from audiocnn.features import build_frontend

    sr, hop = 16000, 160
    y = _tone(sr, 2.0)
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=hop, n_mels=40, power=1.0, center=True,
                                       pad_mode="constant", htk=False, norm="slaney")
    ref = librosa.pcen(S * PCEN_INPUT_SCALE, sr=sr, hop_length=hop)
    fe = build_frontend(sample_rate=sr, kind="logmel", backend=backend, n_fft=512, hop_length=hop, n_mels=40,
                        power=1.0, log="pcen")
    out = fe(torch.from_numpy(y)[None])[0].numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())


def test_frontend_log_pcen_trains_from_a_recipe(tmp_path):
    from pathlib import Path

    from test_engine import read_metrics, tiny_overrides

    from audiocnn.config import load_config
    from audiocnn.pipelines import train

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    cfg = load_config(recipe, tiny_overrides(tmp_path, "frontend.log=pcen", "frontend.power=1.0",
                                             "trainer.epochs=1", "trainer.report=false"))
    run = train(cfg)
    rows = read_metrics(run)
    assert len(rows) == 1 and np.isfinite(float(rows[0]["train_loss"]))
    assert (run / "checkpoints").is_dir()


def test_frontend_log_unknown_value_names_the_key():
    from audiocnn.core.errors import ConfigError
    from audiocnn.features import build_frontend

    with pytest.raises(ConfigError, match="frontend.log='pcn' is not one of db, log, pcen"):
        build_frontend(sample_rate=16000, log="pcn")


def test_streaming_frame_by_frame_refuses_pcen():
    from audiocnn.core.errors import ConfigError
    from audiocnn.deploy.stream import FrameStream
    from audiocnn.features import FrequencyNorm, build_frontend

    fe = build_frontend(sample_rate=16000, kind="logmel", n_mels=40, log="pcen", power=1.0)
    with pytest.raises(ConfigError, match="frontend.log=pcen .* --recompute"):
        FrameStream(fe, FrequencyNorm(40), window_frames=50)
