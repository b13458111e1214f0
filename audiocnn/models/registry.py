"""``create_model(name, **kwargs)`` and ``list_models(pattern)``: the whole public surface of the zoo.

Each registered model declares its input contract as data (:class:`InputSpec`, as timm's ``pretrained_cfg``):
the input rank it expects and whether it takes ``input_size``. The builder reads the contract; nothing inspects
constructor signatures to decide how to call a model.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from audiocnn.core.errors import ModelError
from audiocnn.core.registry import Registry
from audiocnn.models.backbone import ConvNet

__all__ = ["MODELS", "InputSpec", "create_model", "input_spec", "list_models", "register_model"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


@dataclass(frozen=True)
class InputSpec:
    """What a model expects as input.

    Attributes:
        dims: 2 for ``(batch, in_chans, height, width)`` (spectrograms as images), 1 for ``(batch, channels, time)``.
        input_size: whether it takes ``input_size=(in_chans, *spatial)`` (flatten heads infer their width from it).
        example: a typical input shape ``(batch, in_chans, *spatial)`` (``audiocnn summary MODEL`` without
            ``--input-shape``); default ``(1, 1, 64, 101)`` for 2-D models (64 mel bands, 101 frames), ``(1, 64, 101)``
            for 1-D ones (64 feature channels over 101 frames).
    """

    dims: int = 2
    input_size: bool = True
    example: tuple[int, ...] | None = None

    @property
    def example_shape(self) -> tuple[int, ...]:
        """:attr:`example`, or the default for the model's rank."""
        return self.example or ((1, 1, 64, 101) if self.dims == 2 else (1, 64, 101))

    def rank(self, args: dict) -> int:
        """The rank with a recipe's ``model.args``: a model built with ``dims`` given runs at that rank."""
        return int(args.get("dims", self.dims))


_INPUTS: dict[str, InputSpec] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, dims: int = 2, input_size: bool = True,
                   example: tuple[int, ...] | None = None):
    """Register a model factory under its function name, with its input contract.

    Example:
        >>> @register_model(dims=1)
        ... def tcn(**kwargs): ...
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(f.__name__)(f)
        _INPUTS[f.__name__] = InputSpec(dims=dims, input_size=input_size, example=example)
        return f

    return deco(fn) if fn is not None else deco


def input_spec(name: str) -> InputSpec:
    """The declared input contract of a registered model (an unknown name names the known ones)."""
    MODELS.get(name)
    return _INPUTS[name]


def _accepted(fn: Callable) -> tuple[set[str], bool]:
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown keyword arguments are a :class:`ModelError` that names them.

    Factories that forward ``**kwargs`` to :class:`~audiocnn.models.backbone.ConvNet` accept its
    arguments too (``drop_rate``, ``norm_layer``, ``act_layer``...).
    """
    fn = MODELS.get(name)
    names, var_kw = _accepted(fn)
    if var_kw:
        more, _ = _accepted(ConvNet.__init__)
        names |= more - {"self", "stages"}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ModelError(f"model {name!r} does not take {', '.join(hints)}; it takes {', '.join(sorted(names))}")
    return fn(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern."""
    return MODELS.names(pattern)
