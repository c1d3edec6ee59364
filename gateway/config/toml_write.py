"""Writing config files: a new one (``init``, ``config show``) or an edit that keeps comments.

:func:`dumps` writes a document from scratch: tables, arrays of tables, strings, numbers,
booleans and arrays of those; ``None`` values are left out (TOML has no null: a missing key
means the default). :func:`edit` changes an existing file to hold a new document (a remote
``config-set``, ``init --force`` over a file) with tomlkit, keeping the technician's comments
and layout wherever the values did not change.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Comment, InlineTable, Null, Table, Whitespace

__all__ = ["dumps", "edit"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to a config file")
        return repr(value)
    if isinstance(value, str):
        # JSON's string escapes are a subset of TOML's basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _table(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    nested = []
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, Mapping) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested:
        name = ".".join(_key(k) for k in [*path, key])
        if isinstance(value, Mapping):
            lines += ["", f"[{name}]"]
            _table(lines, [*path, key], value)
        else:
            for item in value:
                lines += ["", f"[[{name}]]"]
                _table(lines, [*path, key], item)


def dumps(document: Mapping[str, Any]) -> str:
    """The document as TOML text (ends with a newline)."""
    lines: list[str] = []
    _table(lines, [], document)
    return "\n".join(lines).lstrip("\n") + "\n"


# -- editing a file in place -------------------------------------------------------------------


def edit(text: str, document: Mapping[str, Any]) -> str:
    """``text`` (a TOML file) rewritten to hold ``document``, keeping what a person wrote.

    Comments, blank lines, key order, quoting and the spelling of values that did not change
    stay as they are; a changed value keeps its line's comment; new keys go at the end of
    their table, new tables at the end of the file; ``[[devices]]`` tables are matched by
    ``name``, so removing one device leaves the others (and the comment written above the
    next one) in place. Raises :class:`ValueError` when the result would not read back as
    ``document`` (the caller then writes the plain :func:`dumps`).
    """
    wanted = _without_none(document)
    doc = tomlkit.parse(text)
    _sync(doc, wanted)
    out = tomlkit.dumps(doc)
    if not out.endswith("\n"):
        out += "\n"
    if not _same(tomllib.loads(out), wanted):
        raise ValueError("the edited file does not read back as the new config")
    return out


def _without_none(value: Any) -> Any:
    """TOML has no null: a ``None`` value means the key is absent."""
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_without_none(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as TOML values: ``1``, ``1.0`` and ``true`` differ; lists and tuples do not."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, Sequence) and not isinstance(a, str):
        return (
            isinstance(b, Sequence)
            and not isinstance(b, str)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return type(a) is type(b) and a == b


def _new_item(value: Any) -> Any:
    """A tomlkit item for a new value; tables get a blank line above their header."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} to a config file")
    if isinstance(value, Mapping):
        table = tomlkit.table()
        for key, inner in value.items():
            table.add(key, _new_item(inner))
        table.trivia.indent = "\n"
        return table
    if _is_table_array(value):
        return AoT([_new_item(v) for v in value])
    if isinstance(value, Sequence) and not isinstance(value, str):
        array = tomlkit.array()
        array.extend(_new_item(v) for v in value)
        return array
    return tomlkit.item(value)


