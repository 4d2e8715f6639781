"""Resolved settings: typed config sections, one task's training settings, config hashes and provenance.

The Snakefile validates the whole config (with defaults) against the packaged schema
(bertlottery/resources/config.schema.yaml); this module merges `training` with one task's `overrides` and
checks the merged values, so each rule's params carry only its own task's settings (Snakemake reruns
exactly the jobs whose params changed). Each command builds its section's frozen dataclass once from the
JSON the rule passes (`TrainingSettings.from_dict(d, where=...)`: schema defaults filled in, unknown keys
rejected); the code below the command line reads attributes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import jsonschema
import yaml

from bertlottery.errors import BertLotteryError
from bertlottery.io import check_model_source


def resource_path(name: str) -> Path:
    """A data file the package carries (bertlottery/resources/<name>): a real path for normal installs."""
    return Path(str(resources.files("bertlottery") / "resources" / name))


SCHEMA_PATH = resource_path("config.schema.yaml")


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The config schema the package carries."""
    if not SCHEMA_PATH.exists():
        raise BertLotteryError(f"{SCHEMA_PATH}: config schema not found; the package was installed without its data")
    return yaml.safe_load(SCHEMA_PATH.read_text())


# Keys removed from the schema, per section, with the value every result made before their removal hashed.
# training.keep_weights (default true) was hashed into every training job although no job read it; it is
# still passed and hashed as true, so config hashes, job fingerprints and the rules' params of existing
# results stay the same and no finished job reruns. A config or bundle may still set it to that value.
RETIRED_KEYS: dict[str, dict[str, Any]] = {"training": {"keep_weights": True}}


def drop_retired_keys(config: dict, where: str = "config") -> None:
    """Remove retired keys (RETIRED_KEYS) from a workflow config in place, in their sections and in every
    task's overrides; one set to another value than the one hashed is an error naming it."""
    for section, retired in RETIRED_KEYS.items():
        places = [(f"{section}", config.get(section))]
        places += [(f"overrides.{task}", given) for task, given in (config.get("overrides") or {}).items()]
        for name, given in places:
            for key, value in retired.items():
                if isinstance(given, dict) and key in given:
                    if given[key] != value:
                        raise BertLotteryError(f"{where} key {name}.{key}: removed (no job read it); its results "
                                               f"were hashed with {json.dumps(value)}: delete the key")
                    del given[key]


def training_defaults() -> dict[str, Any]:
    return TrainingSettings.defaults()


def section_defaults(section: str) -> dict[str, Any]:
    """Schema defaults of one top-level config section (s_pruning, m_pruning, ...): one source of truth."""
    props = load_schema()["properties"][section]["properties"]
    return {key: sub["default"] for key, sub in props.items()}


def check_config(config: dict) -> None:
    """Check a workflow config before any job runs (Snakemake's `config`, changed in place only to read
    command-line lists: `--config seeds=[42]` arrives as ['42'], and to drop retired keys). One line per problem, naming the key,
    the value and the rule broken; a local `model` or `glue_dir` must exist (a hub id passes)."""
    check_config_schema(config)
    model = config.get("model")
    if isinstance(model, str):
        try:
            check_model_source(model)
        except BertLotteryError as exc:
            raise BertLotteryError(f"config key model: {exc}") from None
    glue_dir = config.get("glue_dir")
    if glue_dir and not Path(glue_dir).expanduser().is_dir():
        raise BertLotteryError(f"config key glue_dir: folder {glue_dir} not found (from {Path.cwd()}); "
                               "expected the download_glue_data.py layout <glue_dir>/<TASK>/{train,dev}.tsv, "
                               "or null to read the HuggingFace hub")


def check_config_schema(config: dict, where: str = "config key") -> None:
    """The schema and the overrides of a config, each problem one line naming the key (`where` + key), the
    value and the rule broken; retired keys dropped and command-line lists (`--config seeds=[42]` arrives as
    ['42']) read in place."""
    drop_retired_keys(config, where=where.removesuffix(" key"))
    for key, convert in (("seeds", _int_if_digits), ("tasks", str)):
        value = config.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]  # --config seeds=42
        if isinstance(value, list):
            config[key] = [convert(v) for v in value]
    schema = load_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    _read_nested_scalars(config, validator)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        rule = json.dumps(error.validator_value, default=str)
        rule = rule if len(rule) <= 120 else rule[:117] + "..."
        raise BertLotteryError(f"{where} {key or '(top level)'}: {_short(error.message)} "
                               f"(schema rule {error.validator}: {rule})")
    extra = sorted(set(config.get("overrides") or {}) - set(config.get("tasks") or []))
    if extra:
        raise BertLotteryError(f"{where} overrides: {', '.join(extra)} not in tasks {config.get('tasks')}; "
                               "add the task to `tasks` or remove its override")


