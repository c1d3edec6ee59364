"""`streetgate buffer status|export|purge` against outboxes filled by the real Outbox."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import shlex
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.model import OutboxConfig
from gateway.core.model import Quality, Reading, StoredReading
from gateway.runtime.state_file import (
    StateFileWriter,
    current_view,
    gateway_view,
    read_state,
    state_path,
    write_state,
)
from gateway.store import reader as buffer_store
from gateway.store.outbox import MIGRATIONS, Outbox, stored_reading
from gateway.uplink.envelope import encode_reading
from gateway.uplink.forwarder import ForwarderState, ForwarderStats

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def sample(n: int, start: int = 0) -> list[Reading]:
    """Readings of three devices, with the awkward cases: NaN, an unsynced clock, and a metric
    name that needs CSV quoting."""
    out = []
    for i in range(start, start + n):
        device = f"meter-{i % 3}"
        metric = 'odd,"name"' if i % 7 == 3 else "l1_voltage"
        value = float("nan") if i % 11 == 5 else 230.0 + i / 10
        quality = Quality.CLOCK_UNSYNCED if i % 4 == 1 else Quality.GOOD
        out.append(Reading(device, metric, value, "V", T0 + i * 1000, quality))
    return out


def fill(path: Path, readings: list[Reading], **outbox: Any) -> None:
    async def scenario() -> None:
        async with Outbox(OutboxConfig.model_validate({"path": path, **outbox})) as box:
            await box.put_many(readings)

    asyncio.run(scenario())


def write_config(tmp_path: Path, outbox: str = "outbox.db") -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(
        "\n".join(
            [
                'gateway_id = "buffer-gw"',
                "[mqtt]",
                'host = "127.0.0.1"',
                "port = 1883",
                "[outbox]",
                f'path = "{outbox}"',
                'max_bytes = "64MB"',
                "[[devices]]",
                'kind = "modbus_tcp"',
                'name = "meter-0"',
                'host = "127.0.0.1"',
                'profile = "sdm120"',
            ]
        )
        + "\n"
    )
    return config


def stored(path: Path) -> list[StoredReading]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT seq, device, metric, value, unit, ts_ms, quality FROM stored_readings"
            " ORDER BY seq"
        ).fetchall()
    return [stored_reading(row) for row in rows]


def meta(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def buffer(*args: str) -> Result:
    return CliRunner().invoke(app, ["buffer", *args])


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, Path]:
    """(config, outbox) with 40 readings, seq 1..40."""
    config = write_config(tmp_path)
    fill(tmp_path / "outbox.db", sample(40))
    return config, tmp_path / "outbox.db"


# -- status ---------------------------------------------------------------------------------


def test_status_json_describes_the_outbox(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("status", "-c", str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["outbox"] == str(path)
    assert (data["depth"], data["first_seq"], data["last_seq"]) == (40, 1, 40)
    assert data["last_committed_seq"] == 40
    assert data["oldest_ts"] == "2025-11-24T16:00:00.000Z"
    assert data["newest_ts"] == "2025-11-24T16:00:39.000Z"
    assert data["oldest_age_s"] >= (time.time() * 1000 - T0) / 1000 - 5
    assert data["max_bytes"] == 64_000_000
    assert 0 < data["bytes_used"] <= data["db_file_bytes"] + data["wal_file_bytes"]
    assert (data["dropped"], data["purged"]) == (0, 0)
    assert data["schema_version"] == len(MIGRATIONS)
    assert data["gateway"]["running"] is False
    assert "no state file" in data["gateway"]["reason"]
    assert result.stderr == ""


def test_status_text_for_humans(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("status", "-c", str(config), "--check")
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["outbox"] == str(path)
    assert lines["readings"] == "40 stored, seq 1..40"
    assert lines["oldest"].startswith("2025-11-24T16:00:00.000Z (")
    assert lines["oldest"].endswith(" ago)")
    assert lines["dropped"].startswith("0 ")
    assert lines["purged"].startswith("0 ")
    assert lines["gateway"].startswith("not running")
    assert lines["integrity"] == "ok"


def test_status_counts_drops(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    path = tmp_path / "outbox.db"

    async def overfill() -> int:
        async with Outbox(OutboxConfig(path=path, max_bytes=256 * 1024)) as box:
            for i in range(60):  # rows are ~25 bytes: 30,000 are well over 256 KiB
                await box.put_many(sample(500, start=i * 500))
                await box._flush()
            return (await box.stats()).dropped

    dropped = asyncio.run(overfill())
    assert dropped > 0
    data = json.loads(buffer("status", "-c", str(config), "--json").stdout)
    assert data["dropped"] == dropped
    assert data["depth"] == 30_000 - dropped
    assert data["first_seq"] == dropped + 1


def test_status_shows_the_gateway_state_file(filled: tuple[Path, Path]) -> None:
    config, path = filled
    state = {
        "format": 1,
        "running": True,
        "pid": os.getpid(),  # a live process
        "updated_unix": time.time(),
        "interval_s": 5.0,
        "forwarder": {
            "state": "waiting",
            "connects": 2,
            "connection_failures": 7,
            "last_error": "[Errno 111] Connection refused",
            "connected_since": None,
        },
    }
    write_state(state_path(path), state)
    result = buffer("status", "-c", str(config))
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["gateway"] == f"running (pid {os.getpid()})"
    assert lines["forwarder"] == (
        "waiting (2 connects, 7 failed) last error: [Errno 111] Connection refused"
    )
    data = json.loads(buffer("status", "-c", str(config), "--json").stdout)
    assert data["gateway"]["running"] is True
    assert data["gateway"]["forwarder"]["state"] == "waiting"

    write_state(state_path(path), state | {"updated_unix": time.time() - 3600})
    data = json.loads(buffer("status", "-c", str(config), "--json").stdout)
    assert data["gateway"]["running"] is False
    assert "stale" in data["gateway"]["reason"]

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write_state(state_path(path), state | {"pid": int(gone.stdout)})
    data = json.loads(buffer("status", "-c", str(config), "--json").stdout)
    assert data["gateway"]["reason"].startswith(f"not running (pid {gone.stdout.strip()} is gone")

    state_path(path).write_text("{half a fi")
    data = json.loads(buffer("status", "-c", str(config), "--json").stdout)
    assert data["gateway"]["running"] is False
    assert data["gateway"]["reason"].startswith("unknown (")


def test_gateway_view_rules() -> None:
    base = {"format": 1, "running": True, "pid": 12, "updated_unix": 1000.0, "interval_s": 5.0}
    fwd = {"state": "connected"}
    assert gateway_view(base | {"forwarder": fwd}, 1010.0, alive=True).running
    assert gateway_view(base | {"forwarder": fwd}, 1010.0, alive=True).forwarder == fwd
    assert gateway_view(base, 1019.9, alive=True).running  # within 3 intervals + 5 s
    assert not gateway_view(base, 1020.1, alive=True).running
    assert not gateway_view(base, 1001.0, alive=False).running
    assert gateway_view(base | {"running": False}, 1001.0, alive=True).reason.startswith(
        "not running (stopped cleanly"
    )
    assert not gateway_view(None, 0.0, alive=False).running
    assert gateway_view({"format": 1}, 0.0, alive=False).reason.startswith("unknown")


def test_state_file_writer_writes_on_change_and_says_stopped(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db.state.json"
    stats = ForwarderStats()
    calls = 0

    async def snapshot() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"gateway": "gw", "forwarder": {"state": stats.state.value}, "outbox": {}}

    async def scenario() -> None:
        writer = StateFileWriter(path, snapshot, stats, interval=60, check_interval=0.02)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(writer.run(), name="status:state-file")
            while writer.writes < 1:  # noqa: ASYNC110 - a plain counter, nothing to await
                await asyncio.sleep(0.01)
            first = await asyncio.to_thread(read_state, path)
            assert first is not None
            assert first["running"] is True
            assert first["pid"] == os.getpid()
            assert first["forwarder"] == {"state": "connecting", "connected_since": None}
            stats.state = ForwarderState.CONNECTED
            stats.connects = 1
            stats.connected_since = 1_795_766_712.0
            # a change is written without waiting for the interval
            while writer.writes < 2:  # noqa: ASYNC110 - a plain counter
                await asyncio.sleep(0.01)
            second = await asyncio.to_thread(read_state, path)
            assert second is not None
            assert second["forwarder"]["connected_since"] == "2026-11-27T08:05:12Z"
            await asyncio.sleep(0.1)
            assert writer.writes == 2  # nothing changed, the interval is long
            task.cancel()
        final = await asyncio.to_thread(read_state, path)
        assert final is not None
        assert final["running"] is False

    asyncio.run(scenario())
    assert not current_view(path).running
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


# -- export ---------------------------------------------------------------------------------


def _expected(path: Path) -> list[dict[str, Any]]:
    return [json.loads(encode_reading(r)) for r in stored(path)]


def _parse_csv(text: str) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        row["seq"] = int(row["seq"])
        row["value"] = None if row["value"] == "" else float(row["value"])
    return rows


def test_export_csv_round_trip(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("export", "-c", str(config))
    assert result.exit_code == 0, result.stderr
    # (CliRunner turns the CSV's CRLF line ends into LF; a file keeps them, see below)
    assert result.stdout.startswith("seq,device,metric,value,unit,ts,quality\n")
    assert _parse_csv(result.stdout) == _expected(path)
    assert result.stderr == "exported 40 readings (seq 1..40)\n"
    assert any(r["value"] is None for r in _parse_csv(result.stdout))  # NaN stored as null


def test_export_jsonl_is_the_published_json_exactly(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("export", "-c", str(config), "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [encode_reading(r) for r in stored(path)]


def test_export_to_a_file_atomically_and_never_over_one(filled: tuple[Path, Path]) -> None:
    config, path = filled
    out = path.parent / "carry-home.csv"
    result = buffer("export", "-c", str(config), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"exported 40 readings (seq 1..40) to {out}\n"
    text = out.read_bytes().decode()
    assert text.startswith("seq,device,metric,value,unit,ts,quality\r\n1,meter-0,")  # RFC 4180
    assert _parse_csv(text) == _expected(path)

    out.write_text("somebody's notes\n")
    result = buffer("export", "-c", str(config), "-o", str(out), "-f", "jsonl")
    assert result.exit_code == ExitCode.DECLINED
    assert "exists; add --force" in result.stderr
    assert out.read_text() == "somebody's notes\n"

    result = buffer("export", "-c", str(config), "-o", str(out), "-f", "jsonl", "--force")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == _expected(path)
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]

    result = buffer("export", "-c", str(config), "-o", str(path.parent / "no" / "such.csv"))
    assert result.exit_code == 1
    assert "cannot write" in result.stderr


def test_export_filters_by_sequence_and_device(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("export", "-c", str(config), "-f", "jsonl", "--since-seq", "30")
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == list(range(31, 41))
    result = buffer("export", "-c", str(config), "-f", "jsonl", "--device", "meter-1")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == [r for r in _expected(path) if r["device"] == "meter-1"]
    assert "no device 'meter-1' in" in result.stderr  # not in the config, exported anyway
    result = buffer("export", "-c", str(config), "--device", "meter-0", "--since-seq", "99")
    assert result.stdout == "seq,device,metric,value,unit,ts,quality\n"
    assert result.stderr == "exported 0 readings\n"


def test_export_pages_through_the_outbox_in_order(filled: tuple[Path, Path]) -> None:
    _, path = filled
    with buffer_store.exporting(path, chunk=7) as rows:
        assert list(rows) == stored(path)
    with buffer_store.exporting(path, since_seq=35, chunk=2) as rows:
        assert [r.seq for r in rows] == [36, 37, 38, 39, 40]
    with buffer_store.exporting(path, device="meter-2", chunk=3) as rows:
        assert [r.seq for r in rows] == [seq for seq in range(1, 41) if seq % 3 == 0]


# -- purge ----------------------------------------------------------------------------------


def test_purge_without_a_terminal_or_yes_refuses(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("purge", "-c", str(config))  # CliRunner's stdin is not a terminal
    assert result.exit_code == ExitCode.DECLINED
    assert "purge would delete 40 readings, seq 1..40" in result.stderr
    assert "add --yes" in result.stderr
    assert len(stored(path)) == 40


def test_purge_with_yes_deletes_and_counts(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = buffer("purge", "-c", str(config), "--yes", "--upto-seq", "15")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "purged 15 readings up to seq 15 (15 purged in total)\n"
    assert [r.seq for r in stored(path)] == list(range(16, 41))
    assert meta(path)["purged"] == 15
    assert meta(path)["next_seq"] == 41  # sequence numbers are never reused

    result = buffer("purge", "-c", str(config), "--upto-seq", "10")
    assert result.exit_code == 0
    assert result.stderr == "nothing to purge: no stored readings up to seq 10\n"

    result = buffer("purge", "-c", str(config), "-y")
    assert result.stderr == "purged 25 readings up to seq 40 (40 purged in total)\n"
    assert stored(path) == []
    data = json.loads(buffer("status", "-c", str(config), "--json").stdout)
    assert (data["depth"], data["purged"], data["last_committed_seq"]) == (0, 40, 40)


def test_purge_in_chunks_counts_exactly(filled: tuple[Path, Path]) -> None:
    _, path = filled
    assert buffer_store.purge(path, 33, chunk=4) == (33, 33)
    assert [r.seq for r in stored(path)] == list(range(34, 41))


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another writer (as the gateway is) holds the outbox's write lock for ``seconds``."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold, name="test:writer")
    thread.start()
    locked.wait(5)
    return thread


def test_purge_waits_for_the_write_lock(filled: tuple[Path, Path]) -> None:
    config, path = filled
    holder = _hold_write_lock(path, 0.5)
    start = time.monotonic()
    result = buffer("purge", "-c", str(config), "--yes")
    holder.join()
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - start >= 0.4
    assert stored(path) == []


def test_purge_gives_up_on_a_lock_held_too_long(
    filled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, path = filled
    monkeypatch.setattr(buffer_store, "BUSY_TIMEOUT", 0.2)
    holder = _hold_write_lock(path, 1.0)
    result = buffer("purge", "-c", str(config), "--yes")
    holder.join()
    assert result.exit_code == 1
    assert "stayed locked for 0.2s (the gateway is writing); nothing was purged; try again" in (
        result.stderr
    )
    assert len(stored(path)) == 40
    assert meta(path)["purged"] == 0


def _purge_on_a_terminal(config: Path, answer: bytes) -> subprocess.CompletedProcess[str]:
    """``streetgate buffer purge`` with a real terminal on stdin, answering the question."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "buffer", "purge", "-c", str(config)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, answer)  # the terminal keeps the line until the question reads it
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_purge_declined_on_a_terminal_deletes_nothing(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = _purge_on_a_terminal(config, b"n\n")
    assert result.returncode == ExitCode.DECLINED, result.stderr
    assert "This deletes 40 readings, seq 1..40 (taken 2025-11-24T16:00:00.000Z to" in (
        result.stderr
    )
    assert "Purge them? [y/N]" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert len(stored(path)) == 40
    assert meta(path)["purged"] == 0


def test_purge_accepted_on_a_terminal_deletes_and_counts(filled: tuple[Path, Path]) -> None:
    config, path = filled
    result = _purge_on_a_terminal(config, b"y\n")
    assert result.returncode == 0, result.stderr
    assert "purged 40 readings up to seq 40 (40 purged in total)" in result.stderr
    assert stored(path) == []
    assert meta(path)["purged"] == 40


def test_the_readme_examples_run(
    filled: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, path = filled
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### Buffer\n", 1)[1].split("\n### ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()]
    assert [c[:3] for c in commands] == [["streetgate", "buffer", c[2]] for c in commands]
    assert {c[2] for c in commands} == {"status", "export", "purge"}
    expected = _expected(path)
    monkeypatch.chdir(config.parent)  # gw.toml and the output files are relative
    for command in commands:
        result = CliRunner().invoke(app, command[1:])
        if command[2] == "purge" and "--yes" not in command:
            assert result.exit_code == ExitCode.DECLINED, command  # CliRunner has no terminal
            assert "no terminal to confirm on" in result.stderr
        else:
            assert result.exit_code == 0, (command, result.stderr)
    assert _parse_csv((config.parent / "readings.csv").read_text()) == expected
    assert (config.parent / "backlog.jsonl").read_text() == ""  # nothing above seq 80000
    assert stored(path) == []
    assert meta(path)["purged"] == 40


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "export", "purge"])
def test_missing_outbox(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path, "state/outbox.db")
    result = buffer(command, "-c", str(config))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stdout == ""
    assert f"no outbox at {tmp_path / 'state' / 'outbox.db'}" in result.stderr
    assert not (tmp_path / "state").exists()  # nothing was created


