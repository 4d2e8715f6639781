"""The resolved config of a bundle, and the one study config of several bundles.

A bundle records the workflow's config as the run resolved it: the config files given to `bundle export
--configfile` (as Snakemake's --configfile, later files win) with `--config KEY=VALUE` overrides, and the
schema's defaults filled in. Without --configfile it is rebuilt from the results: schema defaults, the
model and data settings of the data cards (those most tasks share; the others as `overrides`), and the
families, kinds, variants, search modes, traces and speed records whose files exist (training
hyper-parameters other than max_seq_length are then the schema's defaults)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import yaml

from bertlottery.bundle.archive import bundle_folder
from bertlottery.bundle.manifest import BUNDLE_INFO, read_bounded_json, schema_error, verify
from bertlottery.errors import BertLotteryError
from bertlottery.families import EVALUATED_KINDS, RETRAINABLE, S, S_MODES, SEPARATE_S_FAMILIES, VARIANTS
from bertlottery.io import looks_like_path, read_json
from bertlottery.layout import Layout
from bertlottery.settings import (
    TrainingSettings,
    check_config_schema,
    config_hash,
    load_schema,
    resolve_data,
    resolve_training,
)

# What a bundle holds of each exported m-mask (`bundle export --m-masks`, bundle.json's m_masks): the mask
# bit-packed, or only its summary (bertlottery.masks.summary: per-block counts, size, sha256).
FULL, SUMMARY = "full", "summary"
M_MASK_FORMS = (FULL, SUMMARY)
# Keys that may differ between the bundles of one study: paths of the machine each chunk ran on, and
# the per-chunk lists merged below.
_MACHINE_KEYS = {"model", "glue_dir", "tasks", "seeds", "overrides", "bundles"}
# Paths of the machine a chunk ran on inside sections: only whether they are set is a setting (the
# analyses of bundles do not read them).
_MACHINE_PATHS = {"patterns.labelled_dir", "analysis.original_masks_dir"}


def fill_defaults(config: dict) -> dict:
    """The config with the schema's defaults filled in, top-level keys and one level of sections (as
    snakemake.utils.validate(set_default=True) does)."""
    schema = load_schema()
    out = copy.deepcopy(config)
    for key, prop in schema["properties"].items():
        if prop.get("$ref"):
            prop = {**schema["definitions"][prop["$ref"].rsplit("/", 1)[1]], **prop}
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if isinstance(out.get(key), dict) and "properties" in prop:
            for sub, subprop in prop["properties"].items():
                if sub not in out[key] and "default" in subprop:
                    out[key][sub] = copy.deepcopy(subprop["default"])
    return out


def _load_yaml(path: str) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise BertLotteryError(f"--configfile {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise BertLotteryError(f"--configfile {path}: not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise BertLotteryError(f"--configfile {path}: expected a mapping of config keys")
    return loaded


def resolved_config(configfiles: list[str], overrides: list[str] = ()) -> dict:
    """The config a Snakemake run with these --configfile and --config arguments had: merged and parsed by
    Snakemake's own functions (a section given with --config is merged into the files', not replacing it)."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    config: dict = {}
    for path in configfiles:
        update_config(config, _load_yaml(path))
    for item in overrides:
        try:
            update_config(config, parse_config([item]))
        except ValueError as exc:
            raise BertLotteryError(f"--config {item}: {exc}; expected KEY=VALUE, e.g. model=path/to/model") from None
    return fill_defaults(config)


def check_run_config(config: dict, results: Path, chosen: list) -> None:
    """`bundle export --configfile/--config` records a config only if it is the run's own: it must pass the
    schema, cover the exported tasks and seeds, and agree with what the run recorded: each data card's
    model and data settings, each fine-tuned model's metrics.json training-settings hash."""
    check_config_schema(config, where="bundle export: config key")
    parsed = [p for _, _, p in chosen]
    problems = [f"tasks {config['tasks']} lack {task}" for task in sorted({p.task for p in parsed
                if p.what == "full_metrics"} - set(config["tasks"]))]
    problems += [f"seeds {config['seeds']} lack {seed}" for seed in sorted({p.seed for p in parsed
                 if p.what == "full_metrics"} - set(config["seeds"]))]
    for relative, _, found in chosen:
        problems += _record_mismatches(relative, found, results, config)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BertLotteryError(f"bundle export: the config given (--configfile/--config) is not the one the run in "
                               f"{results} used: {shown}; pass the run's own config files and --config values, or "
                               "leave --configfile out to rebuild the config from the results")


