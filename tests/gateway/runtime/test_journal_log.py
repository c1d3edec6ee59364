"""Log lines for journald: priority prefixes when stderr is the journal stream, else plain."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from gateway.runtime.journal_log import JournalFormatter, log_handler, priority, writes_to_journal


def _record(level: int, message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("gateway.store.outbox", level, __file__, 1, message, (), exc_info)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
        (logging.INFO + 5, 6),  # a custom level between INFO and WARNING
        (logging.NOTSET, 7),
    ],
)
def test_levels_map_to_syslog_priorities(level: int, expected: int) -> None:
    assert priority(level) == expected


def test_every_line_of_a_record_carries_the_prefix_and_no_timestamp() -> None:
    text = JournalFormatter().format(_record(logging.ERROR, "commit failed", exc=True))
    lines = text.split("\n")
    assert lines[0] == "<3>gateway.store.outbox: commit failed"
    assert lines[-1] == "<3>ValueError: boom"
    assert all(line.startswith("<3>") for line in lines)


def test_the_journal_format_only_for_the_stream_systemd_names(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as stream, (tmp_path / "other").open("w") as other:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert writes_to_journal(stream, env)
        assert not writes_to_journal(other, env)  # inherited variable, redirected stream
        assert not writes_to_journal(stream, {})
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": "garbage"})

        journal = log_handler(stream, env)
        journal.handle(_record(logging.WARNING, "disk almost full"))
        plain = log_handler(other, env)
        plain.handle(_record(logging.WARNING, "disk almost full"))
    assert (tmp_path / "stderr").read_text() == "<4>gateway.store.outbox: disk almost full\n"
    plain_line = (tmp_path / "other").read_text()
    assert plain_line.endswith(" WARNING gateway.store.outbox: disk almost full\n")
    assert plain_line[:4].isdigit()  # starts with the timestamp
