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

from bertlottery.bundle.manifest import BUNDLE_INFO, verify
from bertlottery.errors import BertLotteryError
from bertlottery.families import EVALUATED_KINDS, RETRAINABLE, S, S_MODES, SEPARATE_S_FAMILIES, VARIANTS
from bertlottery.io import read_json
from bertlottery.layout import Layout
from bertlottery.settings import drop_retired_keys, load_schema

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
    return settings | {"max_seq_length": card.get("max_seq_length")}


def bundle_info(directory: str) -> dict:
    """bundle.json of a bundle, after checking the bundle against its manifest; its config without the keys
    retired since it was written (bertlottery.settings.RETIRED_KEYS)."""
    verify(directory)
    info = read_json(Path(directory) / BUNDLE_INFO)
    for key in ("config", "tasks", "seeds"):
        if key not in info:
            raise BertLotteryError(f"{Path(directory) / BUNDLE_INFO}: no {key!r}; expected a bundle.json "
                                   "written by `bertlottery bundle export`")
    drop_retired_keys(info["config"], where=str(Path(directory) / BUNDLE_INFO))
    return info


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Settings (dotted keys) that differ between two configs, with both values; a key only one of them
    has is named as absent (a bundle exported by an older bertlottery may lack a newer key)."""
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
