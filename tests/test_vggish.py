"""VGGish: the network, its weight files, PCA post-processing and the exact input pipeline.

The reference is the PyTorch port ``torchvggish`` (its ``vggish_input``/``mel_features`` are the TensorFlow
release's code). It is a test-only reference, never a dependency; the tests that need it skip without it:

    pip install --no-deps torchvggish resampy

(``--no-deps``: it would otherwise pull its own torch). Real recordings come from ``$AUDIOCNN_SHARED``
(default ``../shared/datasets``: ``fsdd/``, ``esc10/``); those tests skip when the data is absent.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiocnn.features.vggish_input import EXAMPLE_SAMPLES, VGGishInput, vggish_mel_matrix, waveform_to_examples
from audiocnn.models import create_model
from audiocnn.models.vggish import (Postprocessor, VGGishWeightsError, load_pca_params,
                                    load_vggish_weights, to_reference_state_dict)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUDIOCNN_SHARED", ROOT.parent / "shared" / "datasets"))
REF_REASON = "reference torchvggish not installed (test-only: pip install --no-deps torchvggish resampy)"

# torchvggish's module shapes: conv (out, in, 3, 3) on (frames, mel) inputs; dense (out, in).
REFERENCE_SHAPES = {"features.0": (64, 1, 3, 3), "features.3": (128, 64, 3, 3), "features.6": (256, 128, 3, 3),
                    "features.8": (256, 256, 3, 3), "features.11": (512, 256, 3, 3), "features.13": (512, 512, 3, 3),
                    "embeddings.0": (4096, 12288), "embeddings.2": (4096, 4096), "embeddings.4": (128, 4096)}


def reference_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under torchvggish's names, scaled so activations neither vanish nor explode."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in REFERENCE_SHAPES.items():
        fan_in = int(np.prod(shape[1:]))
        out[f"{name}.weight"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        out[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.05
    return out


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """VGGish as the TensorFlow release computes it, written out: ``x`` is ``(batch, 1, frames, mel)``; the last
    feature map is flattened in NHWC order; no activation after the last dense layer."""
    F = nn.functional
    for i, name in enumerate(("features.0", "features.3", "features.6", "features.8", "features.11", "features.13")):
        x = F.relu(F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1))
        if i in (0, 1, 3, 5):
            x = F.max_pool2d(x, 2)
    x = x.permute(0, 2, 3, 1).flatten(1)
    x = F.relu(F.linear(x, sd["embeddings.0.weight"], sd["embeddings.0.bias"]))
    x = F.relu(F.linear(x, sd["embeddings.2.weight"], sd["embeddings.2.bias"]))
    return F.linear(x, sd["embeddings.4.weight"], sd["embeddings.4.bias"])


@pytest.fixture(scope="module")
def ref_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = reference_state_dict()
    path = tmp_path_factory.mktemp("weights") / "vggish-10086976.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def loaded(ref_weights) -> nn.Module:
    net = create_model("vggish")
    load_vggish_weights(net, ref_weights[0])
    return net.eval()


@pytest.fixture(scope="module")
def target() -> nn.Module:
    """A vggish for the loading tests to load into (building one takes seconds)."""
    return create_model("vggish")


def small_reference_state_dict(shapes: dict[str, tuple] | None = None) -> dict[str, torch.Tensor]:
    """torchvggish's names with placeholder tensors of the given shapes (default: one element)."""
    shapes = shapes or {}
    return {f"{m}.{p}": torch.zeros(shapes.get(f"{m}.{p}", (1,))) for m in REFERENCE_SHAPES for p in ("weight", "bias")}


# --- the network ---------------------------------------------------------------------------------------------------

def test_vggish_architecture():
    net = create_model("vggish")
    assert sum(p.numel() for p in net.parameters()) == 72_141_184
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 4
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12288, 4096), (4096, 4096), (4096, 128)]
    # the embedding is pre-activation: the last layer is the head's linear, nothing after it
    x = torch.randn(3, 1, 64, 96)
    net.head.fc.bias.data.fill_(-10.0)
    assert (net(x) < 0).all()


