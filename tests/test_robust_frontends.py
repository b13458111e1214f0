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


def test_utterance_norm_is_each_rows_own_standardisation():
    from audiocnn.features import UtteranceNorm

    x = np.random.default_rng(3).standard_normal((2, 5, 40)) * [[[1.0], [3.0], [0.1], [10.0], [2.0]]] + 7.0
    ref = (x - x.mean(axis=-1, keepdims=True)) / x.std(axis=-1, keepdims=True)
    out = UtteranceNorm(5)(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_per_utterance_removes_a_fixed_channel_and_a_gain():
    """A microphone's response is a fixed offset of each log-mel row, a gain one offset of all: CMVN sees neither."""
    import scipy.signal

    from audiocnn.features import UtteranceNorm, build_frontend

    y = _tone(16000, 2.0) + 0.05 * np.random.default_rng(4).standard_normal(32000).astype(np.float32)
    b, a = scipy.signal.butter(2, 2000, btype="low", fs=16000)  # a dull microphone, then 12 dB louder
    coloured = (4.0 * scipy.signal.lfilter(b, a, y)).astype(np.float32)
    fe = build_frontend(sample_rate=16000, kind="logmel", n_mels=24, f_max=1500.0, log="log")
    norm = UtteranceNorm(24)
    plain, heard = (fe(torch.from_numpy(w)[None]) for w in (y, coloured))
    assert (heard - plain).abs().mean() > 2.5  # the log-mels differ by ~ln 16 ...
    assert (norm(heard) - norm(plain)).abs().mean() < 0.02  # ... their CMVN (the filter's start-up transient)


def _deltas_cfg(tmp_path, *extra):
    from pathlib import Path

    from test_engine import tiny_overrides

    from audiocnn.config import load_config

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    return load_config(recipe, tiny_overrides(tmp_path, *extra))


@pytest.mark.parametrize("model", ["cnn_tiny", "tcn"])
def test_frontend_deltas_are_librosa_deltas_of_the_normalised_spectrogram(tmp_path, model):
    from audiocnn.build import build_classifier

    cfg = _deltas_cfg(tmp_path, "frontend.deltas=2", "frontend.normalize=per_utterance", f"model.name={model}")
    if model == "tcn":
        cfg.model.args = {"channels": [8, 8]}
    clf = build_classifier(cfg, ["a", "b", "c", "d"]).eval()
    wave = torch.from_numpy(_tone(8000, 0.5))[None]
    spec = clf.spectrogram(wave)[0].numpy()
    x = clf.network_input(wave)[0].detach().numpy()
    n = spec.shape[0]
    maps = x if model == "cnn_tiny" else x.reshape(3, n, -1)  # 1-D: the three maps' rows one after another
    assert maps.shape == (3, *spec.shape)
    np.testing.assert_allclose(maps[0], spec)
    for k in (1, 2):
        ref = librosa.feature.delta(spec, width=9, order=k, mode="interp")
        np.testing.assert_allclose(maps[k], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    assert clf(wave).shape == (1, 4)


def test_a_recipe_trains_and_evaluates_with_per_utterance_and_deltas(tmp_path):
    from test_engine import read_metrics

    from audiocnn.evaluation.evaluate import evaluate_run
    from audiocnn.pipelines import train

    run = train(_deltas_cfg(tmp_path, "frontend.deltas=1", "frontend.normalize=per_utterance", "trainer.epochs=1",
                            "trainer.report=false"), quiet=True)
    assert np.isfinite(float(read_metrics(run)[0]["train_loss"]))
    assert "accuracy" in evaluate_run(run, quiet=True)


@pytest.mark.parametrize("extra, message", [
    (("frontend.deltas=3",), "frontend.deltas"),
    (("frontend.deltas=1", "frontend.delta_width=4"), "frontend.delta_width"),
    (("frontend.deltas=1", "frontend.delta_width=99"), "frontend.delta_width=99 frames, but a 0.5 s crop has"),
    (("frontend.deltas=2", "model.args.in_chans=1"), "model.args.in_chans=1, but frontend.deltas gives 3"),
])
def test_delta_settings_that_cannot_work_name_the_key(tmp_path, extra, message):
    from audiocnn.build import build_classifier
    from audiocnn.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_classifier(_deltas_cfg(tmp_path, *extra), ["a", "b"])


def test_streaming_frame_by_frame_refuses_per_utterance():
    from audiocnn.core.errors import ConfigError
    from audiocnn.deploy.stream import FrameStream
    from audiocnn.features import UtteranceNorm, build_frontend

    with pytest.raises(ConfigError, match="per_utterance .* --recompute"):
        FrameStream(build_frontend(sample_rate=16000, n_mels=40), UtteranceNorm(40), window_frames=50)
