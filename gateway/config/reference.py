"""The config keys as Markdown tables, from the config models: docs/config.md's body.

Every table of the config (``[mqtt]``, ``[mqtt.tls]``, each ``[[devices]]`` kind and its inner
tables) gets a table of its keys: type, default, allowed values, whether a remote
``config-set`` may change it, and the field's description. The models are walked, not listed,
so a key or table added to a model shows up when docs/config.md is generated again
(``python -m gateway.cli.reference``). What a remote change may set is the management layer's
knowledge: the caller passes it in (``remote``), this layer never imports it.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from gateway.config.model import GatewayConfig
from gateway.core.config_types import value_kind
from gateway.core.units import DURATION_PATTERN, format_duration

__all__ = ["RemoteRule", "Table", "key_tables", "tables"]

_KIND = "Which kind of device this table is: it decides the other keys."

#: What a remote config-set may set a key to ("mqtt.max_inflight", "devices.host"), in words;
#: None when the key is local-only.
RemoteRule = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the config file and the model that checks it."""

    heading: str  # as it is written in TOML: "[mqtt.tls]", '[[devices]] kind = "modbus_tcp"'
    anchor: str  # the id other tables link to
    key: str  # its key path, without kinds or indexes: "mqtt.tls", "devices.units"
    model: type[BaseModel]


def _without_none(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _inner(annotation: Any) -> tuple[str, list[type[BaseModel]]]:
    """The models a field holds and how: ``("table", [M])``, ``("array", [M, ...])`` (a list
    of tables, one model per kind) or ``("map", [M])`` (a table of named tables)."""
    for each in _without_none(_unwrap(annotation)):
        option = _unwrap(each)
        origin = get_origin(option)
        if origin is tuple:
            item = _unwrap(get_args(option)[0])
            models = [m for m in _without_none(item) if _is_model(m)]
            if models:
                return "array", models
        elif origin is dict:
            value = _unwrap(get_args(option)[1])
            if _is_model(value):
                return "map", [value]
        elif _is_model(option):
            return "table", [option]
    return "value", []


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _kind(model: type[BaseModel]) -> str | None:
    info = model.model_fields.get("kind")
    if info is None or get_origin(info.annotation) is not Literal:
        return None
    return str(get_args(info.annotation)[0])


def tables() -> list[Table]:
    """Every table of the config file, in the order a file is written, each model once."""
    found: list[Table] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], key: str, heading: str, anchor: str) -> None:
        seen.add(model)
        found.append(Table(heading, anchor, key, model))
        for name, info in model.model_fields.items():
            shape, models = _inner(info.annotation)
            sub = f"{key}.{name}" if key else name
            for inner in models:
                if inner in seen:
                    continue
                kind = _kind(inner)
                if shape == "array" and kind is not None:
                    walk(inner, sub, f'[[{sub}]] kind = "{kind}"', f"{sub}-{kind}")
                elif shape == "array":
                    walk(inner, sub, f"[[{sub}]]", sub.replace(".", "-"))
                elif shape == "map":
                    walk(inner, sub, f"[{sub}.<name>]", sub.replace(".", "-"))
                else:
                    walk(inner, sub, f"[{sub}]", sub.replace(".", "-"))

    walk(GatewayConfig, "", "Top level", "top-level")
    return found


def key_tables(remote: RemoteRule) -> str:
    """docs/config.md's tables: a section per config table, a row per key."""
    all_tables = tables()
    anchors = {t.model: t.anchor for t in all_tables}
    sections = []
    for table in all_tables:
        doc = _first_paragraph(table.model.__doc__ or "")
        rows = [
            "| key | type | default | allowed | remote | what it does |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        properties = table.model.model_json_schema()["properties"]
        for name, info in table.model.model_fields.items():
            key = f"{table.key}.{name}" if table.key else name
            rows.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        f"`{name}`",
                        _type_text(info, properties[name], anchors),
                        _default_text(info),
                        _allowed_text(info),
                        _remote_text(name, key, table, remote),
                        info.description or (_KIND if name == "kind" else ""),
                    )
                )
                + " |"
            )
        sections.append(
            f'<a id="{table.anchor}"></a>\n\n### {_heading(table)}\n\n{doc}\n\n' + "\n".join(rows)
        )
    return "\n\n".join(sections) + "\n"


