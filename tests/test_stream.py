"""``audiocnn stream``: incremental tcn/wavenet against their full forward passes, the hop schedule against
predict's windows, the byte-stream readers against soundfile, the command's output and its one-line errors."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import soundfile as sf
import torch

from audiocnn.audio import sliding_windows
from audiocnn.audio.io import AudioError, resample
from audiocnn.build import build_classifier
from audiocnn.cli import main
from audiocnn.config import config_from_dict
from audiocnn.core.errors import ModelError
from audiocnn.deploy.sources import PcmFormat, pcm_blocks, raw_format, read_wav_header, resampled
from audiocnn.deploy.stream import CausalEngine, CausalNetStream, FrameStream, SampleRing, Streamer, WindowEngine
from audiocnn.evaluation.predict import predict_files
from audiocnn.features import build_frontend

ROOT = Path(__file__).resolve().parents[1]
SR = 8000
WINDOW = 2000  # data.duration 0.25 s
FE = {"kind": "logmel", "backend": "torch", "n_fft": 64, "hop_length": 16, "n_mels": 8, "f_min": 0, "f_max": 4000,
      "center": True, "pad_mode": "constant", "top_db": None}
ATOL = 1e-5


def classifier(name: str, args: dict, frontend: dict | None = None, seed: int = 0):
    """A random-weight eval-mode classifier with a random fitted normaliser, on 0.25 s windows at 8 kHz."""
    cfg = config_from_dict({"data": {"sample_rate": SR, "duration": WINDOW / SR}, "frontend": {**FE, **(frontend or {})},
                            "model": {"name": name, "args": args}})
    torch.manual_seed(seed)
    model = build_classifier(cfg, labels=["a", "b", "c", "d"]).eval()
    with torch.no_grad():
        model.norm.mean.normal_(0.0, 5.0)
        model.norm.std.uniform_(0.5, 4.0)
    return model


def random_args(name: str, rng: np.random.Generator) -> dict:
    """A small random tcn/wavenet configuration (dropout on: it must be the identity in eval mode)."""
    if name == "tcn":
        return {"channels": [int(c) for c in rng.integers(3, 9, rng.integers(2, 4))],
                "kernel_size": int(rng.integers(2, 5)), "block_drop": 0.3, "drop_rate": 0.2}
    return {"stacks": int(rng.integers(1, 3)), "layers": int(rng.integers(2, 4)), "residual_chans": int(rng.integers(3, 8)),
            "skip_chans": int(rng.integers(3, 8)), "out_chans": int(rng.integers(3, 8)),
            "kernel_size": int(rng.integers(2, 4)), "input_kernel_size": int(rng.integers(1, 4)), "block_drop": 0.3,
            "drop_rate": 0.2}


def chunks(x, rng, high: int):
    """``x`` cut at random points into pieces of 1 to ``high`` along the last axis."""
    i = 0
    while i < x.shape[-1]:
        n = int(rng.integers(1, high + 1))
        yield x[..., i:i + n]
        i += n


# ---------------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["tcn", "wavenet"])
def test_network_frame_by_frame_equals_full_forward(name, seed):
    rng = np.random.default_rng(seed)
    net = classifier(name, random_args(name, rng), seed=seed).network
    x = torch.randn(1, net.in_chans, 160)
    stream = CausalNetStream(net)
    with torch.no_grad():
        full = net.forward_features(x)
        parts = torch.cat([stream.step(c) for c in chunks(x, rng, 40)], dim=-1)
    assert net.receptive_field > 8 and full.shape == parts.shape
    torch.testing.assert_close(parts, full, rtol=0, atol=ATOL)


def test_network_one_frame_at_a_time_past_the_receptive_field():
    net = classifier("tcn", {"channels": [4, 4, 4], "kernel_size": 3}).network  # receptive field 29
    x = torch.randn(1, net.in_chans, 3 * net.receptive_field)
    stream = CausalNetStream(net)
    with torch.no_grad():
        parts = torch.cat([stream.step(x[..., t:t + 1]) for t in range(x.shape[-1])], dim=-1)
        torch.testing.assert_close(parts, net.forward_features(x), rtol=0, atol=ATOL)


def test_a_window_model_is_refused_by_the_incremental_engine():
    with pytest.raises(ModelError, match="--recompute"):
        CausalNetStream(classifier("cnn_tiny", {}).network)


# ---------------------------------------------------------------------------------------------- front-end


@pytest.mark.parametrize("frontend", [
    {},                                                     # logmel, centred with zeros
    {"pad_mode": "reflect"},                                # the left padding needs the first samples
    {"center": False},
    {"kind": "mfcc", "n_mfcc": 6, "win_length": 48},
    {"kind": "stft", "n_fft": 32, "hop_length": 8},
    {"kind": "waveform"},
])
def test_frames_one_hop_at_a_time_equal_the_full_front_end(frontend):
    rng = np.random.default_rng(3)
    model = classifier("tcn", {"channels": [4, 4]}, frontend)
    wave = torch.from_numpy(rng.standard_normal(3000).astype(np.float32) * 0.3)
    fs = FrameStream(model.frontend, model.norm, window_frames=model.frontend.num_frames(WINDOW))
    with torch.no_grad():
        parts = torch.cat([fs.push(c) for c in chunks(wave, rng, 300)], dim=-1)
        full = model.spectrogram(wave[None])[0]
    s = model.frontend.settings
    pad = s.n_fft // 2 if s.center else 0
    expected = len(wave) if s.kind == "waveform" else (len(wave) + pad - s.n_fft) // s.hop_length + 1
    assert parts.shape[-1] == expected and full.shape[-1] >= expected
    torch.testing.assert_close(parts, full[:, :expected], rtol=1e-5, atol=ATOL)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_top_db_clips_each_frame_at_the_maximum_of_the_last_window_of_frames(kind):
    rng = np.random.default_rng(4)
    frontend = {"kind": kind, "top_db": 25.0, "n_mfcc": 6}
    model = classifier("tcn", {"channels": [4, 4]}, frontend)
    gain = np.repeat(10.0 ** rng.uniform(-4, 0, 12), 250)  # loud and very quiet stretches: clipping happens
    wave = (rng.standard_normal(3000) * gain).astype(np.float32)
    F = model.frontend.num_frames(WINDOW)
    fs = FrameStream(model.frontend, model.norm, window_frames=F)
    with torch.no_grad():
        parts = torch.cat([fs.push(c) for c in chunks(torch.from_numpy(wave), rng, 300)], dim=-1).numpy()
    # reference: the unclipped dB mel frames of the whole stream, clipped by hand, DCT by scipy, normalised
    unclipped = build_frontend(sample_rate=SR, **{**FE, "kind": "logmel"})(torch.from_numpy(wave)[None])[0].numpy()
    n = parts.shape[-1]
    peaks = unclipped.max(axis=0)
    ref = np.array([peaks[max(0, j - F + 1):j + 1].max() for j in range(n)])
    clipped = np.maximum(unclipped[:, :n], ref - 25.0)
    assert (clipped > unclipped[:, :n]).mean() > 0.05
    if kind == "mfcc":
        clipped = scipy.fft.dct(clipped, type=2, norm="ortho", axis=0)[:6]
    mean, std = model.norm.mean.numpy()[:, None], model.norm.std.numpy()[:, None]
    np.testing.assert_allclose(parts, (clipped - mean) / std, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- per hop


@pytest.mark.parametrize("name,args", [
    ("tcn", {"channels": [5, 6, 4], "kernel_size": 3}),
    ("tcn", {"channels": [5, 4], "kernel_size": 2, "global_pool": "max"}),
    ("wavenet", {"stacks": 2, "layers": 3, "residual_chans": 5, "skip_chans": 6, "out_chans": 4,
                 "input_kernel_size": 2}),
    ("wavenet", {"stacks": 1, "layers": 3, "residual_chans": 5, "skip_chans": 6, "out_chans": 4,
                 "global_pool": "avgmax"}),
])
def test_per_hop_outputs_equal_the_full_model_on_the_window_of_frames(name, args):
    """Each hop = the head over the last F frames of forward_features over the whole stream so far."""
    rng = np.random.default_rng(5)
    model = classifier(name, args)
    wave = (rng.standard_normal(7100) * 0.3).astype(np.float32)
    hop = 400
    streamer = Streamer(CausalEngine(model, window=WINDOW), "multiclass", sample_rate=SR, window=WINDOW, hop=hop)
    hops = [h for c in chunks(wave, rng, 900) for h in streamer.push(c)] + streamer.finish()
    ends = [WINDOW + i * hop for i in range(len(sliding_windows(wave, WINDOW, hop)))]
    assert [round(h.time * SR) for h in hops] == ends
    stream = torch.from_numpy(np.concatenate([wave, np.zeros(streamer.padded, np.float32)]))
    F, P, H, n_fft = model.frontend.num_frames(WINDOW), 32, 16, 64
    with torch.no_grad():
        feats = model.network.forward_features(model.spectrogram(stream[None]))
        for h, t in zip(hops, ends):
            j = (t + P - n_fft) // H + 1
            expected = model.network.forward_head(feats[..., max(0, j - F):j]).softmax(-1)[0].numpy()
            np.testing.assert_allclose(h.probs, expected, rtol=0, atol=ATOL)


class _Recorder:
    """An engine that keeps the window it would label at every output."""

    name = "recorder"

    def __init__(self, window):
        self.ring, self.windows = SampleRing(window), []

    def step(self, samples):
        self.ring.write(samples)

    def logits(self):
        self.windows.append(self.ring.window())
        return torch.zeros(1, 2)


@pytest.mark.parametrize("length", [1, 1500, WINDOW, WINDOW + 3 * 300, WINDOW + 3 * 300 + 7, 9001])
def test_ring_buffer_windows_are_predicts_windows(length):
    rng = np.random.default_rng(length)
    wave = rng.standard_normal(length).astype(np.float32)
    rec = _Recorder(WINDOW)
    streamer = Streamer(rec, "multiclass", sample_rate=SR, window=WINDOW, hop=300)
    for c in chunks(wave, rng, 2500):  # pieces larger than the ring too
        streamer.push(c)
    streamer.finish()
    expected = sliding_windows(wave, WINDOW, 300)
    assert len(rec.windows) == len(expected)
    np.testing.assert_array_equal(np.stack(rec.windows), expected)


def test_window_engine_outputs_are_the_models_on_predicts_windows():
    rng = np.random.default_rng(6)
    model = classifier("cnn_tiny", {})
    wave = (rng.standard_normal(5000) * 0.3).astype(np.float32)
    streamer = Streamer(WindowEngine(model, window=WINDOW), "multiclass", sample_rate=SR, window=WINDOW, hop=700)
    hops = streamer.push(wave) + streamer.finish()
    with torch.no_grad():
        expected = model(torch.from_numpy(sliding_windows(wave, WINDOW, 700))).softmax(-1).numpy()
    np.testing.assert_allclose(np.stack([h.probs for h in hops]), expected, rtol=0, atol=1e-6)
    s = streamer.summary()
    assert s["hops"] == len(expected) and s["audio_s"] == 5000 / SR and s["rtf"] > 0
    assert s["p50_ms"] <= s["p99_ms"]


# ---------------------------------------------------------------------------------------------- byte streams


class Trickle(io.RawIOBase):
    """A non-seekable pipe handing out at most ``n`` bytes per read."""

    def __init__(self, data: bytes, n: int = 7):
        self.data, self.n, self.pos = data, n, 0

    def readable(self):
        return True

    def read1(self, size=-1):
        out = self.data[self.pos:self.pos + min(self.n, size if size >= 0 else self.n)]
        self.pos += len(out)
        return out

    def read(self, size=-1):
        return self.read1(size)


def wav_bytes(wave: np.ndarray, sr: int, subtype: str, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


def read_stream(data: bytes, n: int = 7) -> tuple[PcmFormat, np.ndarray]:
    f = Trickle(data, n)
    fmt, limit = read_wav_header(f)
    return fmt, np.concatenate(list(pcm_blocks(f, fmt, limit=limit)))


@pytest.mark.parametrize("subtype,fmt,channels", [("PCM_16", "WAV", 1), ("PCM_24", "WAV", 1), ("PCM_32", "WAV", 2),
                                                  ("PCM_U8", "WAV", 1), ("FLOAT", "WAV", 1), ("DOUBLE", "WAV", 2),
                                                  ("PCM_16", "WAVEX", 3)])
def test_wav_from_a_pipe_decodes_as_soundfile_does(subtype, fmt, channels):
    rng = np.random.default_rng(7)
    wave = rng.uniform(-0.9, 0.9, (1234, channels)).astype(np.float32)
    data = wav_bytes(wave, 11025, subtype, fmt)
    got_fmt, got = read_stream(data)
    ref, ref_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert got_fmt.sample_rate == ref_sr == 11025 and got_fmt.channels == channels
    np.testing.assert_allclose(got, ref.mean(axis=1), rtol=0, atol=1e-6)


def test_wav_without_a_length_is_read_to_the_end():
    wave = np.linspace(-0.5, 0.5, 999, dtype=np.float32)
    data = bytearray(wav_bytes(wave, SR, "PCM_16"))
    pos = data.index(b"data")
    data[pos + 4:pos + 8] = b"\xff\xff\xff\xff"  # what a writer that cannot seek back leaves
    _, got = read_stream(bytes(data) + b"\x00\x00" * 5)
    assert len(got) == 999 + 5


@pytest.mark.parametrize("data,phrase", [(b"", r"no data \(0 bytes\)"), (b"\x13\x37garbage bytes" * 9, "not a WAV stream"),
                                         (b"RIFF\x00\x00\x00\x00WAVEfmt ", "truncated WAV header"),
                                         (b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00", "before any fmt chunk")])
def test_bad_wav_streams_are_audio_errors(data, phrase):
    with pytest.raises(AudioError, match=phrase) as e:
        read_stream(data)
    assert e.value.path == "stdin"


def test_wav_header_without_samples_and_nan_samples():
    with pytest.raises(AudioError, match="no audio samples"):
        read_stream(wav_bytes(np.zeros(1, np.float32), SR, "PCM_16")[:-2])
    bad = np.zeros(800, np.float32)
    bad[400] = np.nan
    with pytest.raises(AudioError, match="0.050 s"):
        read_stream(wav_bytes(bad, SR, "FLOAT"))


def test_raw_pcm_and_its_trailing_partial_sample():
    rng = np.random.default_rng(8)
    ints = rng.integers(-32768, 32767, 501).astype("<i2")
    warnings = []
    got = np.concatenate(list(pcm_blocks(Trickle(ints.tobytes() + b"\x01", 5), raw_format("s16le", SR),
                                         warn=warnings.append)))
    np.testing.assert_array_equal(got, ints.astype(np.float32) / 32768)
    assert warnings and "1 byte(s)" in warnings[0]
    floats = rng.uniform(-1, 1, 77).astype("<f4")
    got = np.concatenate(list(pcm_blocks(Trickle(floats.tobytes(), 3), raw_format("f32le", SR))))
    np.testing.assert_array_equal(got, floats)
    with pytest.raises(ValueError, match="--dtype"):
        raw_format("s24le", SR)


def test_resampled_stream_equals_resampling_the_whole_wave():
    rng = np.random.default_rng(9)
    wave = rng.standard_normal(16000).astype(np.float32) * 0.1
    got = np.concatenate(list(resampled(chunks(wave, rng, 3000), 16000, SR)))
    np.testing.assert_allclose(got, resample(wave, 16000, SR), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny trained tcn run (synthetic data, 0.5 s windows, 3 labels) and an 8 kHz 16-bit WAV of 1.3 s."""
    tmp = tmp_path_factory.mktemp("stream")
    assert main(["train", str(ROOT / "recipes" / "quickstart.yaml"), f"data.root={tmp / 'syn'}",
                 f"data.cache_dir={tmp / 'cache'}", f"trainer.output_dir={tmp / 'runs'}", "data.num_classes=3",
                 "data.num_per_class=4", "data.duration=0.5", "trainer.epochs=1", "model.name=tcn",
                 "model.args.channels=[6,6]", "trainer.progress=never", "trainer.report=false"]) == 0
    (run,) = (tmp / "runs" / "quickstart").iterdir()
    rng = np.random.default_rng(10)
    ints = (rng.standard_normal(10400) * 3000).clip(-32768, 32767).astype("<i2")
    sf.write(tmp / "clip.wav", ints, SR, subtype="PCM_16")
    return {"run": run, "tmp": tmp, "wav": tmp / "clip.wav", "ints": ints}


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def _lines(capsys) -> tuple[list[dict], str]:
    cap = capsys.readouterr()
    return [json.loads(line) for line in cap.out.splitlines()], cap.err


