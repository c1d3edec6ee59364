"""docs/config.md and docs/config.schema.json, generated from the config models.

Run ``python -m gateway.cli.reference`` in a checkout after changing a config model (a key, a
default, a description) or what a remote change may set; it writes both files, and
tests/gateway/config/test_reference.py fails while they differ from what it would write.
``streetgate config reference`` prints the same Markdown.

In the CLI layer because it joins two layers below it: the models (gateway/config) and what a
remote ``config-set`` may change (gateway/management/remote_scope.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import CONFIG_VARIABLE, DEFAULT_CONFIG
from gateway.config.reference import key_tables
from gateway.config.schema import config_schema
from gateway.management.remote_scope import remote_rule

__all__ = ["REGENERATE", "reference_markdown", "schema_json", "write_docs"]

#: The command that regenerates the files, for the test's message and the files' own headers.
REGENERATE = "python -m gateway.cli.reference"

_INTRO = f"""\
# Config reference

<!-- Generated from the config models by `{REGENERATE}`: do not edit by hand. Change a
model's Field(description=...) and run it again; a test fails while this file differs. -->

The gateway reads one TOML file. Every command that needs it finds it the same way:
`-c PATH` (`--config PATH`), else the `{CONFIG_VARIABLE}` environment variable, else
`{DEFAULT_CONFIG}` (where `deploy/install.sh` puts it). `streetgate validate` checks a file,
`streetgate config show` prints it with every default filled in, and `streetgate init` writes
one by asking questions.

- **Durations** are seconds: a number (`30`, `0.5`) or a text with a unit: `"500ms"`, `"30s"`,
  `"2m"`, `"1h"`, `"1d"`.
- **Sizes** are bytes: a number (`268435456`) or a text with a unit: `"256MB"` (10^6),
  `"256MiB"` (2^20), also `B`, `kB`/`KB`, `GB`, `KiB`, `GiB`.
- **Paths** may be relative: to the folder of the config file.
- **Unknown keys are errors**, not ignored: a misspelt key is named with the file and the
  key path.
- **Environment variables**: every key outside `[[devices]]` can also be set by a variable,
  `STREETGATE_` and the key path in capitals joined by `_` (`mqtt.port` →
  `STREETGATE_MQTT_PORT`), checked like the file's value (docs/deploy.md).
- **remote**: whether the platform may change the key with a remote `config-set` command
  (docs/mqtt.md), and within which bounds. A *local-only* key (where data goes, credentials,
  every file path, the metrics listener, any key not named as remote) is changed on site only:
  in the file, with the CLI or the environment.

## Editor support: the JSON Schema

`streetgate config schema` prints a JSON Schema (draft 7) of the file, the same as
[`docs/config.schema.json`](config.schema.json): editors that validate TOML against a schema
complete key names, show these descriptions and flag unknown keys, wrong types and bad
durations while you type. The schema checks the shape; `streetgate validate` checks the rest
(files exist, names are unique, a line pattern's groups match its fields).

With [Taplo](https://taplo.tamasfe.dev/) (the engine of the VS Code extension *Even Better
TOML*, also used by Helix, Neovim and Zed), either put a directive on the first line of the
config file:

```toml
#:schema ./config.schema.json
gateway_id = "cabinet-0012"
```

after writing the schema beside it (`streetgate config schema > config.schema.json`; a path
is relative to the TOML file, an `https://` URL works too), or name it once for a folder of
configs in a `.taplo.toml` at the top of your project:

```toml
[[rule]]
include = ["**/streetgate*.toml", "examples/*.toml"]
[rule.schema]
path = "./docs/config.schema.json"
```

`taplo check --schema file://$PWD/docs/config.schema.json gw.toml` does the same check on the
command line (in CI, say). A `#:schema` line is a TOML comment: the gateway ignores it.

## The keys
"""


def reference_markdown() -> str:
    """docs/config.md as it should be."""
    return _INTRO + "\n" + key_tables(remote_rule)


def schema_json() -> str:
    """docs/config.schema.json as it should be (and ``streetgate config schema``'s output)."""
    schema: dict[str, Any] = config_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_docs(docs: Path) -> list[Path]:
    """Write config.md and config.schema.json into the folder ``docs``; the paths written."""
    written = []
    for name, text in (("config.md", reference_markdown()), ("config.schema.json", schema_json())):
        path = docs / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """``python -m gateway.cli.reference [DOCS]``: write the files into DOCS (default: docs)."""
    docs = Path(argv[0]) if argv else Path("docs")
    if not docs.is_dir():
        print(f"error: reference: no folder {docs}; run it in a checkout", file=sys.stderr)
        return 2
    for path in write_docs(docs):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
