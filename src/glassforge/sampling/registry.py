"""Name registries for samplers and schedules.

A registry maps the names users see (A1111/Forge display labels) to entries; aliases (A1111's
``k_*`` names, ComfyUI's lower-case names) resolve to the same entries. Look-up tries the exact
name first, then a case-insensitive match, so ``SCHEDULES["karras"]`` and ``SCHEDULES["Karras"]``
are the same entry. Iteration yields only the display names, in registration order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    name: str
    aliases: tuple[str, ...]


E = TypeVar("E", bound=Named)


class UnknownNameError(KeyError):
    """A sampler or schedule name that no registry entry or alias matches."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; expected one of: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Mapping[str, E], Generic[E]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, E] = {}
        self._exact: dict[str, E] = {}
        self._folded: dict[str, E] = {}

    def add(self, entry: E) -> E:
        for key in (entry.name, *entry.aliases):
            if key in self._exact:
                raise ValueError(f"{self.kind} name {key!r} registered twice")
            self._exact[key] = entry
            self._folded.setdefault(key.casefold(), entry)
        self._entries[entry.name] = entry
        return entry

    def get_entry(self, name: str) -> E | None:
        return self._exact.get(name) or self._folded.get(name.strip().casefold())

    def __getitem__(self, name: str) -> E:
        entry = self.get_entry(name)
        if entry is None:
            raise UnknownNameError(self.kind, name, list(self._entries))
        return entry

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get_entry(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names_and_aliases(self) -> list[str]:
        return list(self._exact)
