"""``create_model(name, **kwargs)`` and ``list_models(pattern)``: the whole public surface of the zoo."""
from __future__ import annotations

import difflib
import inspect
from typing import Callable

from torch import nn

from audiocnn.registry import Registry

__all__ = ["MODELS", "accepts", "create_model", "list_models", "model_dims", "register_model"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name."""
    return MODELS.register(fn.__name__)(fn)


def _accepted(fn: Callable) -> tuple[set[str], bool]:
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown keyword arguments are an error that names them.

    Factories that forward ``**kwargs`` to :class:`~audiocnn.models.backbone.ConvNet` accept its
    arguments too (``drop_rate``, ``norm_layer``, ``act_layer``...).
    """
    from audiocnn.models.backbone import ConvNet

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
        raise TypeError(f"model {name!r} does not take {', '.join(hints)}; it takes {', '.join(sorted(names))}")
    return fn(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern."""
    return MODELS.names(pattern)


def accepts(name: str, arg: str) -> bool:
    """Whether a model factory takes ``arg`` (directly, or through ``**kwargs`` passed on to ConvNet)."""
    from audiocnn.models.backbone import ConvNet

    names, var_kw = _accepted(MODELS.get(name))
    return arg in names or (var_kw and arg in _accepted(ConvNet.__init__)[0])


def model_dims(name: str, args: dict | None = None) -> int:
    """1 or 2: the input rank a model expects, from ``args['dims']`` or the factory's default (2 if absent)."""
    args = args or {}
    if "dims" in args:
        return int(args["dims"])
    param = inspect.signature(MODELS.get(name)).parameters.get("dims")
    return 2 if param is None or param.default is inspect.Parameter.empty else int(param.default)