@pytest.mark.parametrize("name", ["vggish_small", "vggish_tiny"])
def test_small_variants_train_shapes(name):
    net = create_model(name, num_classes=10, input_size=(1, 64, 97))
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net(torch.randn(2, 1, 64, 97)).shape == (2, 10)
    assert net.forward_head(net.forward_features(torch.randn(2, 1, 64, 97)), pre_logits=True).shape[1] == \
        net.num_features
    assert sum(p.numel() for p in net.parameters()) < 5_000_000


# --- weights -------------------------------------------------------------------------------------------------------

def test_reference_weights_give_the_reference_embedding(ref_weights, loaded):
    _, sd = ref_weights
    x = torch.randn(4, 1, 96, 64, generator=torch.Generator().manual_seed(1))  # reference layout (frames, mel)
    with torch.no_grad():
        want = reference_forward(sd, x)
        got = loaded(x.transpose(2, 3))                                         # ours (mel, frames)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    back = to_reference_state_dict(loaded)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_matches_the_torchvggish_model(ref_weights, loaded):
    tv = pytest.importorskip("torchvggish.torchvggish", reason=REF_REASON)
    ref = tv.VGG(tv.make_layers(), False).eval()
    ref.load_state_dict(ref_weights[1])
    ref.embeddings[5] = nn.Identity()  # the port's ReLU after the embedding is not VGGish's
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        want, got = ref(x), loaded(x.transpose(2, 3))
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-5


def test_full_vggish_state_dict_with_pca_entries_loads(tmp_path, ref_weights, loaded, target):
    sd = {f"module.{k}": v for k, v in ref_weights[1].items()}  # saved from a DataParallel-wrapped port
    sd["module.pproc.pca_matrix"], sd["module.pproc.pca_means"] = torch.eye(128), torch.zeros(128, 1)
    torch.save(sd, tmp_path / "full.pth")
    assert load_vggish_weights(target, tmp_path / "full.pth") == {"layout": "torchvggish", "loaded": 18}
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), loaded.state_dict().values()))
    vectors, means = load_pca_params(tmp_path / "full.pth")
    assert torch.equal(vectors, torch.eye(128)) and means.shape == (128,)


def test_audiocnn_state_dict_loads(tmp_path, loaded, target):
    torch.save(loaded.state_dict(), tmp_path / "ours.pth")
    assert load_vggish_weights(target, tmp_path / "ours.pth")["layout"] == "audiocnn"
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("features.8.weight"), "missing ['features.8.weight']"),
    (lambda sd: sd.update({"features.99.weight": torch.zeros(1)}), "unexpected ['features.99.weight']"),
    (lambda sd: sd.update({"embeddings.4.weight": torch.zeros(64, 4096)}), "embeddings.4.weight: file (64, 4096) "
                                                                          "vs model (128, 4096)"),
])
def test_mismatched_weights_fail_clearly(tmp_path, target, damage, message):
    sd = small_reference_state_dict()  # names are checked first, then every shape (all listed)
    damage(sd)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(VGGishWeightsError, match=re.escape(message)):
        load_vggish_weights(target, tmp_path / "bad.pth")


def test_not_a_weights_file(tmp_path, target):
    (tmp_path / "x.pth").write_text("hello")
    with pytest.raises(VGGishWeightsError, match="x.pth"):
        load_vggish_weights(target, tmp_path / "x.pth")
    with pytest.raises(VGGishWeightsError, match="not found"):
        load_vggish_weights(target, tmp_path / "missing.pth")


# --- PCA post-processing -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pca_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(128, 128)))
    return (q * rng.uniform(0.5, 4.0, size=(128, 1))).astype(np.float64), rng.normal(size=128) * 0.1


