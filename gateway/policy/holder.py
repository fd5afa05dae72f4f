"""The running bundle: read one snapshot per decision; a reload swaps it whole."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import PolicyError
from gateway.policy.bundle import Bundle
from gateway.policy.loader import load_bundle


class Policies:
    def __init__(self, folder: Path, packs: Sequence[str] = ()) -> None:
        self.folder = folder
        self.packs = tuple(packs)
        self._current = load_bundle(folder, self.packs)

    def current(self) -> Bundle:
        return self._current

    def reload(self) -> Bundle:
        """Load again; on PolicyError the previous bundle keeps serving."""
        bundle = load_bundle(self.folder, self.packs)
        self._current = bundle
        return bundle

    @classmethod
    def fixed(cls, bundle: Bundle) -> Policies:
        holder = cls.__new__(cls)
        holder.folder, holder.packs, holder._current = bundle.root or Path("."), (), bundle
        return holder


__all__ = ["Policies", "PolicyError"]