def _read_nested_scalars(config: dict, validator) -> None:
    """Snakemake passes scalars inside nested --config values as strings (`training={epochs: 2}` gives
    '2'): where the schema wants a number, integer, boolean or null and the string reads as one in YAML,
    use that value, as a Snakemake user expects."""
    for error in list(validator.iter_errors(config)):
        if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
            continue
        value = _yaml_scalar(error.instance)
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        if not isinstance(value, str) and any(validator.is_type(value, t) for t in wanted):
            *parents, last = error.absolute_path
            container = config
            for part in parents:
                container = container[part]
            container[last] = value


def _yaml_scalar(text: str) -> Any:
    """'2' -> 2, 'true' -> True, '1e-4' -> 0.0001 (YAML 1.1 wants '1.0e-4'); other text as it is."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _int_if_digits(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _task_overrides(config: dict, task: str, section: str) -> dict[str, Any]:
    """The keys of `overrides[task]` that belong to `section`: `data` keys (max_train_examples, ...) go
    to the data section, every other key to `training`."""
    overrides = (config.get("overrides") or {}).get(task) or {}
    data_keys = set(section_defaults("data"))
    return {k: v for k, v in overrides.items() if (k in data_keys) == (section == "data")}


def _resolve(config: dict, task: str, section: str, defaults: dict[str, Any], schema: dict) -> dict[str, Any]:
    merged = dict(defaults)
    merged.update(config.get(section) or {})
    overrides = _task_overrides(config, task, section)
    merged.update(overrides)
    for error in jsonschema.Draft202012Validator(schema).iter_errors(merged):
        key = ".".join(str(p) for p in error.path) or "?"
        where = f"overrides.{task}.{key}" if key in overrides else f"{section}.{key}"
        raise BertLotteryError(f"config key {where}: {error.message}")
    return merged


def resolve_training(config: dict, task: str) -> dict[str, Any]:
    """`training` (with schema defaults) merged with the training keys of `overrides[task]`, validated; with
    the retired keys' values, as rules passed them before (RETIRED_KEYS)."""
    merged = _resolve(config, task, "training", training_defaults(), load_schema()["definitions"]["training"])
    return merged | RETIRED_KEYS["training"]


def resolve_data(config: dict, task: str) -> dict[str, Any]:
    """`data` (with schema defaults) merged with the data keys of `overrides[task]` (e.g. a task's own
    max_train_examples), validated: prepare-data's settings for that task."""
    return _resolve(config, task, "data", section_defaults("data"), load_schema()["properties"]["data"])


# ----------------------------------------------------------------------------------------------------
# Typed sections: built once at the command line from the rule's JSON


S = TypeVar("S", bound="Section")


@dataclass(frozen=True)
class Section:
    """One config section as a frozen dataclass. Fields follow the schema's properties, in its order
    (`to_dict` is the section as the rule passed it, with defaults: what JSON outputs and hashes hold).
    Values are kept as given (no type coercion), so hashes of the resolved section are unchanged."""

    SCHEMA: ClassVar[tuple[str, ...]]  # path of the section's object in the schema
    RETIRED: ClassVar[dict[str, Any]] = {}  # keys removed from the schema: the value earlier results hashed
    UNKNOWN: ClassVar[str] = "{where}: unknown key(s) {unknown}; expected some of {expected}"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The schema's default of every key of the section, in schema order."""
        node = load_schema()
        for key in cls.SCHEMA:
            node = node[key]
        defaults = {key: sub["default"] for key, sub in node["properties"].items()}
        names = [f.name for f in fields(cls)]
        if names != list(defaults):  # a schema edit without the matching dataclass edit
            raise BertLotteryError(f"{cls.__name__}: fields {names} differ from the schema's "
                                   f"{'.'.join(cls.SCHEMA)} keys {list(defaults)}")
        return defaults

    @classmethod
    def from_dict(cls: type[S], given: Mapping[str, Any], *, where: str) -> S:
        """`given` over the schema defaults; unknown keys are an error naming `where`. Retired keys are
        accepted with the value earlier results hashed (and dropped)."""
        defaults = cls.defaults()
        changed = sorted(k for k, v in cls.RETIRED.items() if k in given and given[k] != v)
        if changed:
            raise BertLotteryError(f"{where}: {changed} removed (no job read them); expected them absent")
        given = {k: v for k, v in given.items() if k not in cls.RETIRED}
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise BertLotteryError(cls.UNKNOWN.format(where=where, unknown=unknown, expected=sorted(defaults)))
        return cls(**(defaults | dict(given)))

    @classmethod
    def from_arg(cls: type[S], text: str, name: str, *, where: str | None = None) -> S:
        """The section from a command's JSON argument `--<name>` (what the rule passes): parsed, defaults
        filled in, unknown keys an error naming `where` (default `--<name>`)."""
        return cls.from_dict(parse_json_arg(text, name), where=where or f"--{name}")

    def to_dict(self) -> dict[str, Any]:
        """The section as rules pass it and hashes hold it (retired keys included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | self.RETIRED


@dataclass(frozen=True)
class TrainingSettings(Section):
    """`training` merged with a task's overrides (resolve_training): fine-tuning and evaluation."""

    SCHEMA = ("definitions", "training")
    RETIRED = RETIRED_KEYS["training"]

    learning_rate: float
    batch_size: int
    epochs: float
    warmup_steps: int
    weight_decay: float
    adam_epsilon: float
    adam_beta1: float
    adam_beta2: float
    max_seq_length: int
    max_grad_norm: float
    precision: str
    tf32: bool
    deterministic: bool
    eval_batch_size: int
    dynamic_padding: bool
    padding_free: bool
    length_grouping: bool
    fused_adamw: bool
    attention: str
    compile: bool
    log_every: int
    checkpoint_every_steps: int