@pytest.mark.parametrize("command", ["status", "export", "purge"])
def test_damaged_outbox_is_left_untouched(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path)
    path = tmp_path / "outbox.db"
    junk = b"this is not a database, but somebody's data" * 100
    path.write_bytes(junk)
    result = buffer(command, "-c", str(config), *(["--yes"] if command == "purge" else []))
    assert result.exit_code == ExitCode.DAMAGED
    assert f"outbox {path} is damaged (file is not a database)" in result.stderr
    assert "outbox.db.corrupt-<time>" in result.stderr
    assert path.read_bytes() == junk
    assert sorted(p.name for p in tmp_path.iterdir() if "outbox" in p.name) == ["outbox.db"]


def test_an_empty_file_is_no_outbox_yet(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "outbox.db").write_bytes(b"")
    result = buffer("status", "-c", str(config))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "the gateway sets it up when it starts" in result.stderr


@pytest.mark.parametrize("command", ["status", "export", "purge"])
def test_bad_config_exits_with_exit_config(tmp_path: Path, command: str) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('gateway_id = "bad id"\n')
    result = buffer(command, "-c", str(config))
    assert result.exit_code == ExitCode.CONFIG
    assert f"error: buffer: {config}: gateway_id: " in result.stderr.splitlines()[0]


