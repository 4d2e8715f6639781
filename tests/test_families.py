"""The study's vocabulary (bertlottery.families): the registries agree with the schema, the command
table and the layout, and old metrics records read in today's contract (the committed MiniLM bundles)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertlottery import families as F
from bertlottery.analysis.aggregate import collect
from bertlottery.bundle.archive import bundle_folder
from bertlottery.cli import COMMANDS
from bertlottery.errors import BertLotteryError
from bertlottery.layout import Layout, parse
from bertlottery.settings import load_schema
from bertlottery.train.evaluation import upgrade_record

REPO = Path(__file__).resolve().parents[1]
SST2_BUNDLE = REPO / "docs" / "results" / "minilm" / "bundles" / "SST-2.tar.gz"


def test_every_family_is_found_and_derived_by_a_real_command():
    for family in F.FAMILIES.values():
        assert family.finder in COMMANDS and family.deriver in COMMANDS, family.name
        assert family.mask_type in (F.HEADS_MLPS, F.WEIGHTS)
        assert set(family.kinds) <= set(F.MASK_KINDS) and set(F.EVALUATED_KINDS) <= set(family.kinds)
    tables = [f.table for f in F.FAMILIES.values()]
    assert len(set(tables)) == len(tables)  # one appendix table each


def test_registry_matches_the_config_schema():
    schema = load_schema()
    assert schema["definitions"]["family"]["enum"] == list(F.RETRAINABLE)
    assert schema["definitions"]["kind"]["enum"] == list(F.EVALUATED_KINDS)
    modes = schema["properties"]["s_pruning"]["properties"]["modes"]["items"]["enum"]
    assert modes == list(F.S_MODES)
    retrain = schema["properties"]["retrain"]["properties"]
    for variant in F.VARIANTS.values():
        assert variant.mask_kind in F.MASK_KINDS
        if variant.switch:  # every switched variant has its config key and families that exist
            assert retrain[variant.switch]["type"] == "boolean"
            assert variant.families and set(variant.families) <= set(F.FAMILIES)
        else:  # one variant per evaluated kind, retraining that kind
            assert variant.name == variant.mask_kind and variant.name in F.EVALUATED_KINDS


def test_s_modes_and_lookups():
    assert F.family_of_mode("joint") == F.S and F.family_of_mode("heads") == F.S_HEADS
    assert F.SEPARATE_S_FAMILIES == (F.S_HEADS, F.S_MLPS)
    assert F.families_where(deriver="derive-s-masks") == [F.S, F.FISHER, F.S_HEADS, F.S_MLPS]
    assert F.families_where(mask_type=F.WEIGHTS) == [F.M, F.IMP]
    with pytest.raises(BertLotteryError, match="unknown s-pruning mode 'layers'.*joint, heads, mlps"):
        F.family_of_mode("layers")
    with pytest.raises(BertLotteryError, match="unknown mask family 'x'"):
        F.family("x")
    with pytest.raises(BertLotteryError, match="unknown retraining variant 'bad_9ep'"):
        F.variant("bad_9ep")
    switched = F.switched_variants({"bad_6_epochs": True, "random_init_random_s": False})
    assert [v.name for v in switched] == [F.BAD_6EP]


def test_layout_reads_every_family_kind_and_variant_back():
    layout = Layout()
    for family in F.FAMILIES:
        for kind in F.MASK_KINDS:
            parsed = parse(layout.mask_file(family, "RTE", 42, kind))
            assert (parsed.what, parsed.family, parsed.kind) == ("mask_file", family, kind)
        for variant in F.VARIANTS:
            for what in ("retrain_metrics", "retrain_train_log", "retrain_train_summary"):
                parsed = parse(layout.path(what, family=family, variant=variant, task="RTE", seed=42))
                assert (parsed.what, parsed.family, parsed.variant) == (what, family, variant)
    assert parse(layout.finetuned_model_config("RTE", 42)).what == "finetuned_model_config"


def test_old_records_read_their_kind_as_the_variant():
    old = {"task": "RTE", "seed": 1, "family": "s", "kind": "bad_6ep", "evaluated": "retrained",
           "train": {"family": "s", "kind": "bad_6ep"}}
    new = upgrade_record(old)
    assert (new["kind"], new["variant"], new["train"]) == ("bad", "bad_6ep", {"family": "s", "variant": "bad_6ep"})
    pruned = upgrade_record({"family": "s", "kind": "good", "evaluated": "pruned"})
    assert (pruned["kind"], pruned["variant"]) == ("good", None)
    assert upgrade_record(new) == new  # today's records come back unchanged


def test_a_committed_bundle_of_old_records_still_aggregates():
    with bundle_folder(SST2_BUNDLE) as bundle:
        paths = sorted(bundle.glob("retrain/*/*/SST-2/seed*/metrics.json"))
        assert len(paths) == 27  # 3 families x 3 variants x 3 seeds
        records = [json.loads(p.read_text()) for p in paths]
        assert all("variant" not in r for r in records)  # written before `variant` existed
        table = collect(paths)
        for path, row in zip(sorted(map(str, paths)), table.sort_values("source").itertuples()):
            assert row.kind == parse(path, root=str(bundle)).variant  # the variant, from the old `kind`
    assert set(table["kind"]) == {"good", "random", "bad"} and set(table["family"]) == {"m", "s", "super"}