def _record_mismatches(relative: str, found, results: Path, config: dict) -> list[str]:
    """What one record of the run (data card, fine-tuning summary or metrics) says the config does not."""
    if found.what == "data_card":
        return _card_mismatches(relative, read_json(results / relative), config)
    if found.what not in {"train_summary", "full_metrics"}:
        return []
    record, training = read_json(results / relative), resolve_training(config, found.task)
    if found.what == "train_summary":
        epochs = record.get("epochs")
        return [f"{relative}: epochs {epochs}, the config {training['epochs']}"] \
            if epochs is not None and epochs != training["epochs"] else []
    expected = config_hash(TrainingSettings.from_dict(training, where="config training"))
    recorded = record.get("config_hash")
    return [f"{relative}: made with training settings of hash {recorded}; this config's for {found.task} hash to "
            f"{expected}"] if recorded and recorded != expected else []


def _card_mismatches(relative: str, card: dict, config: dict) -> list[str]:
    """What a data card recorded that the config resolves differently (keys the card lacks are not checked)."""
    task = card.get("task")
    expected = resolve_data(config, task) | {"max_seq_length": resolve_training(config, task)["max_seq_length"]}
    out = [f"{relative}: {key} {json.dumps(value)}, the config {json.dumps(expected[key])}"
           for key, value in _card_settings(card).items() if key in expected and value != expected[key]]
    model = config.get("model")
    if "tokenizer" in card and not _same_model(str(card["tokenizer"]), str(model)):
        out.append(f"{relative}: model {card['tokenizer']}, the config {model}")
    return out


def _same_model(recorded: str, given: str) -> bool:
    if recorded == given:
        return True
    return looks_like_path(recorded) and looks_like_path(given) and \
        Path(recorded).expanduser().resolve() == Path(given).expanduser().resolve()


def rebuilt_config(results: Path, chosen: list) -> dict:
    """A config rebuilt from the exported files (see the module docstring)."""
    parsed = [p for _, _, p in chosen]
    config: dict = {"tasks": sorted({p.task for p in parsed if p.what == "full_metrics"}),
                    "seeds": sorted({p.seed for p in parsed if p.what == "full_metrics"})}
    cards = {task: read_json(Path(Layout(str(results)).data_card(task)))
             for task in sorted({p.task for p in parsed if p.what == "data_card"})}
    if cards:
        data = {task: _card_settings(card) for task, card in cards.items()}
        first = next(iter(cards.values()))
        config["model"] = first.get("tokenizer")
        # the settings most tasks share (ties: the first task's, as most_common orders equal counts by first
        # appearance); the others become per-task overrides
        shared = Counter(json.dumps(d, sort_keys=True) for d in data.values())
        base = json.loads(shared.most_common(1)[0][0])
        config["data"] = {k: v for k, v in base.items() if k != "max_seq_length"}
        config["training"] = {"max_seq_length": base.get("max_seq_length")}
        config["overrides"] = {task: {k: v for k, v in own.items() if base.get(k) != v}
                               for task, own in data.items() if own != base}

    def has(what, **fields):
        return any(p.what == what and all(getattr(p, k) == v for k, v in fields.items()) for p in parsed)

    retrained = {p.family for p in parsed if p.what == "retrain_metrics"}
    config["retrain"] = {"families": [f for f in RETRAINABLE if f in retrained],
                         "kinds": [k for k in EVALUATED_KINDS if has("pruned_metrics", kind=k)],
                         "separate_searches": any(has("pruned_metrics", family=f) for f in SEPARATE_S_FAMILIES)}
    config["retrain"] |= {v.switch: any(has("retrain_metrics", family=f, variant=v.name) for f in v.families)
                          for v in VARIANTS.values() if v.switch}
    config["s_pruning"] = {"modes": [mode for mode, fam in S_MODES.items() if has("mask_file", family=fam)] or ["joint"],
                           "save_iterations": has("search_trace", family=S)}
    config["patterns"] = {"enabled": has("pattern_counts")}
    config["speed"] = {"enabled": has("speed_record")}
    return fill_defaults(config)


def _card_settings(card: dict) -> dict:
    """The data settings a data card records: subsampling and max_seq_length."""
    sampling = card.get("subsampling") or {}
    settings = {k: sampling[k] for k in ("max_train_examples", "max_dev_examples", "subsample_seed") if k in sampling}
    return settings | ({"max_seq_length": card["max_seq_length"]} if "max_seq_length" in card else {})


def bundle_info_schema() -> dict:
    """What bundle.json must hold to be used: the keys the analyses read, typed (others pass)."""
    schema = load_schema()
    return {
        "definitions": schema["definitions"],
        "type": "object",
        "required": ["config", "tasks", "seeds", "pattern_counts"],
        "properties": {
            "format": {"const": 1},
            "config": {"type": "object"},
            "tasks": schema["properties"]["tasks"],
            "seeds": schema["properties"]["seeds"],
            "pattern_counts": {"type": "boolean"},
            "speed_records": {"type": "boolean"},
            "m_kinds": {"type": "array", "items": {"enum": ["good", "random", "bad"]}},
            "m_masks": {"enum": list(M_MASK_FORMS)},  # absent (bundles before it): full
        },
    }