def _sync(table: MutableMapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Make the tomlkit ``table`` hold ``wanted``, touching only what differs."""
    for key in [k for k in table if k not in wanted]:
        del table[key]
    for key, value in wanted.items():
        if key not in table:
            table[key] = _new_item(value)
            continue
        old = table[key]
        if _same(_plain(old), value):
            continue  # unchanged: its spelling and comments stay
        if isinstance(value, Mapping) and isinstance(old, Table | InlineTable):
            _sync(old, value)
        elif _is_table_array(value) and isinstance(old, AoT):
            _sync_tables(old, list(value), _head(table, old))
        else:
            table[key] = _new_item(value)  # tomlkit keeps the line's comment


def _plain(item: Any) -> Any:
    unwrap = getattr(item, "unwrap", None)
    return unwrap() if unwrap is not None else item


def _sync_tables(array: AoT, wanted: list[Mapping[str, Any]], head: _Run | None = None) -> None:
    """An array of tables: entries matched by ``name`` (else by position), synced in place.

    ``head``: the comments written above the array's first table (they end what comes before).
    """
    old: list[Table] = list(array)
    keys = [_name(t) for t in old]
    new_keys = [_name(w) for w in wanted]
    by_name = None not in keys and None not in new_keys
    by_name = by_name and len(set(keys)) == len(keys) and len(set(new_keys)) == len(new_keys)
    if not by_name:
        keys = list(range(len(old)))
        new_keys = list(range(len(wanted)))
    kept = set(new_keys)
    # A comment written above a table ends the body of the table before it: when a table goes,
    # the comment above it goes too, and the one above the next table moves up.
    for index in range(len(old) - 1, -1, -1):
        if keys[index] in kept:
            continue
        run = _run_before(old[index - 1]) if index else head
        if run is not None:
            _replace_run(run, _run_before(old[index]))
    current = dict(zip(keys, old, strict=True))
    tables = []
    for key, value in zip(new_keys, wanted, strict=True):
        table = current.get(key)
        if table is None:
            table = _new_item(value)
        else:
            _sync(table, value)
        tables.append(table)
    while len(array):
        array.pop()
    for table in tables:
        array.append(table)


def _name(table: Mapping[str, Any]) -> Any:
    name = table.get("name")
    return _plain(name) if isinstance(_plain(name), str) else None


def _last_body(table: Table) -> list[tuple[Any, Any]]:
    """The body whose end comes just before the next table header."""
    body = table.value.body
    while body:
        last = body[-1][1]
        if isinstance(last, Table):
            body = last.value.body
        elif isinstance(last, AoT) and last.body:
            body = last.body[-1].value.body
        else:
            break
    return body


#: A run of comment and blank-line entries in a tomlkit body: (body, start, end).
_Run = tuple[list[tuple[Any, Any]], int, int]


def _trailing(body: list[tuple[Any, Any]], end: int) -> _Run:
    """The comments and blank lines in ``body`` just before ``end``."""
    start = end
    while (
        start
        and body[start - 1][0] is None
        and isinstance(body[start - 1][1], Comment | Whitespace | Null)
    ):
        start -= 1
    return body, start, end


def _run_before(table: Table) -> _Run:
    """The comments and blank lines that end ``table`` (those written above the next one)."""
    body = _last_body(table)
    return _trailing(body, len(body))


def _head(parent: Any, array: AoT) -> _Run | None:
    """The comments written above ``array``'s first table: the end of what precedes it."""
    container = parent if isinstance(parent, Container) else getattr(parent, "value", None)
    if not isinstance(container, Container):
        return None  # e.g. a table split in several places: leave its comments alone
    body = container.body
    index = next((i for i, (_, item) in enumerate(body) if item is array), None)
    if index is None:
        return None
    before = body[index - 1][1] if index else None
    if isinstance(before, Table) or (isinstance(before, AoT) and before.body):
        last = before if isinstance(before, Table) else before.body[-1]
        return _run_before(last)
    run = _trailing(body, index)
    # Nothing but comments above the array: they open the file (or table), not its first entry.
    return None if run[1] == 0 else run


def _replace_run(run: _Run, source: _Run) -> None:
    """Put the entries of ``source`` where ``run`` is. tomlkit finds keys by their position in
    a body, so entries are only added at a body's end; elsewhere the run's own slots take the
    text (and a run with no slot there loses nothing but the new comment)."""
    body, start, end = run
    src_body, src_start, src_end = source
    entries = src_body[src_start:src_end]
    if end == len(body):
        del body[start:]
        body.extend(entries)
    elif end > start:
        text = "".join(item.as_string() for _, item in entries)
        body[start] = (None, Whitespace(text))
        for i in range(start + 1, end):
            body[i] = (None, Null())
