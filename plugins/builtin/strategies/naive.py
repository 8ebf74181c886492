"""``naive``: the reference protocol (Burns et al. 2023): weak -> strong transfer with each configured loss."""

from __future__ import annotations


class Naive:
    """Weak model on train1, its soft labels on train2, strong model trained on them (one row per loss)."""

    name = "naive"

    def plan(self, b) -> None:
        b.transfers(self.name, b.reference())
