"""TCN and WaveNet: causality, receptive field (formula and impulse response), shapes, weight norm, sizes."""
import pytest
import torch
from torch.nn.utils import parametrize

from audiocnn.config import config_from_dict
from audiocnn.models import create_model
from audiocnn.build import build_classifier
from audiocnn.models.temporal import TemporalBlock

# Small configurations with their analytical receptive fields.
TCN = dict(channels=(8, 8, 8), kernel_size=3)  # 1 + 2 * (3 - 1) * (1 + 2 + 4) = 29
WAVENET = dict(stacks=2, layers=3, residual_chans=8, skip_chans=8, out_chans=8, kernel_size=2,
               input_kernel_size=3)  # 1 + (2 - 1) * 2 * (1 + 2 + 4) + (3 - 1) = 17
SMALL = {"tcn": (TCN, 29), "wavenet": (WAVENET, 17)}


def small(name, in_chans=3, **kw):
    torch.manual_seed(0)
    return create_model(name, in_chans=in_chans, num_classes=4, **SMALL[name][0], **kw).eval()


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["tcn", "wavenet"])
def test_causal_features_ignore_the_future(name):
    m, t = small(name), 20
    x = torch.randn(2, 3, 48)
    y = x.clone()
    y[..., t + 1:] = torch.randn(2, 3, 48 - t - 1)
    with torch.no_grad():
        fx, fy = m.forward_features(x), m.forward_features(y)
    assert fx.shape[-1] == 48
    torch.testing.assert_close(fx[..., :t + 1], fy[..., :t + 1], rtol=0, atol=0)
    assert not torch.allclose(fx[..., t + 1:], fy[..., t + 1:])


@pytest.mark.parametrize("name", ["tcn", "wavenet"])
def test_receptive_field_analytical_and_impulse_response(name):
    m, expected = small(name), SMALL[name][1]
    assert m.receptive_field == expected
    # the gradient of the last output step is non-zero exactly on the last `receptive_field` inputs
    T = 64
    x = torch.randn(2, 3, T, dtype=torch.float64, requires_grad=True)
    m.double().forward_features(x)[..., T - 1].sum().backward()
    seen = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().flatten().tolist()
    assert seen == list(range(T - expected, T))


def test_receptive_field_of_default_models():
    assert create_model("tcn").receptive_field == 1 + 2 * (3 - 1) * (2 ** 5 - 1)
    assert create_model("wavenet").receptive_field == 1 + 2 * (2 - 1) * (2 ** 6 - 1)


@pytest.mark.parametrize("name", ["tcn", "wavenet"])
@pytest.mark.parametrize("length", [1, 7, 33, 101])
def test_odd_lengths_keep_time_resolution(name, length):
    m = small(name)
    x = torch.randn(2, 3, length)
    feats = m.forward_features(x)
    assert feats.shape == (2, m.feature_info[-1]["num_chs"], length)
    assert m(x).shape == (2, 4)
    assert m.forward_head(feats, pre_logits=True).shape == (2, m.num_features)


def test_kernel_size_one_is_pointwise():
    m = create_model("tcn", in_chans=3, channels=(8, 8), kernel_size=1).eval()
    assert m.receptive_field == 1
    assert m.forward_features(torch.randn(1, 3, 9)).shape == (1, 8, 9)


def test_weight_norm_applied_after_initialisation():
    # conv1 has fan_in 16 * 3 = 48: He init gives std sqrt(2 / 48) = 0.204, PyTorch's default 1 / sqrt(3 * 48) = 0.083
    torch.manual_seed(0)
    for init_std, expected in ((None, (2 / 48) ** 0.5), (0.01, 0.01)):
        block = TemporalBlock(16, 32, kernel_size=3, init_std=init_std)
        for conv in (block.conv1, block.conv2):
            assert parametrize.is_parametrized(conv, "weight")
            g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
            assert g.shape == (32, 1, 1) and v.shape == conv.weight.shape
            torch.testing.assert_close(g.flatten(), v.flatten(1).norm(dim=1))  # g = |v| at the start
        # the init survives weight normalisation (it would not if applied to the parametrized weight afterwards)
        assert 0.85 * expected < block.conv1.weight.std().item() < 1.15 * expected


def test_tcn_parameter_count_by_hand():
    m = create_model("tcn", in_chans=4, channels=(8, 16), kernel_size=3, num_classes=5)

    def wn_conv(c_in, c_out, k):  # v, g (one per output channel) and bias
        return c_out * c_in * k + c_out + c_out

    total = wn_conv(4, 8, 3) + wn_conv(8, 8, 3) + (4 * 8 + 8)  # level 0 with its 1x1 projection
    total += wn_conv(8, 16, 3) + wn_conv(16, 16, 3) + (8 * 16 + 16)  # level 1
    total += 16 * 5 + 5  # linear head
    assert n_params(m) == total == 1805


def test_wavenet_parameter_count_by_hand():
    m = create_model("wavenet", in_chans=4, stacks=1, layers=2, residual_chans=8, gate_chans=6, skip_chans=5,
                     out_chans=7, kernel_size=2, num_classes=3)
    layer = (8 * 2 * 6 * 2 + 2 * 6) + (6 * 8 + 8) + (6 * 5 + 5)  # gated conv (tanh and sigmoid halves), residual, skip
    total = (4 * 8 + 8) + 2 * layer + (5 * 7 + 7) + (7 * 3 + 3)  # input conv, layers, post-net, head
    assert n_params(m) == total == 696


def test_wavenet_stacks_pass_residual_and_skip_sum():
    m = small("wavenet")
    assert [f["num_chs"] for f in m.feature_info] == [16, 16, 8]  # packed (residual 8 + skip 8), then post-net
    m.reset_classifier(6)
    assert m(torch.randn(1, 3, 11)).shape == (1, 6)


@pytest.mark.parametrize("block,args", [("tcn", {"stride": 2}), ("tcn", {"norm_layer": "batchnorm"}),
                                        ("wavenet_stack", {"residual_chans": 4})])
def test_bad_block_settings_are_errors(block, args):
    from audiocnn.models import BLOCKS

    kw = {"stride": 1, "dims": 1, "norm_layer": "none", "act_layer": "relu", **args}
    with pytest.raises(ValueError, match=block):
        BLOCKS.get(block)(3, 8, **kw)


@pytest.mark.parametrize("name", ["tcn", "wavenet"])
@pytest.mark.parametrize("frontend,in_chans", [({"kind": "waveform"}, 1),
                                               ({"kind": "mfcc", "n_mfcc": 40, "n_mels": 64, "n_fft": 256,
                                                 "hop_length": 80}, 40)])
def test_waveform_and_mfcc_inputs_through_the_classifier(name, frontend, in_chans):
    args = {"channels": [8, 8]} if name == "tcn" else {"stacks": 1, "layers": 3, "residual_chans": 8,
                                                        "skip_chans": 8, "out_chans": 8}
    cfg = config_from_dict({"data": {"sample_rate": 8000, "duration": 0.1}, "frontend": frontend,
                            "model": {"name": name, "args": args}})
    model = build_classifier(cfg, labels=["a", "b", "c"]).eval()
    assert model.network.in_chans == in_chans and model.network.dims == 1
    wave = torch.randn(2, 801)
    assert model(wave).shape == (2, 3)
    assert model.embed(wave).shape == (2, model.network.num_features)


def test_state_dict_round_trip():
    a, b = small("tcn"), create_model("tcn", in_chans=3, num_classes=4, **TCN).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 20)
    torch.testing.assert_close(a(x), b(x))
