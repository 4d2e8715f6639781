"""docs/protocol.md lists every config key of the schema, with the schema's default, so the protocol
cannot silently fall behind the code."""

from __future__ import annotations

import re

import yaml
from conftest import REPO

from bertlottery.settings import SCHEMA_PATH

DOC = REPO / "docs" / "protocol.md"


def _keys_and_defaults() -> dict[str, object]:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    found = {}
    for name, prop in schema["properties"].items():
        prop = schema["definitions"]["training"] if prop.get("$ref") == "#/definitions/training" else prop
        if prop.get("type") == "object" and "properties" in prop:
            for key, sub in prop["properties"].items():
                found[f"{name}.{key}"] = sub.get("default")
        else:
            found[name] = prop.get("default")
    return found


def _table_rows() -> list[str]:
    text = DOC.read_text()
    section = text.split("\n## Hyper-parameters\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def _row_of(key: str, rows: list[str]) -> str | None:
    """The table row naming `key`: as `section.key`, or as `key` in a row that names `section.` keys."""
    section, _, leaf = key.rpartition(".")
    for row in rows:
        cell = row.split("|")[1]
        if f"`{key}`" in cell or (section and f"`{section}." in cell and f"`{leaf}`" in cell):
            return row
    return None


def test_every_config_key_is_in_the_hyper_parameter_table():
    rows = _table_rows()
    missing = [key for key in _keys_and_defaults() if _row_of(key, rows) is None]
    assert not missing, f"docs/protocol.md §Hyper-parameters lacks {missing}"


def _numbers(cell: str) -> list[float]:
    out = []
    for token in re.findall(r"-?[\d.]+(?:e-?\d+)?", cell):
        try:
            out.append(float(token))
        except ValueError:
            pass
    return out


def test_scalar_defaults_in_the_table_match_the_schema():
    """Booleans, numbers and strings (lists and null are described in words). A row naming several keys
    must show each key's default among its values."""
    rows = _table_rows()
    for key, default in _keys_and_defaults().items():
        cell = _row_of(key, rows).split("|")[2].replace("`", "")
        if isinstance(default, bool):
            assert str(default).lower() in cell.split(), f"{key}: schema default {default}, doc {cell!r}"
        elif isinstance(default, (int, float)):
            assert float(default) in _numbers(cell), f"{key}: schema default {default}, doc {cell!r}"
        elif isinstance(default, str):
            assert default in cell.split(), f"{key}: schema default {default!r}, doc {cell!r}"
