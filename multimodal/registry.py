"""Name -> object registries with "did you mean" lookup.

Every string option in the package (encoder, fusion, head, loss names) resolves through
:class:`Registry` so that a typo gets a helpful message instead of a ``KeyError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["Registry", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` if none is close
    (difflib's ratio >= 0.6: ``'stgae'`` -> ``'stage'``, but ``'stage'`` is not offered ``'sex'``,
    ratio 0.5, which misled GBMLGG's users: gliomas have no stage)."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """A named collection of classes or functions.

    Parameters
    ----------
    kind : str
        What the entries are ("encoder", "fusion", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an object under ``name``."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Look ``name`` up; unknown names raise ``ConfigError`` listing the choices."""
        from multimodal.exceptions import ConfigError

        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                f"Available: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(sorted(self._entries))
