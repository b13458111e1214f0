"""``audiocnn export``: the real-valued front-end against torch's and librosa's, onnxruntime logits against the run's
model in torch (five families, dynamic batch and length), metadata, TorchScript, the CLI's errors, and the README's
onnxruntime-only example in a process where torch and audiocnn cannot be imported."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

import audiocnn
from audiocnn.cli import main
from audiocnn.config import load_config
from audiocnn.core.errors import ModelError
from audiocnn.deploy import export as export_mod
from audiocnn.deploy.export import export_run
from audiocnn.deploy.frontend import RealFrontend, real_frontend
from audiocnn.features import FrontendSettings
from audiocnn.pipelines import train
from audiocnn.runs import load_run
from layouts import mnist

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[1]
SR = 8000
TOL = 1e-4


def _chirp(n: int, sr: int = SR) -> torch.Tensor:
    t = np.arange(n) / sr
    return torch.from_numpy(0.4 * np.sin(2 * np.pi * (150 + 1500 * t) * t)).float()[None]


# --- the real-valued front-end ----------------------------------------------------------------------------------

FRONTENDS = [
    dict(kind="logmel", n_fft=256, hop_length=80, n_mels=40, top_db=80),
    dict(kind="logmel", n_fft=512, win_length=400, hop_length=160, center=False, power=1.0, n_mels=64, f_min=125,
         f_max=3900, norm=None, mel_scale="htk", log="log", log_offset=0.01),
    dict(kind="mfcc", n_fft=256, hop_length=64, n_mels=40, n_mfcc=13, top_db=80),
    dict(kind="stft", n_fft=256, hop_length=64, pad_mode="reflect", power=1.0),
    dict(kind="mel", n_fft=200, hop_length=50, pad_mode="replicate", window="hamming"),
    dict(kind="logmel", backend="nnaudio", n_fft=256, hop_length=64, pad_mode="reflect", top_db=80),
    dict(kind="cqt", backend="nnaudio", hop_length=64, n_bins=60, top_db=80),
    dict(kind="logmel", backend="librosa", n_fft=256, hop_length=64, top_db=80),
]


@pytest.mark.parametrize("settings", FRONTENDS, ids=lambda s: f"{s['kind']}-{s.get('backend', 'torch')}")
def test_real_frontend_matches_the_run_frontend(settings):
    fe = FrontendSettings(**settings).build(SR)
    real = real_frontend(fe)
    assert isinstance(real, RealFrontend)
    x = torch.cat([_chirp(SR) + 0.01 * torch.randn(1, SR), 0.1 * torch.randn(2, SR)])
    ref, out = fe(x), real(x)
    assert out.shape == ref.shape and real.num_frames(SR) == fe.num_frames(SR)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_real_logmel_matches_librosa():
    """An independent reference: librosa's log-mel of the same waves (reflect padding, Slaney mel, dB, top_db)."""
    settings = dict(kind="logmel", n_fft=512, hop_length=128, n_mels=48, pad_mode="reflect", top_db=80.0)
    real = real_frontend(FrontendSettings(**settings).build(16000))
    rng = np.random.default_rng(0)
    waves = np.stack([0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) + 0.05 * rng.standard_normal(16000),
                      0.2 * rng.standard_normal(16000)]).astype(np.float32)
    ref = np.stack([librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=512, hop_length=128, n_mels=48, pad_mode="reflect", power=2.0), ref=1.0, top_db=80.0)
        for y in waves])
    out = real(torch.from_numpy(waves)).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 2e-3   # dB; float32 against librosa's float32 FFT


class _AllFrontends(torch.nn.Module):
    def __init__(self, frontends):
        super().__init__()
        self.frontends = torch.nn.ModuleList(frontends)

    def forward(self, wave):
        return tuple(fe(wave) for fe in self.frontends)


