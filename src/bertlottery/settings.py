"""Resolved settings: one task's training settings, config hashes and run provenance.

The Snakefile validates the whole config (with defaults) against workflow/schemas/config.schema.yaml;
this module merges `training` with one task's `overrides` and checks the merged values, so each rule's
params carry only its own task's settings (Snakemake reruns exactly the jobs whose params changed).
"""

from __future__ import annotations

import hashlib
import json
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bertlottery.errors import BertLotteryError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The config schema of the source tree (the package is installed editable, next to the workflow)."""
    if not SCHEMA_PATH.exists():
        raise BertLotteryError(f"{SCHEMA_PATH}: config schema not found; install with `pip install -e .`")
    return yaml.safe_load(SCHEMA_PATH.read_text())


def training_defaults() -> dict[str, Any]:
    props = load_schema()["definitions"]["training"]["properties"]
    return {key: sub["default"] for key, sub in props.items()}


def section_defaults(section: str) -> dict[str, Any]:
    """Schema defaults of one top-level config section (s_pruning, m_pruning, ...): one source of truth."""
    props = load_schema()["properties"][section]["properties"]
    return {key: sub["default"] for key, sub in props.items()}


def resolve_training(config: dict, task: str) -> dict[str, Any]:
    """`training` (with schema defaults) merged with `overrides[task]`, validated."""
    merged = training_defaults()
    merged.update(config.get("training") or {})
    overrides = (config.get("overrides") or {}).get(task) or {}
    merged.update(overrides)
    schema = load_schema()["definitions"]["training"]
    validator = jsonschema.Draft202012Validator(schema)
    for error in validator.iter_errors(merged):
        key = ".".join(str(p) for p in error.path) or "?"
        where = f"overrides.{task}.{key}" if key in overrides else f"training.{key}"
        raise BertLotteryError(f"config key {where}: {error.message}")
    return merged


def config_hash(section: Any) -> str:
    """A short stable hash of a config section (sorted JSON), stored in every output JSON."""
    blob = json.dumps(section, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def parse_json_arg(text: str, name: str) -> dict:
    """Parse a JSON command-line argument (rules pass resolved settings this way)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BertLotteryError(f"--{name}: not valid JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise BertLotteryError(f"--{name}: expected a JSON object, got {type(value).__name__}")
    return value


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "bertlottery": __import__("bertlottery").__version__,
    }


def write_json(path: str | Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename), so a killed job never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BertLotteryError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise BertLotteryError(f"{path}: not valid JSON ({exc})") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
