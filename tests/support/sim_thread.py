"""Run an async simulator on its own event loop in a thread, so a CLI test can stay synchronous."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TypeVar

__all__ = ["in_thread", "serving"]

T = TypeVar("T")


@contextmanager
def serving(
    factory: Callable[[], AbstractAsyncContextManager[T]],
) -> Iterator[tuple[T, asyncio.AbstractEventLoop]]:
    """What ``factory`` enters, and the loop it runs on in its thread; stopped on exit."""
    ready: Future[tuple[T, asyncio.AbstractEventLoop, asyncio.Event]] = Future()

    async def serve() -> None:
        stop = asyncio.Event()
        async with factory() as sim:
            ready.set_result((sim, asyncio.get_running_loop(), stop))
            await stop.wait()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=main, name="test:simulator", daemon=True)
    thread.start()
    sim, loop, stop = ready.result(timeout=10)
    try:
        yield sim, loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@contextmanager
def in_thread(factory: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """``with in_thread(lambda: ModbusSimulator(specs)) as sim:``; stopped on exit."""
    with serving(factory) as (sim, _):
        yield sim
