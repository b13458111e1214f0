"""A tiny name -> factory registry, used for models, datasets, tasks, front-ends and modalities (no class paths in
YAML)."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, TypeVar

from audiocnn.core.errors import UnknownNameError

__all__ = ["Registry"]

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Maps registered names to factories.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("tiny")
        ... def tiny(**kw): ...
        >>> MODELS.get("tiny")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> F:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._items