@pytest.mark.slow
def test_every_kind_runs_in_onnxruntime(tmp_path):
    """The operations the five exported runs below do not use (reflect and edge padding, magnitude, the DCT,
    nnAudio's CQT kernels), in one ONNX graph, against the original front-ends in torch."""
    settings = [s for s in FRONTENDS if s["kind"] in ("mfcc", "stft", "mel", "cqt")]
    originals = [FrontendSettings(**s).build(SR) for s in settings]
    graph = _AllFrontends([real_frontend(fe) for fe in originals]).eval()
    path = tmp_path / "frontends.onnx"
    dims = ({0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("time", min=SR, max=10 * SR)},)
    torch.onnx.export(graph, (torch.zeros(2, SR),), str(path), dynamo=True, dynamic_shapes=dims, verbose=False)
    session = _session(path)
    x = torch.cat([_chirp(SR + 301) + 0.01 * torch.randn(1, SR + 301), 0.1 * torch.randn(2, SR + 301)])
    outs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    for s, fe, out in zip(settings, originals, outs):
        ref = fe(x).numpy()
        assert out.shape == ref.shape, s
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max(), s


def test_unknown_frontend_is_a_model_error():
    with pytest.raises(ModelError, match="not an audiocnn Frontend"):
        real_frontend(torch.nn.Conv1d(1, 1, 3))


# --- tiny runs of five families ---------------------------------------------------------------------------------

