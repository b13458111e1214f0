"""Efficient audio CNNs in the zoo: BC-ResNet (Kim et al., Interspeech 2021) and MobileNetV3-Small.

Parameter counts are checked against the published numbers (the BC-ResNet paper's table at 12 classes and 40
log-mel bins; torchvision's ``mobilenet_v3_small`` weights entry), block counts against hand sums, SubSpectral
Norm against per-band statistics computed in numpy, and frequency sizes against the shapes a forward produces.
"""
import numpy as np
import pytest
import torch
from torch import nn

from audiocnn.core.errors import ConfigError
from audiocnn.models import create_model
from audiocnn.models.bc_resnet import BCResBlock, SubSpectralNorm, bc_resnet_freq_sizes
import zoo_support

one_thread = zoo_support.one_thread  # autouse: one thread for tiny forwards

# Kim et al. 2021, Table 2 (#Param, 12 classes, 40 log-mel bins), at the precision printed there (thousands)
BC_RESNET_PUBLISHED = {"bc_resnet_1": (9.2, 1), "bc_resnet_3": (54.2, 1), "bc_resnet_6": (188, 0),
                       "bc_resnet_8": (321, 0)}
MOBILENET_V3_SMALL_TORCHVISION = 2_542_856  # torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1 num_params


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", list(BC_RESNET_PUBLISHED))
def test_bc_resnet_published_parameter_counts(name):
    published, digits = BC_RESNET_PUBLISHED[name]
    net = create_model(name, num_classes=12, input_size=(1, 40, 101))
    assert round(n_params(net) / 1000, digits) == published


def test_bc_resnet_1_exact_count():
    # 9,232, as BC-ResNet-1 is quoted with full digits in later comparisons (e.g. the SparkNet table)
    assert n_params(create_model("bc_resnet_1", num_classes=12)) == 9_232


@pytest.mark.parametrize("cin,cout,bands", [(16, 8, 5), (8, 8, 5), (24, 24, 4)])
def test_bc_res_block_count_by_hand(cin, cout, bands):
    # f2: depthwise 3x1 (3C) + SubSpectral Norm (2CS); f1: depthwise 1x3 (3C) + BN (2C) + 1x1 (C^2);
    # a transition adds its 1x1 conv (Cin*Cout) and BN (2Cout)
    c = cout
    expected = 3 * c + 2 * c * bands + 3 * c + 2 * c + c * c
    if cin != cout:
        expected += cin * cout + 2 * cout
    assert n_params(BCResBlock(cin, cout, sub_bands=bands)) == expected


def test_subspectral_norm_normalises_each_band_separately():
    rng = np.random.default_rng(0)
    chans, bands, freq, frames = 3, 5, 20, 7
    x = rng.normal(size=(4, chans, freq, frames))
    x += np.arange(freq)[None, None, :, None] * 3.0  # every band has its own offset
    out = SubSpectralNorm(chans, sub_bands=bands).train()(torch.tensor(x, dtype=torch.float32)).detach().numpy()
    width = freq // bands
    for c in range(chans):
        for b in range(bands):
            ref = x[:, c, b * width:(b + 1) * width]
            expected = (ref - ref.mean()) / np.sqrt(ref.var() + 1e-5)
            np.testing.assert_allclose(out[:, c, b * width:(b + 1) * width], expected, atol=1e-4)


def test_normal_block_broadcast_residual_by_hand():
    # with f2 the identity (unit kernel, SSN in eval at its initial statistics) and f1 zeroed except its 1x1 conv
    # at identity, BN and swish are known: out = relu(x + x + swish(bn(mean_f(x))))
    block = BCResBlock(4, 4, sub_bands=2, drop_rate=0.0).eval()
    with torch.no_grad():
        block.f2[0].weight.zero_()
        block.f2[0].weight[:, :, 1, 0] = 1.0
        block.f1[0].weight.zero_()
        block.f1[0].weight[:, :, 0, 1] = 1.0
        block.f1[3].weight.copy_(torch.eye(4)[:, :, None, None])
    x = torch.randn(2, 4, 6, 9)
    eps = 1e-5
    mean_f = x.mean(2, keepdim=True) / np.sqrt(1 + eps)
    y = x / np.sqrt(1 + eps)
    expected = torch.relu(x + y + mean_f / np.sqrt(1 + eps) * torch.sigmoid(mean_f / np.sqrt(1 + eps)))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_mels,bands", [(40, 5), (80, 5), (64, 4), (64, 2)])
def test_frequency_sizes_match_the_forward(n_mels, bands):
    net = create_model("bc_resnet_1", num_classes=5, sub_bands=bands, input_size=(1, n_mels, 33)).eval()
    x = net.stem(torch.zeros(2, 1, n_mels, 33))
    seen = [x.shape[2]]
    for stage in list(net.stages)[:4]:
        x = stage(x)
        seen.append(x.shape[2])
    assert seen == bc_resnet_freq_sizes(n_mels)
    assert seen[0] == -(-n_mels // 2) and seen[-1] == -(-n_mels // 8)  # three halvings, hand rule
    assert net(torch.randn(2, 1, n_mels, 33)).shape == (2, 5)


def test_unsuitable_n_mels_is_a_config_error_naming_the_keys():
    with pytest.raises(ConfigError, match=r"frontend.n_mels=64.*sub_bands=5.*multiple of 40"):
        create_model("bc_resnet_3", input_size=(1, 64, 101))
    with pytest.raises(ConfigError, match="sub_bands=5"):
        SubSpectralNorm(2, sub_bands=5)(torch.zeros(1, 2, 8, 3))


def test_bc_resnet_trains_on_a_tiny_task():
    torch.manual_seed(0)
    # class 0: energy in the low mel bands, class 1: in the high ones
    x = torch.randn(16, 1, 40, 24) * 0.1
    labels = torch.arange(16) % 2
    x[labels == 0, :, :20] += 1.0
    x[labels == 1, :, 20:] += 1.0
    net = create_model("bc_resnet_1", num_classes=2, input_size=(1, 40, 24))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():  # batch statistics: 15 steps are too few for the running averages to settle
        assert (net(x).argmax(1) == labels).float().mean() >= 0.9


def test_mobilenet_v3_small_matches_torchvision_count():
    assert n_params(create_model("mobilenet_v3_small", num_classes=1000, in_chans=3)) == MOBILENET_V3_SMALL_TORCHVISION


def test_mnv3_small_audio_forward_on_a_spectrogram():
    net = create_model("mnv3_small_audio", num_classes=7).eval()
    assert net(torch.randn(2, 1, 64, 101)).shape == (2, 7)
    # width 0.5: stem make_divisible(16 * 0.5) = 8 channels on one input channel, head make_divisible(1024 * 0.5)
    assert net.stem[0][0][0].weight.shape == (8, 1, 3, 3)
    assert net.head.fc.in_features == 512
