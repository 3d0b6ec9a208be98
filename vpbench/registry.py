"""Strict name -> object registries.

Names are lower-case identifiers of at most 64 characters; a second object under a taken name
is rejected with both sources named; an unknown name gets near-miss suggestions ("did you mean shrvqvae?").
"""

from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from vpbench.errors import RegistryError

T = TypeVar("T")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME = 64  # names become file and directory names (run directories, result sets)


@dataclass(frozen=True)
class Source:
    """Where a registered object came from: plugin name and its distribution."""

    plugin: str
    distribution: str
    version: str = ""

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}".strip()
        return f"plugin '{self.plugin}' ({dist})"


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    source: Source


def suggest(name: str, choices: list[str]) -> str:
    """``" (did you mean x?)"`` when a close match exists, else ``""``."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(close) + "?)"


class Registry(Generic[T]):
    """Objects of one kind (``model``, ``dataset`` or ``metric``) by unique name.

    ``validate(obj)`` raises ``RegistryError`` (or any exception) for a malformed object and
    returns its name.
    """

    def __init__(self, kind: str, validate: Callable[[Any], str]):
        self.kind = kind
        self._validate = validate
        self._entries: dict[str, Entry[T]] = {}
        self._frozen = False

    def freeze(self) -> None:
        """No more additions or removals (the CLI freezes the registries once plugins are loaded)."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _check_open(self, what: str) -> None:
        if self._frozen:
            raise RegistryError(f"the {self.kind} registry is frozen: {what} is only possible while plugins load "
                                "(register through the vpbench_register_* hooks)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything added inside the block is removed again if the block raises."""
        before = dict(self._entries)
        try:
            yield
        except BaseException:
            self._entries = before
            raise

    def remove(self, name: str) -> Entry[T]:
        """Take ``name`` out of the registry (an unknown name raises, with suggestions)."""
        self._check_open(f"removing {self.kind} '{name}'")
        entry = self.entry(name)
        del self._entries[name]
        return entry

    def add(self, obj: T, source: Source) -> str:
        self._check_open(f"registering a {self.kind} ({source})")
        try:
            name = self._validate(obj)
        except RegistryError as exc:
            raise RegistryError(f"{source} registered a bad {self.kind}: {exc}") from None
        if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > MAX_NAME:
            shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:56] + "..."
            size = f" ({len(name)} characters)" if isinstance(name, str) and len(name) > MAX_NAME else ""
            raise RegistryError(
                f"{source} registered a {self.kind} named {shown}{size}; names must match "
                f"{NAME_RE.pattern} and have at most {MAX_NAME} characters"
            )
        if name in self._entries:
            other = self._entries[name].source
            raise RegistryError(
                f"{self.kind} '{name}' from {source} is already registered by {other}; "
                "rename one of them or uninstall one plugin"
            )
        self._entries[name] = Entry(name, obj, source)
        return name

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            raise RegistryError(
                f"unknown {self.kind} '{name}'{suggest(name, known)}; "
                f"available: {', '.join(known) or 'none'} (see `vpbench plugins`)"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        for name in self.names():
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