# -- the gateway's side of a purge ------------------------------------------------------------


def test_an_outbox_from_before_the_purged_counter_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path, isolation_level=None) as conn:  # what a 0.1.0 gateway made
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(f"BEGIN; {MIGRATIONS[0][1]}; PRAGMA user_version=1; COMMIT;")
    conn.close()
    fill(path, sample(10))  # the gateway migrates it
    counters = meta(path)
    assert counters.pop("epoch") > 0  # migration 0003_outbox_epoch
    assert counters == {"next_seq": 11, "dropped": 0, "purged": 0}
    assert buffer_store.purge(path, 4) == (4, 4)

    older = tmp_path / "older.db"
    with sqlite3.connect(older, isolation_level=None) as conn:
        conn.executescript(f"BEGIN; {MIGRATIONS[0][1]}; PRAGMA user_version=1; COMMIT;")
        conn.execute("INSERT INTO readings VALUES (1, 0, 'm', '{}'), (2, 0, 'm', '{}')")
    conn.close()
    assert buffer_store.purge(older, 1) == (1, 1)  # purge before the migration ran
    fill(older, sample(1))  # the migration keeps the count purge wrote
    assert meta(older)["purged"] == 1


def test_the_gateway_sees_a_purge_before_its_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    async def scenario() -> None:
        async with Outbox(OutboxConfig(path=path)) as box:
            await box.put_many(sample(30))
            await box._flush()
            await asyncio.to_thread(buffer_store.purge, path, 20)
            stats = await box.stats()
            assert (stats.depth, stats.first_seq, stats.last_seq) == (10, 21, 30)
            await box.put_many(sample(5, start=30))
            await box._flush()
            assert box.acked_seq == 20  # below the first stored reading: nothing to resend
            rows = await box.read_batch(box.acked_seq, box.last_seq, 100)
            assert [r.seq for r in rows] == list(range(21, 36))

    asyncio.run(scenario())
    assert meta(path)["purged"] == 20