@dataclass(frozen=True)
class DataSettings(Section):
    """The `data` section: subsampling of the prepared splits."""

    SCHEMA = ("properties", "data")
    UNKNOWN = "{where}: unknown keys {unknown}; expected some of {expected}"

    max_train_examples: int | None
    max_dev_examples: int | None
    subsample_seed: int


@dataclass(frozen=True)
class SPruningSettings(Section):
    """The `s_pruning` section (find-s-mask)."""

    SCHEMA = ("properties", "s_pruning")

    modes: list[str]
    threshold: float
    amount: float
    batch_size: int
    gradient_accumulation: str
    save_iterations: bool
    empty_layer_bias: bool
    heads_only_empty_layers: bool


@dataclass(frozen=True)
class MPruningSettings(Section):
    """The `m_pruning` section (find-m-mask)."""

    SCHEMA = ("properties", "m_pruning")

    threshold: float
    amount: float
    max_iterations: int
    batch_size: int
    cap_quirk: bool
    bad_mode: str


@dataclass(frozen=True)
class SpeedSettings(Section):
    """The `speed` section (speed: measured subnetwork speed, beyond the paper)."""

    SCHEMA = ("properties", "speed")

    enabled: bool
    repeats: int
    warmup: int
    train_steps: int
    max_dev_examples: int | None


@dataclass(frozen=True)
class FPruningSettings(Section):
    """The `f_pruning` section (find-f-mask)."""

    SCHEMA = ("properties", "f_pruning")

    n_examples: int
    batch_size: int
    replacement: bool
    counts: str
    flops_fraction: float | None
    flops_seq_length: int
    rearrange: bool


@dataclass(frozen=True)
class IPruningSettings(Section):
    """The `i_pruning` section (find-i-mask: IMP with rewinding, family i)."""

    SCHEMA = ("properties", "i_pruning")

    threshold: float
    amount: float
    max_rounds: int
    batch_size: int
    bad_mode: str


SECTIONS: dict[str, type[Section]] = {"training": TrainingSettings, "data": DataSettings,
                                      "s_pruning": SPruningSettings, "m_pruning": MPruningSettings,
                                      "speed": SpeedSettings, "f_pruning": FPruningSettings,
                                      "i_pruning": IPruningSettings}


# Keys added after results were published, at the value that changes nothing: left out of the rules'
# params and of config hashes, so existing results are neither rerun nor mistaken for another run's.
NEUTRAL_DEFAULTS = {"deterministic": False}


def without_neutral_defaults(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if not (k in NEUTRAL_DEFAULTS and v is NEUTRAL_DEFAULTS[k])}


def config_hash(section: Any) -> str:
    """A short stable hash of a config section (sorted JSON), stored in every output JSON. A typed
    section hashes as its dict, so the hash is the same as of the JSON the rule passed (with defaults)."""
    if isinstance(section, Section):
        section = section.to_dict()
    if isinstance(section, Mapping):
        section = without_neutral_defaults(section)
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


# provenance(device=NOT_RECORDED): the record keeps the device elsewhere (the speed record's `machine`).
NOT_RECORDED: Any = object()


def provenance(started: float | None, settings: Any, device: str | None = NOT_RECORDED) -> dict[str, Any]:
    """The provenance fields every job's JSON ends with, in this order: wall time since `started` (None:
    not timed), the device it ran on, the library versions and the config hash of its settings."""
    fields: dict[str, Any] = {"wall_time_s": None if started is None else round(time.time() - started, 3)}
    if device is not NOT_RECORDED:
        fields["device"] = device
    return fields | {"versions": library_versions(), "config_hash": config_hash(settings)}


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
