"""A spinner on stderr while something slow runs, shown only when stderr is a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["working"]


@contextlib.contextmanager
def working(message: str) -> Iterator[None]:
    """Show ``message`` with a spinner and the elapsed time until the block ends."""
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as progress:
        progress.add_task(message, total=None)
        yield
