"""Turn pydantic validation errors into streetgate config issues (key path + what was expected)."""

from __future__ import annotations

from pydantic import ValidationError

from gateway.core.errors import ConfigIssue


def location_of(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as a key path: ``devices[2].port``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return path


def issues_from_validation_error(exc: ValidationError) -> list[ConfigIssue]:
    """One issue per error, naming the key path and what was expected."""
    issues = []
    for error in exc.errors(include_url=False):
        loc = tuple(
            part
            for part in error["loc"]
            if not (isinstance(part, str) and part.startswith("function-"))
        )
        # Discriminated unions add the tag ("modbus_tcp") to the path; it is noise for a reader.
        loc = tuple(p for p in loc if p not in _UNION_TAGS)
        message = error["msg"]
        ctx = error.get("ctx", {})
        if error["type"] == "extra_forbidden":
            message = "unknown key (not allowed here; check the spelling)"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # pydantic reports these at the table; the mistake is in its tag key ("kind").
            loc = (*loc, str(ctx.get("discriminator", "")).strip("'"))
            expected = ctx.get("expected_tags") or ", ".join(repr(t) for t in _UNION_TAGS)
            message = (
                f"expected one of: {expected} (got {ctx['tag']!r})"
                if "tag" in ctx
                else f"required key is missing; expected one of: {expected}"
            )
        elif error["type"] == "string_pattern_mismatch" and ctx.get("pattern") == _NAME_PATTERN:
            message = (
                "expected a name of letters, digits, '_', '.' or '-', starting with a letter "
                f"or digit (got {error['input']!r})"
            )
        else:
            message = message.removeprefix("Value error, ")
            if "input" in error and not isinstance(error["input"], dict | list):
                shown = repr(error["input"])
                if shown not in message:
                    message += f" (got {shown})"
        issues.append(ConfigIssue(location_of(loc), message))
    return issues


#: Device kinds (the ``kind`` tags of gateway.config.devices.DeviceConfig; a test keeps them equal).
_UNION_TAGS = (
    "modbus_tcp",
    "modbus_rtu",
    "sds011",
    "pms5003",
    "line",
    "bthome",
    "ruuvi",
    "ble_gatt",
)
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # the name pattern of config and profile models