def test_json_lines_from_a_file_stdin_wav_and_raw_pcm_agree(env, capsys, monkeypatch):
    labels = json.loads((env["run"] / "labels.json").read_text())["labels"]
    assert main(["stream", str(env["run"]), str(env["wav"]), "--json", "--top-k", "2"]) == 0
    from_file, err = _lines(capsys)
    # 1.3 s in 0.1 s hops after a 0.5 s window: outputs at 0.5, 0.6, ..., 1.3 s
    assert [r["time"] for r in from_file] == pytest.approx([0.5 + 0.1 * i for i in range(9)])
    for r in from_file:
        assert set(r) == {"time", "top"} and len(r["top"]) == 2
        (a, pa), (b, pb) = r["top"]
        assert a in labels and b in labels and a != b and 1 >= pa >= pb >= 0
    assert "stream: 9 hops of 0.1 s over 1.30 s of audio (incremental)" in err
    assert "p50" in err and "p99" in err and "real-time factor" in err
    _stdin(monkeypatch, env["wav"].read_bytes())
    assert main(["stream", str(env["run"]), "-", "--json", "--top-k", "2"]) == 0
    assert _lines(capsys)[0] == from_file
    _stdin(monkeypatch, env["ints"].tobytes())
    assert main(["stream", str(env["run"]), "-", "--raw", "--sample-rate", "8000", "--dtype", "s16le", "--json",
                 "--top-k", "2"]) == 0
    assert _lines(capsys)[0] == from_file