def _write_pca_files(root: Path, vectors: np.ndarray, means: np.ndarray) -> list[Path]:
    files = [root / "vggish_pca_params.npz", root / "tensors.pth", root / "vggish_pca_params-970ea276.pth"]
    np.savez(files[0], pca_eigen_vectors=vectors, pca_means=means)
    torch.save({"pca_eigen_vectors": torch.from_numpy(vectors), "pca_means": torch.from_numpy(means)}, files[1])
    torch.save({"pca_eigen_vectors": vectors, "pca_means": means}, files[2])  # NumPy arrays, as the port's file
    return files


def test_pca_files_in_every_format(tmp_path, pca_arrays):
    vectors, means = pca_arrays
    x = torch.randn(16, 128) * 0.5
    want = (x.double() - torch.from_numpy(means)) @ torch.from_numpy(vectors).T
    want_q = torch.round((want.clamp(-2, 2) + 2) * 255 / 4)
    for path in _write_pca_files(tmp_path, vectors, means):
        post = Postprocessor.from_file(path)
        out = post(x)
        assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())
        assert (out.double() - want_q).abs().max() <= 1 and (out.double() != want_q).float().mean() < 0.01, path
        raw = Postprocessor.from_file(path, quantize=False)(x)
        assert torch.allclose(raw.double(), want, atol=1e-5), path


def test_pca_matches_the_reference_postprocessor(tmp_path, pca_arrays):
    tv = pytest.importorskip("torchvggish.torchvggish", reason=REF_REASON)
    vectors, means = pca_arrays
    ref = object.__new__(tv.Postprocessor)  # its __init__ downloads the released file
    ref._pca_matrix = torch.as_tensor(vectors).float()
    ref._pca_means = torch.as_tensor(means.reshape(-1, 1)).float()
    x = torch.randn(64, 128) * 0.5
    want = ref.postprocess(x)
    got = Postprocessor.from_file(_write_pca_files(tmp_path, vectors, means)[2])(x)
    assert (got - want).abs().max() <= 1 and (got != want).float().mean() < 0.005


def test_bad_pca_file(tmp_path):
    np.savez(tmp_path / "p.npz", pca_eigen_vectors=np.eye(64), pca_means=np.zeros(64))
    with pytest.raises(VGGishWeightsError, match=r"\(64, 64\)"):
        load_pca_params(tmp_path / "p.npz")
    np.savez(tmp_path / "q.npz", something=np.eye(2))
    with pytest.raises(VGGishWeightsError, match="pca_eigen_vectors"):
        load_pca_params(tmp_path / "q.npz")


# --- the input pipeline --------------------------------------------------------------------------------------------

def test_mel_matrix_is_the_reference_one():
    fb = vggish_mel_matrix()
    assert fb.shape == (64, 257) and fb[:, 0].max() == 0.0 and np.isclose(fb.max(), 1.0, atol=0.05)
    freqs = np.linspace(0, 8000, 257)
    assert fb[:, freqs < 125].max() == 0 and fb[:, freqs > 7500].max() == 0
    mf = pytest.importorskip("torchvggish.mel_features", reason=REF_REASON)
    ref = mf.spectrogram_to_mel_matrix(num_mel_bins=64, num_spectrogram_bins=257, audio_sample_rate=16000,
                                       lower_edge_hertz=125, upper_edge_hertz=7500)
    np.testing.assert_allclose(fb, ref.T, atol=1e-12)


def test_example_counts_and_pad_short():
    fe = VGGishInput()
    assert EXAMPLE_SAMPLES == 15600
    for n, k in [(8000, 0), (15599, 0), (15600, 1), (15600 + 15359, 1), (15600 + 15360, 2), (80000, 5)]:
        assert fe.num_examples(n) == k
        assert fe(torch.zeros(1, n)).shape == (1, k, 64, 96)
    padded = VGGishInput(pad_short=True)
    assert padded(torch.randn(2, 8000)).shape == (2, 1, 64, 96)
    wave = torch.randn(1, 8000)
    assert torch.equal(padded(wave), fe(nn.functional.pad(wave, (0, 15600 - 8000))))
    assert padded(torch.zeros(1, 0)).shape[1] == 0
    assert VGGishInput(hop_frames=48).num_examples(48000) == 1 + (fe.num_frames(48000) - 96) // 48
    assert fe.state_dict() == {} and fe.to(torch.bfloat16).window.dtype == torch.float64


