"""Registry, generic backbone and the spectrogram CNNs."""
import pytest
import torch

from audiocnn.models import ConvNet, Stage, create_model, list_models
from audiocnn.models.summary import model_summary


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_registry_lists_and_rejects_bad_kwargs():
    assert {"cnn_tiny", "cnn_small", "resnet_small"} <= set(list_models())
    assert "resnet_small" in list_models("resnet*") and "cnn_small" not in list_models("resnet*")
    with pytest.raises(TypeError, match="did you mean 'drop_rate'"):
        create_model("cnn_small", drop_rat=0.1)
    with pytest.raises(KeyError, match="did you mean"):
        create_model("cnn_smal")


def test_basic_block_resnet18_parameter_count():
    # torchvision's resnet18 has 11,689,512 parameters (published); same stages here.
    stem = [Stage("conv", 64, stride=2, pool="max", pool_size=3, pool_stride=2, pool_padding=1,
                  args={"kernel_size": 7, "padding": 3})]
    stages = [Stage("basic", w, depth=2, stride=1 if i == 0 else 2) for i, w in enumerate((64, 128, 256, 512))]
    m = ConvNet(stages, stem=stem, num_classes=1000, in_chans=3)
    assert n_params(m) == 11_689_512
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    assert [f["reduction"] for f in m.feature_info] == [4, 8, 16, 32]


def test_cnn_small_parameter_count_by_hand():
    # 4 VGG stages (2 conv3x3 without bias + BN each) at 32-64-128-256 and a linear head.
    chans, total, c_in = (32, 64, 128, 256), 0, 1
    for c in chans:
        total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
        c_in = c
    total += 256 * 10 + 10
    assert n_params(create_model("cnn_small", num_classes=10)) == total


@pytest.mark.parametrize("name", ["cnn_tiny", "cnn_small", "resnet_small"])
@pytest.mark.parametrize("frames", [33, 101, 250])
def test_any_length_and_mels(name, frames):
    m = create_model(name, num_classes=7).eval()
    assert m(torch.randn(2, 1, 40, frames)).shape == (2, 7)
    assert m.forward_head(m.forward_features(torch.randn(2, 1, 40, frames)), pre_logits=True).shape == (2, m.num_features)


def test_one_dimensional_backbone_and_reset_classifier():
    m = create_model("cnn_small", num_classes=5, in_chans=40, dims=1)
    assert m(torch.randn(3, 40, 77)).shape == (3, 5)
    m.reset_classifier(12)
    assert m(torch.randn(3, 40, 77)).shape == (3, 12)


def test_flatten_head_width_is_inferred():
    m = ConvNet([Stage("conv", 8, pool="max"), Stage("conv", 16, pool="max")], num_classes=3,
                global_pool="flatten", input_size=(1, 28, 28), head_hidden=(32,))
    # 16 channels * 7 * 7 after two 2x2 pools.
    assert m.head.hidden[0].in_features == 16 * 7 * 7
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(ValueError, match="input_size"):
        ConvNet([Stage("conv", 8)], global_pool="flatten")


def test_summary_totals_match_parameters():
    m = create_model("resnet_small", num_classes=4)
    s = model_summary(m, torch.zeros(1, 1, 64, 101))
    assert s["total_params"] == n_params(m)
    # rows folded at depth 3 add up to the total
    top = [r for r in s["rows"] if r.depth == 3 or (r.depth < 3 and not list(dict(m.named_modules())[r.name].children()))]
    assert sum(r.params for r in top) == n_params(m)
    assert s["activations_mb"] > 0