def bundle_info(directory: str) -> dict:
    """bundle.json of a bundle, after checking the bundle against its manifest: size-bounded, and it and
    its recorded config schema-checked (messages name the bundle and the key) after dropping the keys
    retired since it was written (bertlottery.settings.RETIRED_KEYS)."""
    where = f"bundle {directory}: {BUNDLE_INFO}"
    with bundle_folder(directory) as folder:
        verify(folder)
        info = read_bounded_json(folder / BUNDLE_INFO, folder)
    schema_error(info, bundle_info_schema(), where)
    check_config_schema(info["config"], where=f"{where} config key")
    return info


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Settings (dotted keys) that differ between two configs, with both values; a key only one of them
    has is named as absent (the configs are compared with the schema's defaults filled in, so a key an
    older bertlottery did not write reads as its default)."""
    keys = sorted(set(a) | set(b))
    out = []
    for key in keys:
        dotted = f"{prefix}{key}"
        if not prefix and key in _MACHINE_KEYS:
            continue
        if dotted in _MACHINE_PATHS:
            if bool(a.get(key)) != bool(b.get(key)):
                out.append(f"{dotted} ({'set' if a.get(key) else 'not set'} vs {'set' if b.get(key) else 'not set'})")
            continue
        if (key in a) != (key in b):
            out.append(f"{dotted} ({'absent' if key not in a else json.dumps(a[key])} vs "
                       f"{'absent' if key not in b else json.dumps(b[key])})")
            continue
        va, vb = a[key], b[key]
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{dotted}.")
        elif va != vb:
            out.append(f"{dotted} ({json.dumps(va)} vs {json.dumps(vb)})")
    return out


def study_config(bundles: list[str]) -> dict:
    """One workflow config for the analyses of these bundles: the first bundle's config, its tasks the
    union of the bundles' (in the configs' order), its seeds theirs (every bundle must cover the same
    seeds). Settings that differ between bundles, or a task in two bundles with different settings, are
    an error naming both bundles."""
    if not bundles:
        raise BertLotteryError("config key bundles: empty; expected one or more bundle folders")
    infos = [(str(b), bundle_info(str(b))) for b in bundles]
    for _, info in infos:  # a key added since a bundle was written reads as its default (chunks span versions)
        info["config"] = fill_defaults(info["config"])
    first_dir, first = infos[0]
    config = copy.deepcopy(first["config"])
    order = list(config.get("tasks") or [])
    owner: dict[str, str] = {}
    overrides: dict = {}
    for directory, info in infos:
        differences = _differences(first["config"], info["config"])
        if differences:
            versions = f" (bertlottery {first.get('bertlottery')} vs {info.get('bertlottery')})"
            raise BertLotteryError(f"bundles {first_dir} and {directory} were run with different settings: "
                                   f"{'; '.join(differences[:5])}{versions}; analyse them separately")
        if list(info["seeds"]) != list(first["seeds"]):
            raise BertLotteryError(f"bundles {first_dir} and {directory} cover different seeds ({first['seeds']} vs "
                                   f"{info['seeds']}); every task of one study needs the same seeds")
        for task in info["tasks"]:
            mine = (info["config"].get("overrides") or {}).get(task)
            if task in owner:
                theirs = overrides.get(task)
                if mine != theirs:
                    raise BertLotteryError(f"bundles {owner[task]} and {directory} both hold task {task}, with "
                                           f"different overrides ({json.dumps(theirs)} vs {json.dumps(mine)})")
                continue  # the same task twice: `unpack` checks that their files agree
            owner[task] = directory
            if mine is not None:
                overrides[task] = mine
            if task not in order:
                order.append(task)
    config["tasks"] = [t for t in order if t in owner]
    config["seeds"] = list(first["seeds"])
    config["overrides"] = overrides
    patterns = dict(config.get("patterns") or {})
    # the pattern summary runs only when every bundle holds the counts
    patterns["enabled"] = bool(patterns.get("enabled", True)) and all(i["pattern_counts"] for _, i in infos)
    config["patterns"] = patterns
    if "speed" in config:  # the same for the measured speed (bundles from before it: no records)
        speed = config["speed"] = dict(config["speed"])
        speed["enabled"] = bool(speed.get("enabled")) and all(i.get("speed_records") for _, i in infos)
    for dotted in _MACHINE_PATHS:  # the chunks' machine paths: the analyses read the bundles' files instead
        section, key = dotted.split(".")
        config[section] = {**(config.get(section) or {}), key: None}
    config["bundles"] = [str(b) for b in bundles]
    return config
