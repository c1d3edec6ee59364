"""Give back a cancellation that a library swallowed.

On Python 3.11 ``asyncio.wait_for`` returns the inner result instead of raising
``CancelledError`` when the awaited future completes in the same loop iteration as the cancel.
pymodbus and aiomqtt both wait with ``wait_for``; a task cancelled at that moment would carry
on (a poller polling on, a forwarder connecting and draining forever), and whatever waits for
it to end would hang. The request is still recorded on the task (``Task.cancelling()``), so
after such a call :func:`raise_if_cancelled` raises it again.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task has a cancel request pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
