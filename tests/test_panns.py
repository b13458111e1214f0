"""PANNs CNN6/10/14 against the reference (panns_inference 0.1.0 + torchlibrosa 0.1.0, installed test-only).

The reference package's ``__init__`` downloads the AudioSet label file, so ``panns_inference/models.py`` is loaded
by file path under a stand-in package name. CNN14 and CNN14_16k are the reference's own ``Cnn14`` class (CNN14_16k
is that class with the 16 kHz settings, as upstream's ``Cnn14_16k``). panns_inference ships no CNN6 or CNN10: their
references are composed here from torchlibrosa's front-end, the reference ``ConvBlock`` (CNN10) and a 5x5 block
named as upstream's ``ConvBlock5x5`` (CNN6), with the official key names, following upstream's forward.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiocnn.build import build_released
from audiocnn.cli import main
from audiocnn.models import create_model
from audiocnn.models.pretrained import PretrainedError, load_pretrained
from audiocnn.models.released import released

torchlibrosa = pytest.importorskip("torchlibrosa", reason="torchlibrosa (the PANNs front-end reference) not installed")
ESC10 = Path("/work/shared/datasets/esc10")


def _reference_module():
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("panns_inference (the PANNs reference) not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    pkg = types.ModuleType("_panns_ref")
    pkg.__path__ = [str(folder)]  # a stand-in package: its __init__ (which downloads labels) never runs
    sys.modules.setdefault("_panns_ref", pkg)
    mod_spec = importlib.util.spec_from_file_location("_panns_ref.models", folder / "models.py")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules["_panns_ref.models"] = module
    mod_spec.loader.exec_module(module)
    return module


REF = None


def ref():
    global REF
    if REF is None:
        REF = _reference_module()
    return REF


SETTINGS = {32000: dict(window_size=1024, hop_size=320, fmax=14000), 16000: dict(window_size=512, hop_size=160,
                                                                                  fmax=8000)}


class _Block5x5(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)

    def forward(self, x, pool_size=(2, 2), pool_type="avg"):
        return F.avg_pool2d(F.relu_(self.bn1(self.conv1(x))), kernel_size=pool_size)


class _SmallCnn(nn.Module):
    """Upstream's Cnn6 / Cnn10: four blocks (64...512), each avg-pooled 2x2 with dropout 0.2, fc1 512."""

    def __init__(self, block, rate: int = 32000):
        super().__init__()
        s = SETTINGS[rate]
        stft = torchlibrosa.stft
        self.spectrogram_extractor = stft.Spectrogram(n_fft=s["window_size"], hop_length=s["hop_size"],
                                                      win_length=s["window_size"], window="hann", center=True,
                                                      pad_mode="reflect", freeze_parameters=True)
        self.logmel_extractor = stft.LogmelFilterBank(sr=rate, n_fft=s["window_size"], n_mels=64, fmin=50,
                                                      fmax=s["fmax"], ref=1.0, amin=1e-10, top_db=None,
                                                      freeze_parameters=True)
        self.bn0 = nn.BatchNorm2d(64)
        widths = (1, 64, 128, 256, 512)
        for i in range(4):
            setattr(self, f"conv_block{i + 1}", block(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(512, 512)
        self.fc_audioset = nn.Linear(512, 527)

    def forward(self, wave):
        x = self.logmel_extractor(self.spectrogram_extractor(wave))
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i in range(4):
            x = getattr(self, f"conv_block{i + 1}")(x, pool_size=(2, 2), pool_type="avg")
        x = torch.mean(x, dim=3)
        x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
        emb = F.relu_(self.fc1(x))
        return {"clipwise_output": torch.sigmoid(self.fc_audioset(emb)), "embedding": emb}


def reference(name: str) -> nn.Module:
    if name == "panns_cnn6":
        return _SmallCnn(_Block5x5)
    if name == "panns_cnn10":
        return _SmallCnn(lambda a, b: ref().ConvBlock(in_channels=a, out_channels=b))
    rate = 16000 if name.endswith("16k") else 32000
    return ref().Cnn14(sample_rate=rate, mel_bins=64, fmin=50, classes_num=527, **SETTINGS[rate])


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, batch-norm statistics included (the reference initialises those to 0 / 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, nn.Linear):
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
        bn0 = net.bn0
        bn0.running_mean.copy_(-40 + 5 * torch.randn(64, generator=g))  # log-mel dB scale
        bn0.running_var.copy_(100 + 20 * torch.rand(64, generator=g))
    return net.eval()


def official_file(tmp_path: Path, name: str, net: nn.Module | None = None) -> tuple[Path, nn.Module]:
    net = net if net is not None else randomise(reference(name))
    path = tmp_path / f"{name}.pth"
    torch.save({"model": net.state_dict()}, path)
    return path, net


def generated(rate: int, seconds: float, n: int = 2, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    waves = [0.3 * np.sin(2 * np.pi * (200 + 300 * k) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
             + 0.05 * g.standard_normal(t.shape) for k in range(n)]
    return torch.from_numpy(np.stack(waves)).float()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", ["panns_cnn6", "panns_cnn10", "panns_cnn14", "panns_cnn14_16k"])
def test_outputs_match_reference(tmp_path, name):
    path, net = official_file(tmp_path, name)
    ours, entry = build_released(name, path)
    wave = generated(entry.sample_rate, 1.0 if "cnn14" in name else 2.0)
    with torch.no_grad():
        want = net(wave)
        probs = torch.sigmoid(ours(wave))
        emb = ours.embed(wave)
    assert emb.shape == (2, entry.embedding_dim)
    assert rel(probs, want["clipwise_output"]) < 1e-5
    assert rel(emb, want["embedding"]) < 1e-5


def _ref_logmel(net: nn.Module, wave: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.logmel_extractor(net.spectrogram_extractor(wave))[:, 0].transpose(1, 2)  # (batch, mels, frames)


def _float64_logmel(wave: torch.Tensor, rate: int, name: str) -> torch.Tensor:
    import librosa

    f = released(name).frontend
    S = np.stack([librosa.feature.melspectrogram(
        y=w, sr=rate, n_fft=f.n_fft, hop_length=f.hop_length, window="hann", center=True, pad_mode="reflect",
        power=2.0, n_mels=64, fmin=50, fmax=f.f_max, dtype=np.float64) for w in wave.double().numpy()])
    return torch.from_numpy(10 * np.log10(np.maximum(S, 1e-10)))


def _check_logmel(wave: torch.Tensor, rate: int) -> tuple[float, float]:
    """Max dB deviations of our log-mel from torchlibrosa's and from librosa in float64, over the bins within
    80 dB of each clip's loudest."""
    name = "panns_cnn14" if rate == 32000 else "panns_cnn14_16k"
    ours = released(name).frontend.build(rate)(wave).double()
    want = _ref_logmel(_SmallCnn(_Block5x5, rate), wave).double()
    assert ours.shape == want.shape
    exact = _float64_logmel(wave, rate, name)
    # Far below a frame's loudest bins float32 rounding of the spectrum dominates in both implementations (on an
    # ESC-10 clip, 1e-3 dB at -90 dB, 110 dB under its peak); the comparison covers the 80 dB under each peak.
    audible = exact > exact.amax(dim=(1, 2), keepdim=True) - 80
    vs_ref, vs_exact = float((ours - want).abs()[audible].max()), float((ours - exact).abs()[audible].max())
    # torchlibrosa's DFT-by-convolution in float32 is itself up to ~1.3e-4 dB from float64 (ours ~3e-5 on
    # generated audio): the budget against the reference is 2e-4 dB, against the float64 computation 1e-4 dB
    assert vs_ref < 2e-4 and vs_exact < 1e-4, (vs_ref, vs_exact)
    return vs_ref, vs_exact


@pytest.mark.parametrize("rate", [32000, 16000])
def test_logmel_matches_torchlibrosa_on_generated_audio(rate):
    _check_logmel(generated(rate, 3.0, n=3, seed=1), rate)


def test_logmel_matches_torchlibrosa_on_a_recording():
    clips = sorted(ESC10.rglob("*.flac"))[:2] if ESC10.is_dir() else []
    if not clips:
        pytest.skip(f"no ESC-10 recordings under {ESC10}")
    from audiocnn.audio import load_audio

    waves = [load_audio(c, 32000) for c in clips]
    n = min(len(w) for w in waves)
    _check_logmel(torch.from_numpy(np.stack([w[:n] for w in waves])).float(), 32000)


@pytest.mark.parametrize("name", ["panns_cnn6", "panns_cnn10", "panns_cnn14"])
def test_parameter_counts(name):
    net = reference(name)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    ours = create_model(name)
    # ours keeps the front-end kernels out of the model (recomputed from the settings), so the totals differ by
    # exactly the frozen STFT and mel kernels of the reference
    assert sum(p.numel() for p in ours.parameters()) == trainable
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    assert frozen == 2 * 513 * 1024 + 513 * 64
    if name == "panns_cnn14":
        assert trainable == 80_753_615 and trainable + frozen == 81_837_071  # the published Cnn14 counts


def test_mismatched_file_names_the_variant(tmp_path):
    path, _ = official_file(tmp_path, "panns_cnn14_16k")
    with pytest.raises(PretrainedError) as e:
        load_pretrained(create_model("panns_cnn14"), path, model_name="panns_cnn14")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "the file looks Cnn14_16k-like" in msg
    assert "spectrogram_extractor.stft.conv_real.weight (257, 1, 512) -> (513, 1, 1024)" in msg
    path, _ = official_file(tmp_path, "panns_cnn10")
    with pytest.raises(PretrainedError) as e:
        load_pretrained(create_model("panns_cnn14"), path, model_name="panns_cnn14")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "the file looks Cnn10-like (4 conv blocks of 2 3x3 convs" in msg
    assert "fc1.weight (512, 512) -> head.hidden.1.weight (2048, 2048)" in msg
    assert "missing from the file (20): conv_block5.conv1.weight" in msg


def test_finetuning_replaces_the_head_and_keeps_the_backbone(tmp_path):
    path, net = official_file(tmp_path, "panns_cnn10")
    ours = create_model("panns_cnn10", num_classes=10)
    info = load_pretrained(ours, path, model_name="panns_cnn10")
    assert info["layout"] == "panns" and info["replaced_head"]
    assert torch.equal(ours.state_dict()["stages.3.0.1.0.weight"], net.state_dict()["conv_block4.conv2.weight"].transpose(2, 3))
    with pytest.raises(PretrainedError, match="fine-tuned"):
        build_released("panns_cnn10", _fine_tuned(tmp_path, net))


def _fine_tuned(tmp_path: Path, net: nn.Module) -> Path:
    state = dict(net.state_dict())
    state["fc_audioset.weight"], state["fc_audioset.bias"] = torch.zeros(10, 512), torch.zeros(10)
    torch.save({"model": state}, tmp_path / "ft.pth")
    return tmp_path / "ft.pth"


def _audio_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    clips = sorted(ESC10.rglob("*.flac"))[:1] if ESC10.is_dir() else []
    if clips:
        for c in clips:
            (folder / c.name).write_bytes(c.read_bytes())
    else:
        import soundfile as sf

        for i, w in enumerate(generated(32000, 2.0, n=1).numpy()):
            sf.write(folder / f"gen{i}.wav", w, 32000)
    return folder


@pytest.mark.slow
def test_predict_and_embed_cli_with_an_official_file(tmp_path, capsys):
    path, net = official_file(tmp_path, "panns_cnn14")
    folder = _audio_folder(tmp_path)
    rc = main(["predict", "panns_cnn14", "--weights", str(path), str(folder), "--top-k", "3", "--json",
               str(tmp_path / "p.json")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    names = set(released("panns_cnn14").label_names())
    results = json.loads((tmp_path / "p.json").read_text())
    assert len(results) == len(list(folder.iterdir()))
    for entry in results:
        assert len(entry["top"]) == 3 and all(label in names for label, _ in entry["top"])
    line = out.out.splitlines()[0]
    assert line.split(": ", 1)[1].count(" | ") == 2 and line.rstrip().endswith("%")
    # the printed top tags are the reference's on the same whole clip
    from audiocnn.audio import load_audio

    first = Path(results[0]["path"])
    with torch.no_grad():
        want = net(torch.from_numpy(load_audio(first, 32000))[None].float())["clipwise_output"][0]
    labels = released("panns_cnn14").label_names()
    assert [label for label, _ in results[0]["top"]] == [labels[i] for i in torch.argsort(-want)[:3]]
    np.testing.assert_allclose([p for _, p in results[0]["top"]], torch.sort(want, descending=True)[0][:3].numpy(),
                               rtol=1e-5)

    rc = main(["embed", "panns_cnn14", "--weights", str(path), str(folder), "--out", str(tmp_path / "emb"),
               "--progress", "never"])
    assert rc == 0, capsys.readouterr().err
    clip = np.load(next((tmp_path / "emb").rglob("*.clip.npy")))
    frames = np.load(next((tmp_path / "emb").rglob("*.frames.npy")))
    assert clip.shape == (2048,) and frames.shape[1] == 2048 and frames.shape[0] >= 2


def test_hear_module_with_a_released_model(tmp_path):
    """HEAR's scene embedding of a sound exactly one window long is the reference's embedding of that sound
    (CNN14_16k runs at a rate HEAR accepts, so nothing is resampled)."""
    import audiocnn.hear as hear

    path, net = official_file(tmp_path, "panns_cnn14_16k")
    model = hear.load_model(f"panns_cnn14_16k:{path}")
    assert model.sample_rate == 16000
    wave = generated(16000, 1.0, n=1)
    with torch.no_grad():
        want = net(wave)["embedding"]
    got = hear.get_scene_embeddings(wave, model)
    assert got.shape == (1, 2048)
    assert rel(got, want) < 1e-5


def test_predict_averages_windows_of_a_long_file(tmp_path):
    """A file longer than the 10 s training clips: 10 s windows (the last zero-padded), reference outputs averaged."""
    import soundfile as sf

    from audiocnn.evaluation.predict import predict_released

    path, net = official_file(tmp_path, "panns_cnn6")
    wave = generated(32000, 12.0, n=1)[0]
    sf.write(tmp_path / "long.wav", wave.numpy(), 32000, subtype="FLOAT")
    (result,) = predict_released("panns_cnn6", [tmp_path / "long.wav"], weights=path, top_k=5)
    assert result["windows"] == 2
    windows = torch.zeros(2, 320000)
    windows[0], windows[1, :64000] = wave[:320000], wave[320000:]
    with torch.no_grad():
        want = net(windows)["clipwise_output"].mean(0)
    labels = released("panns_cnn6").label_names()
    assert [label for label, _ in result["top"]] == [labels[i] for i in torch.argsort(-want)[:5]]
    np.testing.assert_allclose([p for _, p in result["top"]], torch.sort(want, descending=True)[0][:5].numpy(),
                               rtol=1e-5)