AUDIO_MODELS = {
    "cnn_small": ["model.name=cnn_small", "model.args.width=8"],
    "resnet_small": ["model.name=resnet_small", "model.args.width=8"],
    "tcn": ["model.name=tcn", "model.args.channels=[8,8,8]"],
    "vggish_tiny": ["model.name=vggish_tiny"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


_RUNS: dict[str, Path] = {}


def _run(workdir: Path, name: str) -> Path:
    if name not in _RUNS:
        common = [f"trainer.output_dir={workdir / 'runs' / name}", "trainer.epochs=1", "trainer.progress=never",
                  "trainer.report=false"]
        if name == "lenet5":
            mnist(workdir / "mnist", n_train=4, n_test=2)
            cfg = load_config(ROOT / "recipes" / "mnist_lenet.yaml",
                              [f"data.root={workdir / 'mnist'}", "data.batch_size=16", *common])
        else:
            cfg = load_config(ROOT / "recipes" / "quickstart.yaml", [
                f"data.root={workdir / 'syn'}", f"data.cache_dir={workdir / 'cache'}", "data.num_classes=3",
                "data.num_per_class=6", "data.duration=0.5", "data.window_hop=0.25", "data.batch_size=8",
                *AUDIO_MODELS[name], *common])
        _RUNS[name] = train(cfg, quiet=True)
    return _RUNS[name]


OPSETS = {"tcn": 20}
"""Runs exported at another opset than the default."""


def _exported(workdir: Path, name: str, fmt: str = "onnx") -> Path:
    out = workdir / f"{name}.{fmt}"
    if not out.exists():
        export_run(_run(workdir, name), fmt=fmt, out=out, opset=OPSETS.get(name) if fmt == "onnx" else None)
    return out


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(AUDIO_MODELS))
def test_audio_run_exports_and_onnxruntime_matches_torch(workdir, name):
    run = _run(workdir, name)
    path = _exported(workdir, name)
    model, cfg, labels, task = load_run(run, device="cpu")
    session = _session(path)
    (inp,) = session.get_inputs()
    assert inp.name == "waveform" and [o.name for o in session.get_outputs()] == ["logits"]
    n = int(cfg.data.duration * cfg.data.sample_rate)
    fixed = name == "vggish_tiny"   # a flatten head fixes the length
    assert inp.shape[1] == (n if fixed else inp.shape[1]) and isinstance(inp.shape[0], str)
    assert fixed != isinstance(inp.shape[1], str)
    opsets = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
    assert opsets[""] == OPSETS.get(name, export_mod.DEFAULT_OPSET)
    lengths = [n] if fixed else [n, 3 * n + 17]
    gen = torch.Generator().manual_seed(1)
    for length in lengths:
        for batch in (1, 3):
            x = 0.1 * torch.randn(batch, length, generator=gen) + _chirp(length)
            (logits,) = session.run(None, {"waveform": x.numpy()})
            with torch.no_grad():
                ref = model(x).numpy()
            assert logits.shape == (batch, len(labels))
            assert np.abs(logits - ref).max() <= TOL, (name, length, batch)
    if fixed:
        with pytest.raises(Exception, match="(?i)dimension|shape"):
            session.run(None, {"waveform": np.zeros((1, n + 80), np.float32)})


@pytest.mark.slow
def test_image_run_exports_and_onnxruntime_matches_torch(workdir):
    path = _exported(workdir, "lenet5")
    model, cfg, labels, _ = load_run(_run(workdir, "lenet5"), device="cpu")
    session = _session(path)
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.shape[1:] == [1, 28, 28]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["modality"] == "image" and json.loads(meta["input_shape"]) == ["batch", 1, 28, 28]
    for batch in (1, 3):
        x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        (logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            assert np.abs(logits - model(x).numpy()).max() <= TOL


@pytest.mark.slow
def test_metadata(workdir):
    run = _run(workdir, "cnn_small")
    meta = _session(_exported(workdir, "cnn_small")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == json.loads((run / "labels.json").read_text())["labels"]
    assert meta["sample_rate"] == str(SR) and meta["task"] == "multiclass"
    assert float(meta["window_seconds"]) == 0.5 and float(meta["hop_seconds"]) == 0.25
    assert meta["window_samples"] == "4000" and meta["window_hop_samples"] == "2000"
    assert meta["audiocnn_version"] == audiocnn.__version__ and json.loads(meta["fixed_length"]) is False
    vggish = _session(_exported(workdir, "vggish_tiny")).get_modelmeta().custom_metadata_map
    assert json.loads(vggish["fixed_length"]) is True and "flatten head" in vggish["fixed_length_reason"]


@pytest.mark.slow
def test_torchscript_loads_and_matches(workdir):
    run = _run(workdir, "tcn")
    path = _exported(workdir, "tcn", "torchscript")
    extra = {"metadata.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(json.loads(extra["metadata.json"])["labels"]) == load_run(run).labels
    model = load_run(run, device="cpu").model
    with torch.no_grad():
        for batch, length in ((1, 4000), (3, 6001)):
            x = 0.1 * torch.randn(batch, length)
            assert (loaded(x) - model(x)).abs().max() <= TOL


@pytest.mark.slow
def test_deviation_above_tolerance_writes_nothing(workdir, monkeypatch):
    run = _run(workdir, "cnn_small")
    monkeypatch.setattr(export_mod, "LOGIT_TOLERANCE", -1.0)   # any deviation, even 0, is now too much
    out = workdir / "never.pt"
    with pytest.raises(ModelError, match="nothing was written"):
        export_run(run, fmt="torchscript", out=out)
    assert not out.exists()


# --- the command line -------------------------------------------------------------------------------------------

def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_cli_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "not a folder" in _one_line_error(capsys)
    assert main(["export", str(tmp_path), "--format", "tflite", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "--format 'tflite'" in _one_line_error(capsys)
    assert main(["export", str(tmp_path), "--opset", "7", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "--opset 7" in _one_line_error(capsys)
    assert main(["export", str(tmp_path), "--format", "torchscript", "--opset", "18", "--out", "m.pt"]) == 2
    assert "onnx only" in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_exports(workdir, capsys):
    out = workdir / "cli.pt"
    assert main(["export", str(_run(workdir, "cnn_small")), "--format", "torchscript", "--out", str(out)]) == 0
    assert "torch.jit.load vs torch" in capsys.readouterr().out and out.is_file()


# --- the README's onnxruntime-only example ----------------------------------------------------------------------

BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "audiocnn"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _Block())
"""


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Export", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_runs_without_torch(workdir, tmp_path):
    run = _run(workdir, "cnn_small")
    model_path = _exported(workdir, "cnn_small")
    wav = sorted((workdir / "syn").rglob("*.wav"))[0]
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked" in blocked.stderr
    proc = subprocess.run([sys.executable, str(script), str(model_path), str(wav)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    top = proc.stdout.strip().splitlines()[-1].split()[0]
    assert top in json.loads((run / "labels.json").read_text())["labels"]
