"""Waveform augmentation: each transform against an independent measurement (librosa, scipy, numpy by hand)."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from audiocnn.config import Config, check_ranges
from audiocnn.core.errors import ConfigError
from audiocnn.features.wave_augment import (AddNoise, PitchShift, RandomEQ, RandomGain, Reverb, SpeedPerturb,
                                            TimeShift, TimeStretch, WaveAugment, biquad_filter, peaking_biquad)
from audiocnn.modalities.audio import AudioModality

SR = 16000


def _tone(freq: float, seconds: float = 1.0, start: float = 0.0, stop: float | None = None) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    on = (t >= start) & (t < (seconds if stop is None else stop))
    return (0.5 * np.sin(2 * np.pi * freq * t) * on).astype(np.float32)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_scales_pitch_by_factor_measured_by_yin(factor):
    aug = SpeedPerturb(prob=1.0, low=factor, high=factor, steps=1).train()
    out = aug(torch.from_numpy(_tone(220.0))[None]).numpy()[0]
    valid = out[: int(0.8 * SR)]  # a sped-up clip is zero-padded at the end
    f0 = np.median(librosa.yin(valid, fmin=100, fmax=400, sr=SR, frame_length=2048))
    assert f0 == pytest.approx(220.0 * factor, rel=0.005)
    assert aug.drawn["factor"].tolist() == pytest.approx([factor])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_scales_burst_duration_by_inverse_factor(factor):
    burst = _tone(500.0, start=0.1, stop=0.4)  # 0.3 s
    aug = SpeedPerturb(prob=1.0, low=factor, high=factor, steps=1).train()
    out = aug(torch.from_numpy(burst)[None]).numpy()[0]
    envelope = np.abs(scipy.signal.hilbert(out))
    loud = np.nonzero(envelope > 0.25)[0]
    assert (loud[-1] - loud[0]) / SR == pytest.approx(0.3 / factor, abs=0.003)
    assert loud[0] / SR == pytest.approx(0.1 / factor, abs=0.003)


def _pitch(wave: np.ndarray) -> float:
    return float(np.median(librosa.yin(wave, fmin=100, fmax=400, sr=SR, frame_length=2048)))


def _burst(wave: np.ndarray) -> tuple[float, float]:
    """Start and length, seconds, of where the Hilbert envelope is above half the tone's amplitude."""
    loud = np.nonzero(np.abs(scipy.signal.hilbert(wave)) > 0.25)[0]
    return loud[0] / SR, (loud[-1] - loud[0]) / SR


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_stretch_scales_duration_and_keeps_pitch(factor):
    aug = TimeStretch(prob=1.0, low=factor, high=factor, steps=1).train()
    out = aug(torch.from_numpy(_tone(220.0, start=0.1, stop=0.6))[None]).numpy()[0]
    start, length = _burst(out)
    assert length == pytest.approx(0.5 / factor, abs=0.01)
    assert start == pytest.approx(0.1 / factor, abs=0.01)
    steady = out[int((start + 0.05) * SR): int((start + length - 0.05) * SR)]
    assert _pitch(steady) == pytest.approx(220.0, rel=0.005)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_pitch_shift_scales_pitch_and_keeps_duration(factor):
    aug = PitchShift(prob=1.0, low=factor, high=factor, steps=1).train()
    out = aug(torch.from_numpy(_tone(220.0, start=0.1, stop=0.6))[None]).numpy()[0]
    start, length = _burst(out)
    assert (start, length) == (pytest.approx(0.1, abs=0.01), pytest.approx(0.5, abs=0.01))
    assert _pitch(out[int(0.15 * SR): int(0.55 * SR)]) == pytest.approx(220.0 * factor, rel=0.005)


def test_speed_groups_the_batch_by_factor():
    aug = SpeedPerturb(prob=1.0).train()
    assert aug.factors == [0.9, 1.0, 1.1]
    wave = torch.from_numpy(np.stack([_tone(220.0)] * 6))
    torch.manual_seed(3)
    out = aug(wave)
    assert sorted({round(f, 2) for f in aug.drawn["factor"].tolist()}) == [0.9, 1.0, 1.1]
    for row, f in zip(out.numpy(), aug.drawn["factor"].tolist()):
        f0 = np.median(librosa.yin(row[: int(0.8 * SR)], fmin=100, fmax=400, sr=SR, frame_length=2048))
        assert f0 == pytest.approx(220.0 * f, rel=0.005)