def _heading(table: Table) -> str:
    return table.heading if table.heading == "Top level" else f"`{table.heading}`"


def _remote_text(name: str, key: str, table: Table, remote: RemoteRule) -> str:
    if name == "kind" and table.key == "devices":
        return "yes"
    rule = remote(key)
    return "local-only" if rule is None else rule


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n", 1)[0].split()).replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the columns ------------------------------------------------------------------------------


def _type_text(  # noqa: PLR0911 - one return per kind of value
    info: FieldInfo, schema: dict[str, Any], anchors: dict[type[BaseModel], str]
) -> str:
    kind = value_kind(info.metadata)
    # A duration that may be absent or 0 has its own validator; its schema says it is one.
    if kind == "duration" or json.dumps(DURATION_PATTERN)[1:-1] in json.dumps(schema):
        return "duration (s)"
    if kind == "size":
        return "size (bytes)"
    shape, models = _inner(info.annotation)
    links = ", ".join(f"[{_kind(m) or 'table'}](#{anchors[m]})" for m in models if m in anchors)
    if shape == "array":
        return f"array of tables: {links}"
    if shape == "map":
        return f"table of named tables: {links}"
    if shape == "table":
        # A profile is a name or a file, or a table: its JSON Schema says so.
        if {"type": "string"} in schema.get("anyOf", []):
            return f"string or [table](#{anchors[models[0]]})"
        return f"[table](#{anchors[models[0]]})"
    return " or ".join(_scalar(_unwrap(a)) for a in _without_none(_unwrap(info.annotation)))


def _scalar(annotation: Any) -> str:
    names: dict[Any, str] = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        Path: "path",
        SecretStr: "string (secret)",
    }
    if annotation in names:
        return names[annotation]
    if get_origin(annotation) is tuple:
        items = [_scalar(_unwrap(a)) for a in get_args(annotation) if a is not Ellipsis]
        return f"array of {len(items)} {items[0]}s" if len(set(items)) == 1 else "array"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string"
    if get_origin(annotation) is Literal:
        return "integer" if all(isinstance(v, int) for v in get_args(annotation)) else "string"
    return str(annotation)


def _default_text(info: FieldInfo) -> str:  # noqa: PLR0911 - one return per kind of value
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "not set"
    kind = value_kind(info.metadata)
    if kind == "duration":
        return f'`"{format_duration(float(value))}"`'
    if kind == "size":
        return f"`{value}` ({_human_size(int(value))})" if value else "`0`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, tuple | list):
        return "`[]`" if not value else f"`{list(value)}`"
    return f"`{value}`"


def _human_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _allowed_text(info: FieldInfo) -> str:
    parts = list(_choices(info.annotation))
    suffix = "s" if value_kind(info.metadata) == "duration" else ""
    # pydantic keeps a Field's constraints as annotated-types objects (Gt, Le, MinLen, ...) and
    # a pattern in its own metadata: read by attribute, lower bounds first.
    bounds = (
        ("gt", "> {}{}"),
        ("ge", "≥ {}{}"),
        ("lt", "< {}{}"),
        ("le", "≤ {}{}"),
    )
    for attribute, form in bounds:
        for item in info.metadata:
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(form.format(_number(value), suffix))
    for item in info.metadata:
        min_length = getattr(item, "min_length", None)
        max_length = getattr(item, "max_length", None)
        pattern = getattr(item, "pattern", None)
        if min_length:
            parts.append("not empty" if min_length == 1 else f"≥ {min_length} items")
        if max_length is not None:
            parts.append(f"≤ {max_length} characters")
        if pattern:
            parts.append(f"`{pattern}`")
    return ", ".join(parts)


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _choices(annotation: Any) -> Iterator[str]:
    for option in _without_none(_unwrap(annotation)):
        if isinstance(option, type) and issubclass(option, enum.Enum):
            yield " or ".join(f'`"{member.value}"`' for member in option)
        elif get_origin(option) is Literal:
            yield " or ".join(
                f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in get_args(option)
            )
