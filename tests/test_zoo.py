"""The model zoo: published parameter counts, small forwards, and loading weights in torchvision's layout.

The torchvision layouts below are written here from the published architectures (key names and shapes),
independently of audiocnn's modules; the reference forwards use only ``torch.nn.functional`` on those
state dicts. Loading a random state dict and matching the reference forward proves the key mapping.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from audiocnn.core.checkpoint import FORMAT
from audiocnn.models import create_model
from audiocnn.models.blocks import InvertedResidual
from audiocnn.models.image_cnns import IMAGE_MODELS
from audiocnn.models.pretrained import (PretrainedError, adapt_input_conv, freeze, load_pretrained,
                                       load_state_dict_mapped)
import zoo_support
from zoo_support import fill, n_learnable

one_thread = zoo_support.one_thread  # autouse: one thread for tiny forwards

# torchvision's published counts (the `num_params` of each model's weights entry); LeNet-5: the classic 61,706.
PUBLISHED = {
    "lenet5": 61_706, "alexnet": 61_100_840, "vgg11": 132_863_336, "vgg16": 138_357_544, "googlenet": 6_624_904,
    "resnet18": 11_689_512, "resnet50": 25_557_032, "resnext50_32x4d": 25_028_904, "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872, "efficientnet_b0": 5_288_548,
}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# --- parameter counts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_published_parameter_count(name):
    kwargs = {} if name == "lenet5" else {"num_classes": 1000, "in_chans": 3}
    with torch.device("meta"):  # no memory, no init: the count is structural
        assert n_params(create_model(name, **kwargs)) == PUBLISHED[name]


def test_lenet5_mnist_padding_keeps_the_count():
    m = create_model("lenet5", padding=2, input_size=(1, 28, 28))
    assert n_params(m) == 61_706
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def _conv_bn(cin, c, k):
    return k * k * cin * c + 2 * c


def test_spectrogram_cnn_counts_by_hand():
    # cnn_tiny: three VGG stages of two bias-free 3x3 convs + BN (16-32-64), linear head.
    total, cin = 0, 1
    for c in (16, 32, 64):
        total += _conv_bn(cin, c, 3) + _conv_bn(c, c, 3)
        cin = c
    assert n_params(create_model("cnn_tiny", num_classes=10)) == total + 64 * 10 + 10
    # cnn_small: the same at 32-64-128-256.
    total, cin = 0, 1
    for c in (32, 64, 128, 256):
        total += _conv_bn(cin, c, 3) + _conv_bn(c, c, 3)
        cin = c
    assert n_params(create_model("cnn_small", num_classes=10)) == total + 256 * 10 + 10
    # resnet_small: 3x3 stem to 32, basic blocks (2, 2, 2, 2) at 32-64-128-256, 1x1 projections when the shape changes.
    total, cin = _conv_bn(1, 32, 3), 32
    for i, c in enumerate((32, 64, 128, 256)):
        for j in range(2):
            total += _conv_bn(cin, c, 3) + _conv_bn(c, c, 3)
            if j == 0 and (i > 0 or cin != c):
                total += _conv_bn(cin, c, 1)
            cin = c
    assert n_params(create_model("resnet_small", num_classes=10)) == total + 256 * 10 + 10


# --- small forwards -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGE_MODELS + ["cnn_tiny", "cnn_small", "resnet_small"])
def test_forward_spectrogram_and_rgb(name):
    size = 32 if name == "lenet5" else 64
    torch.manual_seed(0)
    m = create_model(name, num_classes=7, in_chans=1).eval()
    # the default 4096-wide heads of AlexNet/VGG take seconds to initialise; build them once
    small_head = {"head_hidden": (32, 32)} if name in ("alexnet", "vgg11", "vgg16") else {}
    with torch.no_grad():
        assert m(torch.randn(1, 1, size, size)).shape == (1, 7)
        m = create_model(name, num_classes=5, in_chans=3, **small_head).eval()
        y = m(torch.randn(2, 3, size, size))
    assert y.shape == (2, 5) and torch.isfinite(y).all()


def test_spectrogram_shaped_input_and_features():
    m = create_model("resnet18", num_classes=4, in_chans=1).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 1, 40, 101)).shape == (1, 4)  # n_mels x frames, not square
        assert m.forward_head(m.forward_features(torch.randn(1, 1, 40, 101)), pre_logits=True).shape == (1, 512)
    assert [f["num_chs"] for f in m.feature_info] == [64, 128, 256, 512]


def test_efficientnet_stochastic_depth_ramp():
    m = create_model("efficientnet_b0", num_classes=3)
    rates = [b.drop_path.p for b in m.modules() if isinstance(b, InvertedResidual)]
    assert len(rates) == 16 and rates[0] == 0.0 and math.isclose(rates[-1], 0.2 * 15 / 16)
    m.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))  # parameter-free and off in eval


# --- torchvision layouts, written from the published architectures --------------------------------------------

class Ref(dict):
    """Reference key -> shape."""

    def conv(self, name, cout, cin, k, bias=False):
        self[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            self[f"{name}.bias"] = (cout,)

    def bn(self, name, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            self[f"{name}.{s}"] = (c,)
        self[f"{name}.num_batches_tracked"] = ()

    def linear(self, name, cout, cin):
        self[f"{name}.weight"] = (cout, cin)
        self[f"{name}.bias"] = (cout,)


def tv_resnet(layers, bottleneck, groups=1, width_per_group=64, num_classes=1000):
    r, inplanes, exp = Ref(), 64, 4 if bottleneck else 1
    r.conv("conv1", 64, 3, 7)
    r.bn("bn1", 64)
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        for j in range(n):
            p, stride = f"layer{i + 1}.{j}", 2 if i > 0 and j == 0 else 1
            if bottleneck:
                width = int(planes * width_per_group / 64) * groups
                r.conv(f"{p}.conv1", width, inplanes, 1), r.bn(f"{p}.bn1", width)
                r.conv(f"{p}.conv2", width, width // groups, 3), r.bn(f"{p}.bn2", width)
                r.conv(f"{p}.conv3", planes * 4, width, 1), r.bn(f"{p}.bn3", planes * 4)
            else:
                r.conv(f"{p}.conv1", planes, inplanes, 3), r.bn(f"{p}.bn1", planes)
                r.conv(f"{p}.conv2", planes, planes, 3), r.bn(f"{p}.bn2", planes)
            if j == 0 and (stride != 1 or inplanes != planes * exp):
                r.conv(f"{p}.downsample.0", planes * exp, inplanes, 1), r.bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    r.linear("fc", num_classes, 512 * exp)
    return r


VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def tv_vgg(cfg, hidden, num_classes=1000):
    r, idx, cin = Ref(), 0, 3
    for v in cfg:
        if v == "M":
            idx += 1
        else:
            r.conv(f"features.{idx}", v, cin, 3, bias=True)
            idx, cin = idx + 2, v
    r.linear("classifier.0", hidden, 512 * 7 * 7), r.linear("classifier.3", hidden, hidden)
    r.linear("classifier.6", num_classes, hidden)
    return r


ALEXNET_CONVS = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]


def tv_alexnet(hidden, num_classes=1000):
    r = Ref()
    for idx, cout, cin, k in ALEXNET_CONVS:
        r.conv(f"features.{idx}", cout, cin, k, bias=True)
    r.linear("classifier.1", hidden, 256 * 6 * 6), r.linear("classifier.4", hidden, hidden)
    r.linear("classifier.6", num_classes, hidden)
    return r


INCEPTION = [("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
             ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
             ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
             ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
             ("5b", 832, 384, 192, 384, 48, 128, 128)]


def tv_googlenet(num_classes=1000, aux=False):
    r = Ref()

    def basic(name, cout, cin, k):
        r.conv(f"{name}.conv", cout, cin, k), r.bn(f"{name}.bn", cout)

    basic("conv1", 64, 3, 7), basic("conv2", 64, 64, 1), basic("conv3", 192, 64, 3)
    for name, cin, c1, r3, c3, r5, c5, pp in INCEPTION:
        p = f"inception{name}"
        basic(f"{p}.branch1", c1, cin, 1)
        basic(f"{p}.branch2.0", r3, cin, 1), basic(f"{p}.branch2.1", c3, r3, 3)
        basic(f"{p}.branch3.0", r5, cin, 1), basic(f"{p}.branch3.1", c5, r5, 3)  # torchvision's 3x3
        basic(f"{p}.branch4.1", pp, cin, 1)
    if aux:
        for a, cin in (("aux1", 512), ("aux2", 528)):
            basic(f"{a}.conv", 128, cin, 1), r.linear(f"{a}.fc1", 1024, 2048), r.linear(f"{a}.fc2", num_classes, 1024)
    r.linear("fc", num_classes, 1024)
    return r


def tv_densenet121(num_classes=1000):
    r, c = Ref(), 64
    r.conv("features.conv0", 64, 3, 7), r.bn("features.norm0", 64)
    for b, n in enumerate((6, 12, 24, 16)):
        for j in range(n):
            p, cin = f"features.denseblock{b + 1}.denselayer{j + 1}", c + j * 32
            r.bn(f"{p}.norm1", cin), r.conv(f"{p}.conv1", 128, cin, 1)
            r.bn(f"{p}.norm2", 128), r.conv(f"{p}.conv2", 32, 128, 3)
        c += n * 32
        if b < 3:
            r.bn(f"features.transition{b + 1}.norm", c), r.conv(f"features.transition{b + 1}.conv", c // 2, c, 1)
            c //= 2
    r.bn("features.norm5", c)
    r.linear("classifier", num_classes, c)
    return r


MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def tv_mobilenet_v2(num_classes=1000):
    r, k, cin = Ref(), 1, 32
    r.conv("features.0.0", 32, 3, 3), r.bn("features.0.1", 32)
    for t, c, n, _ in MBV2:
        for _ in range(n):
            p, i, hid = f"features.{k}.conv", 0, cin * t
            if t != 1:
                r.conv(f"{p}.0.0", hid, cin, 1), r.bn(f"{p}.0.1", hid)
                i = 1
            r.conv(f"{p}.{i}.0", hid, 1, 3), r.bn(f"{p}.{i}.1", hid)
            r.conv(f"{p}.{i + 1}", c, hid, 1), r.bn(f"{p}.{i + 2}", c)
            k, cin = k + 1, c
    r.conv("features.18.0", 1280, 320, 1), r.bn("features.18.1", 1280)
    r.linear("classifier.1", num_classes, 1280)
    return r


EFFB0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
         (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # expand, kernel, stride, out, layers


def tv_efficientnet_b0(num_classes=1000):
    r, cin = Ref(), 32
    r.conv("features.0.0", 32, 3, 3), r.bn("features.0.1", 32)
    for s, (t, k, _, c, n) in enumerate(EFFB0, 1):
        for b in range(n):
            p, i, exp, sq = f"features.{s}.{b}.block", 0, cin * t, max(1, cin // 4)
            if t != 1:
                r.conv(f"{p}.0.0", exp, cin, 1), r.bn(f"{p}.0.1", exp)
                i = 1
            r.conv(f"{p}.{i}.0", exp, 1, k), r.bn(f"{p}.{i}.1", exp)
            r.conv(f"{p}.{i + 1}.fc1", sq, exp, 1, bias=True), r.conv(f"{p}.{i + 1}.fc2", exp, sq, 1, bias=True)
            r.conv(f"{p}.{i + 2}.0", c, exp, 1), r.bn(f"{p}.{i + 2}.1", c)
            cin = c
    r.conv("features.8.0", 1280, 320, 1), r.bn("features.8.1", 1280)
    r.linear("classifier.1", num_classes, 1280)
    return r


@pytest.mark.parametrize("name, layout", [
    ("resnet18", tv_resnet((2, 2, 2, 2), False)), ("resnet50", tv_resnet((3, 4, 6, 3), True)),
    ("resnext50_32x4d", tv_resnet((3, 4, 6, 3), True, groups=32, width_per_group=4)),
    ("googlenet", tv_googlenet()), ("densenet121", tv_densenet121()), ("mobilenet_v2", tv_mobilenet_v2()),
    ("efficientnet_b0", tv_efficientnet_b0()), ("vgg11", tv_vgg(VGG11_CFG, 4096)), ("alexnet", tv_alexnet(4096)),
])
def test_reference_layouts_match_published_counts(name, layout):
    # The layouts written in this file are themselves checked against torchvision's published numbers.
    assert n_learnable(layout) == PUBLISHED[name]


# --- reference forwards (functional, over torchvision's names) ----------------------------------------------------

def conv(x, sd, p, stride=1, padding=0, groups=1):
    return F.conv2d(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"), stride, padding, 1, groups)


def bn(x, sd, p, eps=1e-5):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, eps)


def fwd_resnet(sd, x, layers, bottleneck, groups=1):
    x = F.max_pool2d(F.relu(bn(conv(x, sd, "conv1", 2, 3), sd, "bn1")), 3, 2, 1)
    for i, n in enumerate(layers):
        for j in range(n):
            p, s = f"layer{i + 1}.{j}", 2 if i > 0 and j == 0 else 1
            if bottleneck:
                h = F.relu(bn(conv(x, sd, f"{p}.conv1"), sd, f"{p}.bn1"))
                h = F.relu(bn(conv(h, sd, f"{p}.conv2", s, 1, groups), sd, f"{p}.bn2"))
                h = bn(conv(h, sd, f"{p}.conv3"), sd, f"{p}.bn3")
            else:
                h = F.relu(bn(conv(x, sd, f"{p}.conv1", s, 1), sd, f"{p}.bn1"))
                h = bn(conv(h, sd, f"{p}.conv2", 1, 1), sd, f"{p}.bn2")
            short = bn(conv(x, sd, f"{p}.downsample.0", s), sd, f"{p}.downsample.1") \
                if f"{p}.downsample.0.weight" in sd else x
            x = F.relu(h + short)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


def fwd_vgg(sd, x, cfg):
    idx = 0
    for v in cfg:
        if v == "M":
            x, idx = F.max_pool2d(x, 2), idx + 1
        else:
            x, idx = F.relu(conv(x, sd, f"features.{idx}", 1, 1)), idx + 2
    x = F.adaptive_avg_pool2d(x, 7).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"]))
    x = F.relu(F.linear(x, sd["classifier.3.weight"], sd["classifier.3.bias"]))
    return F.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


def fwd_alexnet(sd, x):
    x = F.max_pool2d(F.relu(conv(x, sd, "features.0", 4, 2)), 3, 2)
    x = F.max_pool2d(F.relu(conv(x, sd, "features.3", 1, 2)), 3, 2)
    x = F.relu(conv(x, sd, "features.6", 1, 1))
    x = F.relu(conv(x, sd, "features.8", 1, 1))
    x = F.max_pool2d(F.relu(conv(x, sd, "features.10", 1, 1)), 3, 2)
    x = F.adaptive_avg_pool2d(x, 6).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    x = F.relu(F.linear(x, sd["classifier.4.weight"], sd["classifier.4.bias"]))
    return F.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


def fwd_googlenet(sd, x):
    def basic(x, p, stride=1, padding=0):
        return F.relu(bn(conv(x, sd, f"{p}.conv", stride, padding), sd, f"{p}.bn", eps=1e-3))

    x = F.max_pool2d(basic(x, "conv1", 2, 3), 3, 2, ceil_mode=True)
    x = F.max_pool2d(basic(basic(x, "conv2"), "conv3", 1, 1), 3, 2, ceil_mode=True)
    for name, *_ in INCEPTION:
        p = f"inception{name}"
        x = torch.cat([basic(x, f"{p}.branch1"), basic(basic(x, f"{p}.branch2.0"), f"{p}.branch2.1", 1, 1),
                       basic(basic(x, f"{p}.branch3.0"), f"{p}.branch3.1", 1, 1),
                       basic(F.max_pool2d(x, 3, 1, 1, ceil_mode=True), f"{p}.branch4.1")], 1)
        if name == "3b":
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        elif name == "4e":
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


def fwd_densenet121(sd, x):
    x = F.max_pool2d(F.relu(bn(conv(x, sd, "features.conv0", 2, 3), sd, "features.norm0")), 3, 2, 1)
    for b, n in enumerate((6, 12, 24, 16)):
        feats = [x]
        for j in range(n):
            p = f"features.denseblock{b + 1}.denselayer{j + 1}"
            h = conv(F.relu(bn(torch.cat(feats, 1), sd, f"{p}.norm1")), sd, f"{p}.conv1")
            feats.append(conv(F.relu(bn(h, sd, f"{p}.norm2")), sd, f"{p}.conv2", 1, 1))
        x = torch.cat(feats, 1)
        if b < 3:
            t = f"features.transition{b + 1}"
            x = F.avg_pool2d(conv(F.relu(bn(x, sd, f"{t}.norm")), sd, f"{t}.conv"), 2)
    x = F.relu(bn(x, sd, "features.norm5"))
    return F.linear(x.mean((2, 3)), sd["classifier.weight"], sd["classifier.bias"])


def fwd_mobilenet_v2(sd, x):
    x = F.relu6(bn(conv(x, sd, "features.0.0", 2, 1), sd, "features.0.1"))
    k, cin = 1, 32
    for t, c, n, s in MBV2:
        for j in range(n):
            p, i, stride, hid = f"features.{k}.conv", 0, s if j == 0 else 1, cin * t
            h = x
            if t != 1:
                h, i = F.relu6(bn(conv(h, sd, f"{p}.0.0"), sd, f"{p}.0.1")), 1
            h = F.relu6(bn(conv(h, sd, f"{p}.{i}.0", stride, 1, hid), sd, f"{p}.{i}.1"))
            h = bn(conv(h, sd, f"{p}.{i + 1}"), sd, f"{p}.{i + 2}")
            x = x + h if stride == 1 and cin == c else h
            k, cin = k + 1, c
    x = F.relu6(bn(conv(x, sd, "features.18.0"), sd, "features.18.1"))
    return F.linear(x.mean((2, 3)), sd["classifier.1.weight"], sd["classifier.1.bias"])


def fwd_efficientnet_b0(sd, x):
    x = F.silu(bn(conv(x, sd, "features.0.0", 2, 1), sd, "features.0.1"))
    cin = 32
    for s, (t, k, st, c, n) in enumerate(EFFB0, 1):
        for b in range(n):
            p, i, stride, exp = f"features.{s}.{b}.block", 0, st if b == 0 else 1, cin * t
            h = x
            if t != 1:
                h, i = F.silu(bn(conv(h, sd, f"{p}.0.0"), sd, f"{p}.0.1")), 1
            h = F.silu(bn(conv(h, sd, f"{p}.{i}.0", stride, k // 2, exp), sd, f"{p}.{i}.1"))
            se = conv(F.silu(conv(h.mean((2, 3), keepdim=True), sd, f"{p}.{i + 1}.fc1")), sd, f"{p}.{i + 1}.fc2")
            h = bn(conv(h * torch.sigmoid(se), sd, f"{p}.{i + 2}.0"), sd, f"{p}.{i + 2}.1")
            x = x + h if stride == 1 and cin == c else h
            cin = c
    x = F.silu(bn(conv(x, sd, "features.8.0"), sd, "features.8.1"))
    return F.linear(x.mean((2, 3)), sd["classifier.1.weight"], sd["classifier.1.bias"])


# (layout, reference forward, extra create_model kwargs); VGG/AlexNet with a 64-wide head to keep the files small.
CASES = {
    "resnet18": (lambda: tv_resnet((2, 2, 2, 2), False), lambda sd, x: fwd_resnet(sd, x, (2, 2, 2, 2), False), {}),
    "resnet50": (lambda: tv_resnet((3, 4, 6, 3), True), lambda sd, x: fwd_resnet(sd, x, (3, 4, 6, 3), True), {}),
    "resnext50_32x4d": (lambda: tv_resnet((3, 4, 6, 3), True, 32, 4),
                        lambda sd, x: fwd_resnet(sd, x, (3, 4, 6, 3), True, 32), {}),
    "vgg11": (lambda: tv_vgg(VGG11_CFG, 64), lambda sd, x: fwd_vgg(sd, x, VGG11_CFG), {"head_hidden": (64, 64)}),
    "alexnet": (lambda: tv_alexnet(64), fwd_alexnet, {"head_hidden": (64, 64)}),
    "googlenet": (lambda: tv_googlenet(aux=True), fwd_googlenet, {}),
    "densenet121": (tv_densenet121, fwd_densenet121, {}),
    "mobilenet_v2": (tv_mobilenet_v2, fwd_mobilenet_v2, {}),
    "efficientnet_b0": (tv_efficientnet_b0, fwd_efficientnet_b0, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_torchvision_layout_loads_and_matches_reference_forward(name):
    layout, forward, kwargs = CASES[name]
    sd = fill(layout())
    net = create_model(name, num_classes=1000, in_chans=3, **kwargs).eval()
    info = load_state_dict_mapped(net, sd, model_name=name)
    assert info["layout"] == "torchvision" and not info["replaced_head"] and not info["adapted_first_conv"]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = net(x), forward(sd, x)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    sd = fill(tv_resnet((2, 2, 2, 2), False))
    path = tmp_path_factory.mktemp("weights") / "resnet18-torchvision.pth"
    torch.save(sd, path)
    return path, sd


def test_resnet18_file_tensors_land_in_the_right_modules(resnet18_file):
    path, sd = resnet18_file
    net = create_model("resnet18", num_classes=10, in_chans=3)
    fresh_head = net.head.fc.weight.detach().clone()
    info = load_pretrained(net, path, model_name="resnet18")
    assert info == {"layout": "torchvision", "loaded": len(sd) - 2, "adapted_first_conv": False,
                    "replaced_head": True}
    assert torch.equal(net.stem[0][0][0].weight, sd["conv1.weight"])
    assert torch.equal(net.stem[0][0][1].running_mean, sd["bn1.running_mean"])
    assert torch.equal(net.stages[2][1].conv2[1].running_var, sd["layer3.1.bn2.running_var"])
    assert torch.equal(net.stages[1][0].shortcut[0].weight, sd["layer2.0.downsample.0.weight"])
    assert torch.equal(net.stages[3][1].conv1[0].weight, sd["layer4.1.conv1.weight"])
    assert net.head.fc.weight.shape == (10, 512) and torch.equal(net.head.fc.weight, fresh_head)


def test_first_conv_adapted_for_other_channel_counts(resnet18_file):
    path, sd = resnet18_file
    mono = create_model("resnet18", num_classes=1000, in_chans=1)
    assert load_pretrained(mono, path, model_name="resnet18")["adapted_first_conv"]
    torch.testing.assert_close(mono.stem[0][0][0].weight, sd["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(mono.head.fc.weight, sd["fc.weight"])  # same class count: the head is kept
    five = create_model("resnet18", num_classes=10, in_chans=5)
    load_pretrained(five, path, model_name="resnet18")
    w = sd["conv1.weight"]
    torch.testing.assert_close(five.stem[0][0][0].weight, torch.cat([w, w[:, :2]], 1) * 3 / 5)
    assert adapt_input_conv(w, 6).shape[1] == 6


def test_mismatching_files_fail_naming_keys_and_shapes(tmp_path, resnet18_file):
    _, sd = resnet18_file
    net = create_model("resnet18", num_classes=10)
    broken = {k: v for k, v in sd.items() if k != "layer3.1.bn2.running_var"}
    broken["layer5.0.conv1.weight"] = torch.zeros(1)
    broken["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(PretrainedError) as e:
        load_pretrained(net, tmp_path / "broken.pth", model_name="resnet18")
    msg = str(e.value)
    assert "missing from the file (1): layer3.1.bn2.running_var" in msg
    assert "unexpected in the file (1): layer5.0.conv1.weight" in msg
    assert "layer2.0.conv1.weight (128, 64, 5, 5) -> stages.1.0.conv1.0.weight (128, 64, 3, 3)" in msg
    with pytest.raises(PretrainedError, match="no reference layout"):
        load_state_dict_mapped(create_model("cnn_small"), sd, model_name="cnn_small")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(net, tmp_path / "nope.pth", model_name="resnet18")
    torch.save(create_model("resnet18"), tmp_path / "pickled_model.pth")
    with pytest.raises(PretrainedError, match="state_dict"):
        load_pretrained(net, tmp_path / "pickled_model.pth", model_name="resnet18")


def test_old_densenet_key_spelling_and_googlenet_aux_heads():
    sd = fill(tv_densenet121())
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    net = create_model("densenet121", num_classes=10)
    load_state_dict_mapped(net, legacy, model_name="densenet121")
    assert torch.equal(net.stages[0][0].layers[0].norm1.weight, sd["features.denseblock1.denselayer1.norm1.weight"])
    # googlenet: the auxiliary heads in a file are ignored; the model has none.
    net = create_model("googlenet", num_classes=1000)
    g = fill(tv_googlenet(aux=True))
    load_state_dict_mapped(net, g, model_name="googlenet")
    assert torch.equal(net.stages[8][0].branch3[1][0].weight, g["inception5b.branch3.1.conv.weight"])


def test_audiocnn_checkpoint_and_own_state_dict(tmp_path):
    src = create_model("mobilenet_v2", num_classes=4, in_chans=1)
    model = {f"network.{k}": v for k, v in src.state_dict().items()}
    model["norm.mean"] = torch.zeros(64)  # other AudioClassifier tensors are not the network's
    torch.save({"format": FORMAT, "version": 1, "model": model, "labels": list("abcd")}, tmp_path / "best.pt")
    dst = create_model("mobilenet_v2", num_classes=4, in_chans=1)
    assert load_pretrained(dst, tmp_path / "best.pt", model_name="mobilenet_v2")["layout"] == "audiocnn"
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # A plain network.state_dict() (here saved from a compiled model) loads too, with a new head.
    torch.save({f"_orig_mod.{k}": v for k, v in src.state_dict().items()}, tmp_path / "own.pth")
    other = create_model("mobilenet_v2", num_classes=9, in_chans=1)
    assert load_pretrained(other, tmp_path / "own.pth", model_name="mobilenet_v2")["replaced_head"]
    assert torch.equal(other.stages[3][2].dw[0].weight, src.stages[3][2].dw[0].weight)


# --- freezing -------------------------------------------------------------------------------------------------------

def trainable(m):
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_freeze_specs():
    m = create_model("vgg11", num_classes=3, head_hidden=(16, 16))
    assert freeze(m, "none") == 0 and trainable(m) == {n for n, _ in m.named_parameters()}
    freeze(m, "backbone")
    assert trainable(m) == {"head.fc.weight", "head.fc.bias"}
    m = create_model("resnet18", num_classes=3)
    frozen = freeze(m, "2")
    assert frozen == n_params(m.stem) + n_params(m.stages[0]) + n_params(m.stages[1])
    names = trainable(m)
    assert not any(n.startswith(("stem.", "stages.0.", "stages.1.")) for n in names)
    assert any(n.startswith("stages.2.") for n in names) and "head.fc.weight" in names
    with pytest.raises(ValueError, match="only 4 stages"):
        freeze(m, "5")
    with pytest.raises(ValueError, match="'backbone'"):
        freeze(m, "everything")
