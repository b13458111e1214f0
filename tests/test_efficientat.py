"""EfficientAT (Schmid et al., ICASSP 2023): published parameter counts, the official state-dict layout, the
reference forward, and the log-mel front-end against NumPy.

The reference layout below is written here from the reference architecture (fschmid56/EfficientAT,
``models/mn/model.py`` and ``block_types.py``: torchvision-style ``ConvNormActivation`` sequences, the
``InvertedResidual.block`` sequence, SE as two ``nn.Linear`` under ``conc_se_layers.0``, the ``mlp`` classifier
at indices 2 and 5), independently of audiocnn's modules; the reference forward uses only
``torch.nn.functional`` on such a state dict. The front-end is checked against NumPy written from the
reference's ``AugmentMelSTFT`` and Kaldi's mel-bank formula.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiocnn.cli import main
from audiocnn.features.efficientat_input import EfficientATMel
from audiocnn.modalities.audio import AudioClassifier
from audiocnn.models import ConvNet, create_model, list_models
from audiocnn.models.blocks import SqueezeExcite, make_divisible
from audiocnn.models.efficientat import reference_embedding
from audiocnn.models.mobilenet_v3 import mobilenet_v3_large_stages
from audiocnn.models.pretrained import PretrainedError, load_pretrained, load_state_dict_mapped
import zoo_support
from zoo_support import fill, n_learnable

one_thread = zoo_support.one_thread  # autouse: one thread for tiny forwards

# EfficientAT README, "Params (Millions)", to 2-3 decimals, not exactly. 983,599 is published as 0.983 (cut, not
# rounded; 4,876,831 and 68,427,303 are rounded), so a count must lie within one unit of the last published digit.
PUBLISHED_M = {"efficientat_mn04": (0.983, 3), "efficientat_mn10": (4.88, 2), "efficientat_mn40": (68.43, 2)}
WIDTH = {"efficientat_mn04": 0.4, "efficientat_mn10": 1.0, "efficientat_mn40": 4.0}


# --- the reference layout, from the reference architecture -----------------------------------------------------------

# MobileNetV3-Large bottlenecks as EfficientAT's _mobilenet_v3_conf lists them:
# (in, kernel, expanded, out, SE, hard-swish, stride)
MNV3 = [(16, 3, 16, 16, 0, 0, 1), (16, 3, 64, 24, 0, 0, 2), (24, 3, 72, 24, 0, 0, 1), (24, 5, 72, 40, 1, 0, 2),
        (40, 5, 120, 40, 1, 0, 1), (40, 5, 120, 40, 1, 0, 1), (40, 3, 240, 80, 0, 1, 2), (80, 3, 200, 80, 0, 1, 1),
        (80, 3, 184, 80, 0, 1, 1), (80, 3, 184, 80, 0, 1, 1), (80, 3, 480, 112, 1, 1, 1), (112, 3, 672, 112, 1, 1, 1),
        (112, 5, 672, 160, 1, 1, 2), (160, 5, 960, 160, 1, 1, 1), (160, 5, 960, 160, 1, 1, 1)]


def divisible(v, d=8):
    # EfficientAT's make_divisible (from the TensorFlow MobileNet code), restated
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def ref_layout(width, num_classes=527):
    """{key: shape} of an EfficientAT ``mn`` state dict with the ``mlp`` head."""
    shapes = {}

    def conv_bn(prefix, cout, cin_per_group, k):
        shapes[f"{prefix}.0.weight"] = (cout, cin_per_group, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.1.{p}"] = (cout,)
        shapes[f"{prefix}.1.num_batches_tracked"] = ()

    conv_bn("features.0", divisible(16 * width), 1, 3)
    for k, (cin, ks, exp, cout, se, _, _) in enumerate(MNV3, 1):
        cin, exp, cout, n = divisible(cin * width), divisible(exp * width), divisible(cout * width), 0
        if exp != cin:
            conv_bn(f"features.{k}.block.0", exp, cin, 1)
            n = 1
        conv_bn(f"features.{k}.block.{n}", exp, 1, ks)
        if se:
            n += 1
            sq, p = divisible(exp // 4), f"features.{k}.block.{n}.conc_se_layers.0"
            shapes.update({f"{p}.fc1.weight": (sq, exp), f"{p}.fc1.bias": (sq,), f"{p}.fc2.weight": (exp, sq),
                           f"{p}.fc2.bias": (exp,)})
        conv_bn(f"features.{k}.block.{n + 1}", cout, exp, 1)
    last, hidden = 6 * divisible(160 * width), divisible(1280 * width)
    conv_bn("features.16", last, divisible(160 * width), 1)
    shapes.update({"classifier.2.weight": (hidden, last), "classifier.2.bias": (hidden,),
                   "classifier.5.weight": (num_classes, hidden), "classifier.5.bias": (num_classes,)})
    return shapes


def ref_forward(sd, x, width):
    """EfficientAT's MN forward in torch.nn.functional: (logits, pooled features)."""
    def cba(x, p, act=None, stride=1, groups=1):
        w = sd[f"{p}.0.weight"]
        x = F.conv2d(x, w, stride=stride, padding=(w.shape[-1] - 1) // 2, groups=groups)
        x = F.batch_norm(x, sd[f"{p}.1.running_mean"], sd[f"{p}.1.running_var"], sd[f"{p}.1.weight"],
                         sd[f"{p}.1.bias"], training=False, eps=1e-3)
        return act(x) if act else x

    x = cba(x, "features.0", F.hardswish, stride=2)
    for k, (cin, _, exp, cout, se, hs, stride) in enumerate(MNV3, 1):
        cin, exp, cout, n, act = divisible(cin * width), divisible(exp * width), divisible(cout * width), 0, \
            (F.hardswish if hs else F.relu)
        y = x
        if exp != cin:
            y, n = cba(y, f"features.{k}.block.0", act), 1
        y = cba(y, f"features.{k}.block.{n}", act, stride=stride, groups=exp)
        if se:
            n += 1
            p = f"features.{k}.block.{n}.conc_se_layers.0"
            s = F.relu(F.linear(y.mean((2, 3)), sd[f"{p}.fc1.weight"], sd[f"{p}.fc1.bias"]))
            y = y * torch.sigmoid(F.linear(s, sd[f"{p}.fc2.weight"], sd[f"{p}.fc2.bias"]))[:, :, None, None]
        y = cba(y, f"features.{k}.block.{n + 1}")
        x = x + y if stride == 1 and cin == cout else y
    x = cba(x, "features.16", F.hardswish)
    features = x.mean((2, 3))
    h = F.hardswish(F.linear(features, sd["classifier.2.weight"], sd["classifier.2.bias"]))
    return F.linear(h, sd["classifier.5.weight"], sd["classifier.5.bias"]), features


# --- parameter counts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PUBLISHED_M))
def test_parameter_counts_match_the_published_table(name):
    with torch.device("meta"):  # counts without allocating mn40's 68 M parameters
        net = create_model(name)
    count = sum(p.numel() for p in net.parameters())
    published, digits = PUBLISHED_M[name]
    assert abs(count / 1e6 - published) < 10 ** -digits
    # the reference layout written above gives the same figure, so both describe the published network
    assert n_learnable(ref_layout(WIDTH[name])) == count


def test_the_generic_table_is_torchvisions_mobilenet_v3_large():
    # the same stage data with hard-sigmoid SE gates, 3 input channels and 1000 classes: torchvision's published
    # num_params for mobilenet_v3_large is 5,483,032
    stem, stages, hidden = mobilenet_v3_large_stages(1.0)
    with torch.device("meta"):
        net = ConvNet(stages, stem=stem, in_chans=3, num_classes=1000, head_hidden=(hidden,), act_layer="hardswish")
    assert sum(p.numel() for p in net.parameters()) == 5_483_032
    assert all(isinstance(m.gate, torch.nn.Hardsigmoid) for m in net.modules() if isinstance(m, SqueezeExcite))


def test_make_divisible_is_mobilenets_rounding():
    assert [make_divisible(v) for v in (6.4, 18, 25.6, 64 * 0.4, 1280 * 0.4, 3.0)] == [8, 24, 24, 24, 512, 8]
    assert all(make_divisible(v / 10) == divisible(v / 10) for v in range(1, 20000, 7))


def test_registered_and_listed():
    assert {"efficientat_mn04", "efficientat_mn10", "efficientat_mn40"} <= set(list_models("efficientat*"))


def test_list_models_command_shows_the_three(capsys):
    assert main(["list-models", "efficientat*"]) == 0
    assert capsys.readouterr().out.split() == ["efficientat_mn04", "efficientat_mn10", "efficientat_mn40"]


def test_summary_command(capsys):
    assert main(["summary", "efficientat_mn10", "--input-shape", "1,1,128,100", "--num-classes", "527"]) == 0
    out = capsys.readouterr().out
    assert "total params:       4,876,831" in out and "1x527" in out


# --- the official layout --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["efficientat_mn04", "efficientat_mn10"])
def test_official_layout_loads_exactly_and_matches_the_reference_forward(name):
    sd = fill(ref_layout(WIDTH[name]))
    net = create_model(name).eval()
    info = load_state_dict_mapped(net, sd, model_name=name)
    assert info == {"layout": "EfficientAT", "loaded": len(sd), "adapted_first_conv": False, "replaced_head": False}
    # every file tensor sits in the model unchanged (SE linears as 1x1 convs hold the same numbers)
    ours = sorted(tuple(t.flatten().tolist()[:4]) + (t.numel(),) for t in net.state_dict().values())
    theirs = sorted(tuple(t.flatten().tolist()[:4]) + (t.numel(),) for t in sd.values())
    assert ours == theirs
    x = torch.randn(2, 1, 128, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_logits, ref_features = ref_forward(sd, x, WIDTH[name])
        logits, features = net(x), reference_embedding(net, x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4 * ref_logits.abs().max().item())
    torch.testing.assert_close(features, ref_features, rtol=1e-4, atol=1e-4 * ref_features.abs().max().item())


def test_mn40_official_names_and_shapes_fit():
    shapes = ref_layout(4.0)
    with torch.device("meta"):
        net = create_model("efficientat_mn40")
        sd = {k: torch.empty(s, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
              for k, s in shapes.items()}
    info = load_state_dict_mapped(net, sd, model_name="efficientat_mn40")
    assert info["layout"] == "EfficientAT" and info["loaded"] == len(shapes)


def test_released_file_loads_through_load_pretrained(tmp_path):
    sd = fill(ref_layout(0.4), seed=3)
    path = tmp_path / "mn04_as_mAP_432.pt"
    torch.save(sd, path)
    net = create_model("efficientat_mn04", num_classes=10)
    info = load_pretrained(net, path, model_name="efficientat_mn04")
    assert info["replaced_head"] and info["loaded"] == len(sd) - 2
    assert torch.equal(net.stem[0][0][0].weight, sd["features.0.0.weight"])
    assert torch.equal(net.head.hidden[0].weight, sd["classifier.2.weight"])


def test_a_file_of_another_width_is_named():
    sd = fill(ref_layout(1.0))
    with pytest.raises(PretrainedError) as e:
        load_state_dict_mapped(create_model("efficientat_mn04"), sd, model_name="efficientat_mn04")
    msg = str(e.value)
    assert "shape mismatch" in msg and "features.0.0.weight (16, 1, 3, 3)" in msg
    assert "mn10 (width_mult=1.0, 527 classes): use model efficientat_mn10" in msg


def test_missing_and_unexpected_keys_are_named():
    sd = fill(ref_layout(0.4))
    del sd["features.4.block.2.conc_se_layers.0.fc1.weight"]
    sd["classifier.9.weight"] = torch.zeros(3)
    with pytest.raises(PretrainedError) as e:
        load_state_dict_mapped(create_model("efficientat_mn04"), sd, model_name="efficientat_mn04")
    msg = str(e.value)
    assert "missing from the file (1): features.4.block.2.conc_se_layers.0.fc1.weight" in msg
    assert "unexpected in the file (1): classifier.9.weight" in msg


def test_embedding_widths_and_forward_shape():
    for name, (pooled, hidden) in {"efficientat_mn04": (384, 512), "efficientat_mn10": (960, 1280)}.items():
        net = create_model(name).eval()
        x = torch.randn(3, 1, 128, 50)
        with torch.no_grad():
            assert net(x).shape == (3, 527)
            assert reference_embedding(net, x).shape == (3, pooled)
            assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (3, hidden)
        assert net.num_features == hidden


# --- front-end --------------------------------------------------------------------------------------------------------

def np_kaldi_banks(n_mels, n_fft, sr, f_lo, f_hi):
    """Kaldi's MelBanks (no VTLN), one band at a time."""
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    m_lo, m_hi = mel(f_lo), mel(f_hi)
    step = (m_hi - m_lo) / (n_mels + 1)
    out = np.zeros((n_mels, n_fft // 2 + 1))
    for b in range(n_mels):
        left, centre, right = m_lo + b * step, m_lo + (b + 1) * step, m_lo + (b + 2) * step
        for k in range(n_fft // 2):  # the Nyquist bin is left out
            m = mel(k * sr / n_fft)
            if left < m < right:
                out[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    return out


def np_efficientat_mel(wave, sr=32000, n_fft=1024, win=800, hop=320, n_mels=128):
    y = wave[1:] - 0.97 * wave[:-1]
    y = np.pad(y, n_fft // 2, mode="reflect")
    n = 1 + (len(y) - n_fft) // hop
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2:(n_fft - win) // 2 + win] = np.hanning(win)  # symmetric Hann, centred
    frames = np.stack([y[i * hop:i * hop + n_fft] for i in range(n)]) * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = np_kaldi_banks(n_mels, n_fft, sr, 0.0, sr / 2 - 1000.0) @ power.T
    return (np.log(mel + 1e-5) + 4.5) / 5.0


def test_frontend_matches_numpy_reference():
    sr = 32000
    t = np.arange(int(0.7 * sr)) / sr
    rng = np.random.default_rng(0)
    waves = np.stack([0.3 * np.sin(2 * np.pi * (200 + 4000 * t) * t) + 0.01 * rng.standard_normal(len(t)),
                      0.1 * rng.standard_normal(len(t))])
    fe = EfficientATMel()
    out = fe(torch.from_numpy(waves).float())
    assert out.shape == (2, 128, fe.num_frames(len(t))) == (2, 128, 1 + (len(t) - 1) // 320)
    assert out.dtype == torch.float32 and not fe.state_dict()
    torch.nn.Sequential(fe).to(torch.bfloat16)  # a cast model keeps its front-end's window and banks in float32
    assert all(b.dtype == torch.float32 for b in fe.buffers())
    for i in range(2):
        np.testing.assert_allclose(out[i].numpy(), np_efficientat_mel(waves[i].astype(np.float32).astype(np.float64)),
                                   rtol=0, atol=2e-4)


def test_frontend_banks_match_the_per_band_formula():
    np.testing.assert_allclose(EfficientATMel().mel_fb.numpy(), np_kaldi_banks(128, 1024, 32000, 0.0, 15000.0),
                               rtol=0, atol=1e-6)


def test_frontend_rejects_too_short_audio():
    with pytest.raises(ValueError, match="too few"):
        EfficientATMel()(torch.zeros(1, 400))


def test_waveform_to_tags_through_an_audio_classifier():
    # what predict/embed will run: the front-end and the network in one AudioClassifier (its unfitted
    # FrequencyNorm is the identity, as EfficientAT normalises with fixed constants)
    fe, net = EfficientATMel(), create_model("efficientat_mn04").eval()
    clf = AudioClassifier(fe, net).eval()
    wave = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = clf(wave)
        torch.testing.assert_close(logits, net(fe(wave).unsqueeze(1)))
        assert logits.shape == (2, 527) and clf.embed(wave).shape == (2, 512)