def test_cpu_and_device_paths_agree():
    """On the CPU the spectrum is computed with NumPy; elsewhere (and with gradients) with torch."""
    fe = VGGishInput()
    wave = torch.randn(3, 20000) * 0.2
    np_path, torch_path = fe.log_mel(wave), fe._log_mel_torch(wave)
    assert np_path.dtype == torch_path.dtype == torch.float32 and np_path.shape == (3, 64, 123)
    assert (np_path - torch_path).abs().max() < 1e-5
    grad = fe.log_mel(wave.clone().requires_grad_())
    assert grad.requires_grad and torch.allclose(grad.detach(), torch_path)


def _fsdd_wave(seconds: float) -> np.ndarray:
    """FSDD recordings (8 kHz), upsampled by us to 16 kHz and concatenated to ``seconds``."""
    from audiocnn.audio import load_audio

    files = sorted((SHARED / "fsdd" / "recordings").glob("*.wav"))[::97]
    need, parts = int(seconds * 16000), []
    for f in files:
        parts.append(load_audio(f, 16000))
        if sum(len(p) for p in parts) >= need:
            break
    return np.concatenate(parts)[:need]


def _esc_wave(seconds: float, index: int) -> np.ndarray:
    from audiocnn.audio import load_audio

    files = sorted((SHARED / "esc10" / "audio").glob("*.flac"))
    return load_audio(files[index * 37 % len(files)], None)[:int(seconds * 16000)]


@pytest.mark.parametrize("source", ["fsdd", "esc10-a", "esc10-b"])
@pytest.mark.parametrize("seconds", [0.5, 0.975, 1.5, 5.0])
def test_input_matches_reference_on_real_audio(source, seconds):
    vi = pytest.importorskip("torchvggish.vggish_input", reason=REF_REASON)
    if not (SHARED / "fsdd").is_dir() or not (SHARED / "esc10").is_dir():
        pytest.skip(f"real recordings not found under {SHARED} (set AUDIOCNN_SHARED)")
    wave = _fsdd_wave(seconds) if source == "fsdd" else _esc_wave(seconds, 0 if source == "esc10-a" else 1)
    assert len(wave) == int(seconds * 16000)
    if len(wave) < EXAMPLE_SAMPLES:  # the reference has nothing to say; pad_short must equal it on padded audio
        assert vi.waveform_to_examples(wave, 16000, return_tensor=False).shape[0] == 0
        assert waveform_to_examples(wave, 16000).shape[0] == 0
        ref = vi.waveform_to_examples(np.pad(wave, (0, EXAMPLE_SAMPLES - len(wave))), 16000, return_tensor=False)
        ours = waveform_to_examples(wave, 16000, pad_short=True)
    else:
        ref = vi.waveform_to_examples(wave, 16000, return_tensor=False)
        ours = waveform_to_examples(wave, 16000)
    ours = ours.numpy().transpose(0, 2, 1)  # ours (n, mel, frames), the reference (n, frames, mel)
    assert ours.shape == ref.shape and ref.shape[0] >= 1
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("name,widths,hidden", [("vggish_small", (32, 64, 128, 256), (512, 128)),
                                                 ("vggish_tiny", (16, 32, 64, 128), (128,))])
def test_small_variants_parameter_count_by_hand(name, widths, hidden):
    # convs: w0, w1, w2 x2, w3 x2 (3x3, no bias, batch norm: 2 per channel); four 2x2 pools: 64x96 -> 4x6.
    convs = [(1, widths[0]), (widths[0], widths[1]), (widths[1], widths[2]), (widths[2], widths[2]),
             (widths[2], widths[3]), (widths[3], widths[3])]
    total = sum(9 * cin * cout + 2 * cout for cin, cout in convs)
    width = widths[3] * 4 * 6
    for h in (*hidden, 128):
        total += width * h + h
        width = h
    net = create_model(name)
    assert sum(p.numel() for p in net.parameters()) == total
