"""``Reporter``: where a long operation says how far it is and what it did, in one object.

The terminal wants a tqdm bar and printed lines, the app a callback that moves its progress bar
and no printing, tests and benchmarks silence. Functions that run long take one ``Reporter``
instead of a ``progress``/``on_progress``/``log`` triple threaded through every layer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _ignore(_: str) -> None:
    """A log that drops every line."""


@dataclass(frozen=True)
class Reporter:
    """``bar``: show tqdm bars on the terminal; ``on_progress(done, total)``: called as work items
    finish; ``log``: one line per event worth telling (print by default)."""

    bar: bool = True
    on_progress: Callable[[int, int], None] | None = None
    log: Callable[[str], None] = print

    @classmethod
    def quiet(cls) -> Reporter:
        """No bar, no lines, no callback."""
        return cls(bar=False, log=_ignore)

    def message(self, text: str) -> None:
        self.log(text)

    def advance(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)

    def without_callback(self) -> Reporter:
        """The same bar and log, no callback: for a side task (another gallery embedded to learn
        a whitening on) that must not move the caller's progress bar."""
        return Reporter(bar=self.bar, log=self.log)