def test_noise_realised_snr_matches_drawn(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(tmp_path / f"n{i}.wav", rng.standard_normal(SR // 3).astype(np.float32) * 0.1, SR)
    clean = torch.from_numpy(np.stack([_tone(300.0 + 100 * i) for i in range(4)]))
    for aug in (AddNoise(sample_rate=SR, prob=1.0, snr_low=-5, snr_high=30, noise_dir=str(tmp_path)),
                AddNoise(sample_rate=SR, prob=1.0, snr_low=-5, snr_high=30)):
        out = aug.train()(clean).numpy().astype(np.float64)
        c = clean.numpy().astype(np.float64)
        realised = 10 * np.log10((c ** 2).sum(1) / ((out - c) ** 2).sum(1))
        np.testing.assert_allclose(realised, aug.drawn["snr_db"].numpy(), atol=0.1)
        assert ((aug.drawn["snr_db"] >= -5) & (aug.drawn["snr_db"] <= 30)).all()


def test_noise_dir_missing_or_empty_names_the_key(tmp_path):
    x = torch.randn(2, 1000)
    for folder in (tmp_path / "absent", tmp_path):
        aug = AddNoise(sample_rate=SR, prob=1.0, noise_dir=str(folder))
        assert torch.equal(aug.eval()(x), x)  # a trained model still loads and runs without the folder
        with pytest.raises(ConfigError, match="augment.noise_dir"):
            aug.train()(x)
    with pytest.raises(ConfigError, match="augment.rir_dir"):
        Reverb(sample_rate=SR, prob=1.0, rir_dir=str(tmp_path)).train()(x)


def test_reverb_from_folder_is_the_files_convolution(tmp_path):
    h = np.zeros(400, dtype=np.float32)
    h[[0, 150, 399]] = [1.0, 0.5, -0.25]
    sf.write(tmp_path / "room.wav", h, SR)
    x = torch.randn(2, 2000)
    out = Reverb(sample_rate=SR, prob=1.0, rir_dir=str(tmp_path)).train()(x).numpy()
    for row, xs in zip(out, x.numpy().astype(np.float64)):
        wet = np.convolve(xs, h.astype(np.float64))[:2000]
        np.testing.assert_allclose(row, wet * np.sqrt((xs ** 2).mean() / (wet ** 2).mean()), atol=1e-4)


def _rbj_peaking(f0: float, gain_db: float, q: float, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """The Audio EQ Cookbook's peaking EQ, written out in NumPy."""
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / fs
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a_, -2 * np.cos(w0), 1 - alpha * a_])
    a = np.array([1 + alpha / a_, -2 * np.cos(w0), 1 - alpha / a_])
    return b, a


def test_eq_frequency_response_and_output_match_scipy():
    bands = [(250.0, 6.0, 0.7), (2000.0, -9.0, 2.0)]
    b, a = peaking_biquad(*(torch.tensor([[v[i] for v in bands]], dtype=torch.float64) for i in range(3)), SR)
    n = 8192
    impulse = torch.zeros(1, n)
    impulse[0, 0] = 1
    measured = np.fft.rfft(biquad_filter(impulse, b, a).numpy()[0].astype(np.float64))
    expected = np.ones(n // 2 + 1, dtype=complex)
    for f0, g, q in bands:
        bb, aa = _rbj_peaking(f0, g, q, SR)
        expected *= scipy.signal.freqz(bb, aa, worN=n // 2 + 1, include_nyquist=True)[1]
    np.testing.assert_allclose(20 * np.log10(np.abs(measured)), 20 * np.log10(np.abs(expected)), atol=0.01)
    # peak gains land where the cookbook puts them
    k = int(round(250.0 * n / SR))
    assert 20 * np.log10(abs(expected[k])) == pytest.approx(6.0, abs=0.3)

    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    ref = x.astype(np.float64)
    for f0, g, q in bands:
        ref = scipy.signal.lfilter(*_rbj_peaking(f0, g, q, SR), ref)
    got = biquad_filter(torch.from_numpy(x)[None], b, a).numpy()[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_random_eq_applies_drawn_bands():
    x = torch.randn(3, 4000)
    aug = RandomEQ(sample_rate=SR, prob=1.0, bands=3, gain_db=12.0).train()
    out = aug(x).numpy().astype(np.float64)
    d = aug.drawn
    for row in range(3):
        ref = x[row].numpy().astype(np.float64)
        for f0, g, q in zip(d["f0"][row].tolist(), d["gain_db"][row].tolist(), d["q"][row].tolist()):
            assert 100 <= f0 <= 6000 and -12 <= g <= 12 and 0.5 <= q <= 2.0
            ref = scipy.signal.lfilter(*_rbj_peaking(f0, g, q, SR), ref)
        np.testing.assert_allclose(out[row], ref, atol=1e-4)


def _schroeder_rt60(h: np.ndarray, fs: int) -> float:
    """T20 from the Schroeder backward-integrated energy decay curve, extrapolated to 60 dB."""
    edc = np.cumsum((h.astype(np.float64) ** 2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    idx = np.nonzero((edc_db <= -5) & (edc_db >= -25))[0]
    slope = np.polyfit(idx / fs, edc_db[idx], 1)[0]
    return -60.0 / slope


def test_reverb_rt60_by_schroeder_and_energy_kept():
    torch.manual_seed(0)
    aug = Reverb(sample_rate=SR, prob=1.0, rt60_low=0.2, rt60_high=1.0).train()
    x = torch.randn(4, SR) * 0.1
    out = aug(x)
    for h, rt60 in zip(aug.drawn["rir"].numpy(), aug.drawn["rt60"].tolist()):
        assert 0.2 <= rt60 <= 1.0
        assert _schroeder_rt60(h, SR) == pytest.approx(rt60, rel=0.10)
    np.testing.assert_allclose(out.pow(2).mean(1).numpy(), x.pow(2).mean(1).numpy(), rtol=1e-3)
    # the wet signal is the linear convolution, cut to the input length
    h, xs = aug.drawn["rir"][0].numpy().astype(np.float64), x[0].numpy().astype(np.float64)
    wet = scipy.signal.fftconvolve(xs, h)[:SR]
    wet *= np.sqrt((xs ** 2).mean() / (wet ** 2).mean())
    np.testing.assert_allclose(out[0].numpy(), wet, atol=1e-4)


def test_shift_is_exact():
    x = torch.arange(1, 101, dtype=torch.float32).repeat(3, 1)
    aug = TimeShift(sample_rate=1000, prob=1.0, max_s=0.01).train()
    out = aug(x).numpy()
    for row, s in zip(out, aug.drawn["shift"].tolist()):
        assert abs(s) <= 10
        expected = np.zeros(100, dtype=np.float32)
        if s >= 0:
            expected[s:] = np.arange(1, 101 - s)
        else:
            expected[:100 + s] = np.arange(1 - s, 101)
        np.testing.assert_array_equal(row, expected)


def test_gain_is_exact_in_db():
    x = torch.full((5, 100), 0.1)
    aug = RandomGain(gain_db=6.0).train()
    out = aug(x)
    measured = 20 * np.log10(out.numpy()[:, 0] / 0.1)
    np.testing.assert_allclose(measured, aug.drawn["gain_db"].numpy(), atol=1e-4)
    assert (np.abs(measured) <= 6.0 + 1e-4).all()


def _all_on(**over) -> WaveAugment:
    cfg = Config()
    cfg.data.sample_rate = SR
    for k, v in dict(speed_prob=1.0, stretch_prob=1.0, pitch_prob=1.0, shift_prob=1.0, gain_db=3.0, eq_prob=1.0, reverb_prob=1.0, noise_prob=1.0,
                     **over).items():
        setattr(cfg.augment, k, v)
    check_ranges(cfg)
    return AudioModality().input_parts(cfg).wave_augment


def test_builder_order_and_eval_identity():
    aug = _all_on()
    assert [type(t).__name__ for t in aug.transforms] == ["SpeedPerturb", "TimeStretch", "PitchShift", "TimeShift",
                                                          "RandomGain", "RandomEQ", "Reverb", "AddNoise"]
    x = torch.randn(2, 4000)
    assert torch.equal(aug.eval()(x), x)
    for t in aug.transforms:
        assert torch.equal(t.eval()(x), x)
    parts = AudioModality().input_parts(Config())
    assert parts.wave_augment is parts.augment is parts.warp is parts.mixup is None  # every switch off: none built


def test_same_seed_same_augmentation():
    aug = _all_on().train()
    x = torch.randn(4, 4000)

    def seeded(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return aug(x)

    a, b, c = seeded(7), seeded(7), seeded(8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_out_of_range_keys_name_the_key():
    with pytest.raises(ConfigError, match="augment.speed_low"):
        _all_on(speed_low=0.3)
    with pytest.raises(ConfigError, match="augment.noise_snr_low"):
        _all_on(noise_snr_low=30.0, noise_snr_high=10.0)
    with pytest.raises(ConfigError, match="augment.eq_f_max"):
        _all_on(eq_f_max=9000.0)


def test_float32_under_autocast():
    aug = _all_on().train()
    x = torch.randn(3, 4000)
    torch.manual_seed(5)
    plain = aug(x)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = aug(x)
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, plain)


# --- VTLP: the mel filters on a warped frequency axis --------------------------------------------------------------

def test_vtlp_bank_at_alpha_one_is_librosas_and_the_warp_maps_the_band_onto_itself():
    from audiocnn.features.vtlp import vtlp_warp, warped_mel_filters

    for norm, htk in (("slaney", False), (None, True)):
        ref = librosa.filters.mel(sr=SR, n_fft=512, n_mels=40, fmin=20.0, fmax=7600.0, htk=htk, norm=norm)
        got = warped_mel_filters(sr=SR, n_fft=512, n_mels=40, fmin=20.0, fmax=7600.0, htk=htk, norm=norm, alpha=1.0)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-8)
    for alpha in (0.9, 1.1):
        f = np.linspace(0, SR / 2, 2001)
        w = vtlp_warp(f, alpha, nyquist=SR / 2)
        assert w[0] == 0 and w[-1] == pytest.approx(SR / 2) and np.all(np.diff(w) > 0)  # onto, increasing
        low = f < 0.8 * (SR / 2) * min(alpha, 1) / alpha
        np.testing.assert_allclose(w[low], alpha * f[low])


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_a_tone_to_the_bands_of_alpha_times_its_frequency(alpha):
    """The warped features of a 1 kHz tone against librosa's mel spectrogram of a tone at alpha kHz."""
    from audiocnn.features import build_frontend
    from audiocnn.features.vtlp import VTLP

    fe = build_frontend(sample_rate=SR, kind="mel", n_fft=1024, hop_length=256, n_mels=64)
    vtlp = VTLP(fe, prob=1.0, low=alpha, high=alpha, steps=1).train()
    got = vtlp(torch.from_numpy(_tone(1000.0))[None], fe)[0].numpy().mean(axis=1)
    ref = librosa.feature.melspectrogram(y=_tone(1000.0 * alpha), sr=SR, n_fft=1024, hop_length=256, n_mels=64,
                                         pad_mode="constant").mean(axis=1)
    plain = librosa.feature.melspectrogram(y=_tone(1000.0), sr=SR, n_fft=1024, hop_length=256, n_mels=64,
                                           pad_mode="constant").mean(axis=1)
    assert int(np.argmax(got)) == int(np.argmax(ref)) != int(np.argmax(plain))
    cosine = got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref))
    assert cosine > 0.98
    assert vtlp.drawn["alpha"].tolist() == pytest.approx([alpha])


def test_vtlp_is_the_front_end_in_eval_mode_and_for_untouched_examples():
    from audiocnn.features import build_frontend
    from audiocnn.features.vtlp import VTLP

    fe = build_frontend(sample_rate=SR, kind="logmel", n_mels=40)
    wave = torch.from_numpy(np.stack([_tone(500.0), _tone(2000.0)]))
    vtlp = VTLP(fe, prob=0.5, low=0.9, high=1.1, steps=3)
    torch.testing.assert_close(vtlp.eval()(wave, fe), fe(wave))
    torch.manual_seed(3)
    out = vtlp.train()(wave, fe)
    kept = vtlp.drawn["alpha"] == 1.0
    assert kept.any() and not kept.all()  # seed 3: one example of each
    torch.testing.assert_close(out[kept], fe(wave)[kept], rtol=1e-4, atol=1e-3)
    assert not torch.allclose(out[~kept], fe(wave)[~kept], atol=1e-1)


def test_vtlp_needs_the_torch_backend_and_a_mel_kind():
    from audiocnn.features import build_frontend
    from audiocnn.features.vtlp import VTLP

    with pytest.raises(ConfigError, match="augment.vtlp_prob .* backend=librosa, kind=logmel"):
        VTLP(build_frontend(sample_rate=SR, backend="librosa"), prob=0.5)
    with pytest.raises(ConfigError, match="kind=stft"):
        VTLP(build_frontend(sample_rate=SR, kind="stft"), prob=0.5)


def test_eq_default_range_follows_the_sample_rate():
    assert RandomEQ(sample_rate=8000, prob=1.0).f_max == 3000.0  # 0.75 x Nyquist, below 6000 Hz
    assert RandomEQ(sample_rate=44100, prob=1.0).f_max == 6000.0
    assert RandomEQ(sample_rate=8000, prob=1.0, f_max=3500.0).f_max == 3500.0