def test_recompute_outputs_average_to_predicts(env, capsys):
    assert main(["stream", str(env["run"]), str(env["wav"]), "--json", "--top-k", "3", "--hop", "0.2",
                 "--recompute"]) == 0
    lines, err = _lines(capsys)
    assert "(window)" in err and len(lines) == 5  # windows starting at 0, 0.2, ..., 0.8 s
    mean = {}
    for r in lines:
        for label, p in r["top"]:
            mean[label] = mean.get(label, 0.0) + p / len(lines)
    (result,) = predict_files(env["run"], [env["wav"]], top_k=3, hop=0.2)
    assert mean == pytest.approx(dict(result["top"]), abs=1e-5)


def test_readable_lines_and_resampled_stdin(env, capsys, monkeypatch):
    wave16 = resample(env["ints"].astype(np.float32) / 32768, SR, 16000)
    _stdin(monkeypatch, wav_bytes(wave16, 16000, "FLOAT"))
    assert main(["stream", str(env["run"]), "-", "--hop", "0.25"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[0]  # 0.5, 0.75, 1.0, 1.25 s, and 1.5 s zero-padded past the end.split()[:2] == ["0.50", "s"] and out[0].count("%") == 3


def test_threads_flag_sets_torch_threads_for_the_stream(env, capsys):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["stream", str(env["run"]), str(env["wav"]), "--json"]) == 0
        assert torch.get_num_threads() == 1  # the default: a hop is too small for a second thread
        torch.set_num_threads(1)
        assert main(["stream", str(env["run"]), str(env["wav"]), "--json", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()


def _arg(a, env):
    return a.format(run=env["run"], wav=env["wav"], tmp=env["tmp"])


# (fault, argv, stdin bytes or None, exit status, phrases stderr must hold)
FAULTS = [
    ("empty stdin", ["{run}", "-"], b"", 2, ["stdin", "no data"]),
    ("garbage on stdin", ["{run}", "-"], b"\x00\x17not audio at all" * 10, 2, ["stdin", "not a WAV stream", "--raw"]),
    ("raw stdin of less than a sample", ["{run}", "-", "--raw"], b"\x01", 2, ["no audio samples"]),
    ("hop zero", ["{run}", "{wav}", "--hop", "0"], None, 2, ["--hop", "0"]),
    ("hop negative", ["{run}", "{wav}", "--hop", "-1"], None, 2, ["--hop", "-1"]),
    ("hop not a number", ["{run}", "{wav}", "--hop", "fast"], None, 2, ["--hop", "fast"]),
    ("hop longer than the window", ["{run}", "{wav}", "--hop", "2"], None, 2, ["--hop 2", "at most 0.5"]),
    ("hop under one sample", ["{run}", "{wav}", "--hop", "1e-9"], None, 2, ["less than one sample"]),
    ("file missing", ["{run}", "{tmp}/gone.wav"], None, 2, ["gone.wav", "not found"]),
    ("not a run folder", ["{tmp}", "{wav}"], None, 2, ["run folder"]),
    ("no input", ["{run}"], None, 2, ["--mic"]),
    ("a file and --mic", ["{run}", "{wav}", "--mic"], None, 2, ["one input"]),
    ("--raw with a file", ["{run}", "{wav}", "--raw"], None, 2, ["--raw", "- as INPUT"]),
    ("--dtype without --raw", ["{run}", "-", "--dtype", "f32le"], b"", 2, ["add --raw"]),
    ("--dtype unknown", ["{run}", "-", "--raw", "--dtype", "s24le"], b"", 2, ["s24le"]),
]


@pytest.mark.parametrize("fault,argv,data,status,phrases", FAULTS, ids=[f[0] for f in FAULTS])
def test_bad_input_is_one_line_and_its_exit_status(env, capsys, monkeypatch, fault, argv, data, status, phrases):
    if data is not None:
        _stdin(monkeypatch, data)
    try:
        code = main(["stream", *[_arg(a, env) for a in argv]])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    cap = capsys.readouterr()
    assert code == status, cap.err
    assert "Traceback" not in cap.err and cap.err.count("error: ") == 1 and cap.out == "", cap.err
    assert all(p in cap.err for p in phrases), cap.err


def test_mic_without_sounddevice_names_the_extra(env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # an import of it fails, installed or not
    assert main(["stream", str(env["run"]), "--mic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install audiocnn[mic]" in err
