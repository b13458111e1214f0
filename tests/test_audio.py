"""audiocnn.audio: decoding, mix-down, resampling and cutting, against analytic references."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiocnn.audio import AudioError, fix_length, load_audio, num_windows, resample, sliding_windows

SR = 16000


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _can_write_mp3() -> bool:
    return "MP3" in sf.available_formats()


@pytest.mark.parametrize(
    "fmt, subtype, ext, atol",
    [
        ("WAV", "PCM_16", "wav", 1 / 32768 + 1e-6),
        ("WAV", "FLOAT", "wav", 0.0),
        ("FLAC", "PCM_24", "flac", 1 / 2 ** 23 + 1e-7),
        ("OGG", "VORBIS", "ogg", None),
        pytest.param("MP3", "MPEG_LAYER_III", "mp3", None, marks=pytest.mark.skipif(
            not _can_write_mp3(), reason="this libsndfile cannot write MP3")),
    ],
)
def test_load_formats(tmp_path, fmt, subtype, ext, atol):
    x = _sine(440, SR, 0.5)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, SR, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    if atol is not None:  # lossless: exact up to quantisation
        assert y.shape == x.shape
        np.testing.assert_allclose(y, x, atol=atol)
    else:  # lossy codecs: about the same length (encoder delay/padding), the same tone and level
        assert abs(len(y) - len(x)) <= 2 * 1152
        seg = y[2000:6000]
        spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        assert np.argmax(spectrum) * SR / len(seg) == pytest.approx(440, abs=SR / len(seg))
        assert np.sqrt(np.mean(seg ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_stereo_mixdown_is_channel_mean(tmp_path):
    left, right = _sine(300, SR, 0.25, 0.5), _sine(700, SR, 0.25, 0.25)
    stereo = np.stack([left, right], axis=1)
    sf.write(tmp_path / "s.wav", stereo, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), stereo.mean(axis=1), atol=1e-7)
    six = np.random.default_rng(0).uniform(-0.5, 0.5, (4000, 6)).astype(np.float32)
    sf.write(tmp_path / "six.wav", six, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "six.wav"), six.mean(axis=1), atol=1e-7)


def test_resample_sine_keeps_frequency_and_amplitude(tmp_path):
    # reference: the same sine generated analytically at 16 kHz
    x = _sine(1000, 44100, 1.0, amp=0.5)
    sf.write(tmp_path / "s44.wav", x, 44100, subtype="FLOAT")
    y = load_audio(tmp_path / "s44.wav", sample_rate=16000)
    ref = _sine(1000, 16000, 1.0, amp=0.5)
    assert y.shape == ref.shape == (16000,)
    mid = slice(800, -800)  # away from the filter's edge transients
    np.testing.assert_allclose(y[mid], ref[mid], atol=2e-4)
    assert np.sqrt(np.mean(y[mid] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    # resample() directly, and the identity
    np.testing.assert_allclose(resample(x, 44100, 16000)[mid], ref[mid], atol=2e-4)
    assert resample(ref, 16000, 16000) is not None and np.array_equal(resample(ref, 16000, 16000), ref)


def test_upsample_length_and_tone():
    x = _sine(500, 8000, 0.5)
    y = resample(x, 8000, 16000)
    ref = _sine(500, 16000, 0.5)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y[400:-400], ref[400:-400], atol=2e-4)


def test_audio_error_format(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as info:
        load_audio(missing)
    e = info.value
    assert e.path == str(missing) and e.reason == "file not found" and str(e) == f"{missing}: file not found"


@pytest.mark.parametrize("n", [3, 10, 11])
@pytest.mark.parametrize("mode", ["random", "center", "start"])
def test_fix_length_crop_and_pad(mode, n):
    x = np.arange(1, n + 1, dtype=np.float32)
    rng = np.random.default_rng(0)
    y = fix_length(x, 6, mode=mode, rng=rng)
    assert y.shape == (6,) and y.dtype == np.float32
    if n >= 6:  # a contiguous piece of x
        start = int(y[0]) - 1
        np.testing.assert_array_equal(y, x[start:start + 6])
        if mode == "start":
            assert start == 0
        if mode == "center":
            assert start == (n - 6) // 2
    else:  # x inside zeros
        nz = np.flatnonzero(y)
        np.testing.assert_array_equal(y[nz], x)
        if mode == "center":
            assert nz[0] == (6 - n) // 2
        if mode == "start":
            assert nz[0] == 0


def test_fix_length_random_is_reproducible_and_needs_rng():
    x = np.arange(1000, dtype=np.float32)
    a = fix_length(x, 100, mode="random", rng=np.random.default_rng(5))
    b = fix_length(x, 100, mode="random", rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    starts = {int(fix_length(x, 100, mode="random", rng=np.random.default_rng(s))[0]) for s in range(20)}
    assert len(starts) > 10
    with pytest.raises(ValueError, match="rng"):
        fix_length(x, 100, mode="random")


@pytest.mark.parametrize(
    "length, win, hop", [(1, 4, 2), (4, 4, 2), (5, 4, 2), (10, 4, 3), (16000, 4000, 2000), (3, 8, 8)]
)
def test_sliding_windows_cover_the_wave(length, win, hop):
    x = np.arange(1, length + 1, dtype=np.float32)
    w = sliding_windows(x, win, hop)
    n = num_windows(length, win, hop)
    assert w.shape == (n, win) and n >= 1
    for i in range(n):  # window i starts at i * hop, zero past the end
        seg = x[i * hop:i * hop + win]
        np.testing.assert_array_equal(w[i, :len(seg)], seg)
        assert not w[i, len(seg):].any()
    covered = set()
    for i in range(n):
        covered.update(v for v in w[i] if v)
    assert covered == set(x.tolist())  # every sample is in some window
    assert (n - 1) * hop < max(length, 1) or n == 1  # no window starts past the end


@pytest.mark.parametrize("fmt,subtype,sr,channels", [("WAV", "PCM_16", 8000, 1), ("FLAC", "PCM_24", 22050, 2),
                                                      ("WAV", "FLOAT", 44100, 3)])
def test_decode_audio_of_bytes_matches_librosa(tmp_path, fmt, subtype, sr, channels):
    import io

    import librosa

    from audiocnn.audio.io import decode_audio

    rng = np.random.default_rng(channels)
    x = (0.3 * rng.standard_normal((int(1.3 * sr), channels))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    data = buf.getvalue()
    for target in (sr, 16000):
        ref, _ = librosa.load(io.BytesIO(data), sr=target, mono=True, res_type="soxr_hq")
        got = decode_audio(data, target)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode_audio(data, 16000), load_audio(path, 16000))  # one decoding path
    with pytest.raises(AudioError, match="more than the limit of 1 s"):
        decode_audio(data, max_duration=1.0)
    with pytest.raises(AudioError, match="upload: empty"):
        decode_audio(b"", name="upload")
