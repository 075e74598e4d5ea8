"""Growing, jittered delays for retrying something that keeps failing (a database away, a loop crashing)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays doubling from ``first`` to ``cap``, each cut by a random share of up to half, so that many
    processes coming back after an outage do not all retry in the same instant. ``reset`` once it works."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The delay to wait now; each call doubles the next one, up to the cap."""
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.first
