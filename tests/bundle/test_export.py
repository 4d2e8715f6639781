"""`bundle export` on a small hand-made results tree: what goes in, what stays out, and `unpack`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlottery.bundle.cli import main_bundle
from bertlottery.bundle.config import fill_defaults, resolved_config, study_config
from bertlottery.bundle.export import export
from bertlottery.bundle.manifest import verify, write_manifest
from bertlottery.bundle.unpack import unpack
from bertlottery.errors import BertLotteryError
from bertlottery.layout import Layout, parse
from bertlottery.masks.types import HeadMlpMask, WeightMask

L = Layout("results")


def _write(root: Path, relative: str, text: str = "{}\n") -> None:
    path = root / relative.removeprefix("results/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _results(root: Path, tasks=("CoLA", "RTE"), seeds=(1, 2)) -> Path:
    for task in tasks:
        _write(root, L.data_card(task), json.dumps({"task": task, "tokenizer": "some/model", "max_seq_length": 64,
                                                    "subsampling": {"max_train_examples": 10}}))
        _write(root, L.data_splits(task) + "/train.safetensors", "not exported")
        for seed in seeds:
            _write(root, L.full_metrics(task, seed), json.dumps({"task": task, "seed": seed, "predictions": {
                "dev": {"predicted": "0110", "labels": "0100"}}}, indent=2))  # kept for a dev bootstrap
            _write(root, L.train_summary(task, seed))
            _write(root, L.train_log(task, seed), "step,loss\n")
            _write(root, L.speed_record(task, seed))
            _write(root, L.finetuned_model(task, seed) + "/config.json", '{"num_hidden_layers": 2}')
            _write(root, L.finetuned_model(task, seed) + "/model.safetensors", "weights: not exported")
            _write(root, L.finetune_dir(task, seed) + "/checkpoint/optimizer.pt", "not exported")
            HeadMlpMask.full(2, 4).save(root / L.mask_file("s", task, seed, "good").removeprefix("results/"))
            _write(root, L.search_record("s", task, seed))
            for kind in ("good", "random", "bad"):
                WeightMask({"w": torch.rand(9, 5) < 0.5}).save(
                    root / L.mask_file("m", task, seed, kind).removeprefix("results/"))
                _write(root, L.pruned_metrics("m", kind, task, seed))
                _write(root, L.retrain_metrics("m", kind, task, seed))
                _write(root, L.retrain_dir("m", kind, task, seed) + "/train_log.csv", "step\n")
            _write(root, L.benchmark("finetune", task, seed=seed), "s\n1.0\n")
            _write(root, L.log("finetune", task, seed=seed), "log: not exported")
    _write(root, L.benchmark("analysis", "aggregate"), "s\n0.1\n")
    for task in tasks:
        _write(root, L.benchmark("prepare_data", task), "s\n1.0\n")
        _write(root, L.benchmark("report", "figure1", task), "s\n1.0\n")
    return root


# The settings the hand-made data cards record: a config given to `bundle export` must agree with them.
RUN = "model: some/model\ndata: {max_train_examples: 10}\nseeds: [1, 2]\ntasks: [CoLA, RTE]\n"


def _exported(bundle: Path) -> set[str]:
    return {e["path"] for e in json.loads((bundle / "manifest.json").read_text())["files"]}


def test_export_keeps_the_layout_and_only_small_artifacts(tmp_path):
    results = _results(tmp_path / "results")
    config = tmp_path / "study.yaml"
    config.write_text(RUN + "training: {learning_rate: 1.0e-4}\n")
    info = export(str(results), str(tmp_path / "b"), tasks=["RTE"], m_kinds=["good"],
                  configfiles=[str(config)], overrides=["model=some/model", "seeds=[2,1]", "training={max_seq_length: 64}"])
    files = _exported(tmp_path / "b")
    assert info["tasks"] == ["RTE"] and info["seeds"] == [2, 1] and info["config_source"] == "configfile"
    assert info["config"]["model"] == "some/model" and info["config"]["training"]["learning_rate"] == 1e-4
    assert info["config"]["training"]["batch_size"] == 32  # schema defaults filled in
    assert {"hardware", "libraries", "created"} <= set(info) and info["hardware"]["cores"] >= 1
    assert not any("CoLA" in f for f in files)
    assert not any(w in f for f in files for w in ("splits", "model.safetensors", "checkpoint", "logs/"))
    assert "finetune/RTE/seed1/model/config.json" in files and "benchmarks/finetune/RTE/seed1.tsv" in files
    assert "benchmarks/prepare_data/RTE.tsv" in files and "speed/RTE/seed2/speed.json" in files
    assert "benchmarks/analysis/aggregate.tsv" not in files  # analysis jobs: rerun from the bundles
    assert "benchmarks/report/figure1/RTE.tsv" not in files
    assert "masks/m/RTE/seed1/good.safetensors" in files and "masks/m/RTE/seed1/bad.safetensors" not in files
    assert "retrain/m/bad/RTE/seed2/train_log.csv" in files and "bundle.json" in files
    for relative in files - {"bundle.json", "finetune/RTE/seed1/model/config.json",
                             "finetune/RTE/seed2/model/config.json"}:
        assert parse("results/" + relative).task == "RTE" if relative.startswith(("masks", "eval")) else True
    verify(tmp_path / "b")


def test_unpack_restores_the_results_files_bit_for_bit(tmp_path):
    results = _results(tmp_path / "results")
    main_bundle(["export", "--results", str(results), "--out", str(tmp_path / "b")])
    count = unpack([str(tmp_path / "b")], str(tmp_path / "restored"))
    assert count == len(_exported(tmp_path / "b")) - 1 - 6  # no bundle.json, no benchmarks
    for relative in ("masks/m/CoLA/seed2/random.safetensors", "masks/s/RTE/seed1/good.safetensors",
                     "eval/m/bad/RTE/seed2/pruned.json", "finetune/RTE/seed1/metrics.json"):
        assert (tmp_path / "restored" / relative).read_bytes() == (results / relative).read_bytes()


def test_two_exports_differ_only_in_bundle_json(tmp_path):
    results = _results(tmp_path / "results")
    for name in ("a", "b"):
        export(str(results), str(tmp_path / name))
    a = json.loads((tmp_path / "a" / "manifest.json").read_text())["files"]
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())["files"]
    assert [e for e in a if e["path"] != "bundle.json"] == [e for e in b if e["path"] != "bundle.json"]


def test_study_config_of_per_task_bundles(tmp_path):
    results = _results(tmp_path / "results")
    for task in ("RTE", "CoLA"):
        export(str(results), str(tmp_path / task), tasks=[task])
    config = study_config([str(tmp_path / "RTE"), str(tmp_path / "CoLA")])
    # a rebuilt config lists only its bundle's task: the bundles' order then
    assert config["tasks"] == ["RTE", "CoLA"] and config["seeds"] == [1, 2]
    assert config["retrain"]["families"] == ["m"] and config["bundles"] == [str(tmp_path / "RTE"), str(tmp_path / "CoLA")]


def test_bundles_with_different_settings_or_seeds_are_an_error_naming_both(tmp_path):
    results = _results(tmp_path / "results")
    (tmp_path / "study.yaml").write_text(RUN + "training: {learning_rate: 1.0e-4, max_seq_length: 64}\n")
    export(str(results), str(tmp_path / "CoLA"), tasks=["CoLA"], configfiles=[str(tmp_path / "study.yaml")])
    config = tmp_path / "other.yaml"
    config.write_text(RUN + "training: {learning_rate: 0.5, max_seq_length: 64}\n")
    export(str(results), str(tmp_path / "RTE"), tasks=["RTE"], configfiles=[str(config)])
    with pytest.raises(BertLotteryError, match=r"bundles .*CoLA and .*RTE were run with different settings: .*"
                                               r"training.learning_rate"):
        study_config([str(tmp_path / "CoLA"), str(tmp_path / "RTE")])
    other = _results(tmp_path / "results2", tasks=("RTE",), seeds=(1, 3))
    export(str(other), str(tmp_path / "RTE3"), configfiles=[str(tmp_path / "study.yaml")], overrides=["seeds=[1,3]"])
    with pytest.raises(BertLotteryError, match="cover different seeds"):
        study_config([str(tmp_path / "CoLA"), str(tmp_path / "RTE3")])


def test_export_errors_name_what_is_wrong(tmp_path):
    results = _results(tmp_path / "results")
    with pytest.raises(BertLotteryError, match=r"no results of task\(s\) MRPC"):
        export(str(results), str(tmp_path / "b"), tasks=["MRPC"])
    export(str(results), str(tmp_path / "b"))
    with pytest.raises(BertLotteryError, match="folder exists and is not empty"):
        export(str(results), str(tmp_path / "b"))
    with pytest.raises(BertLotteryError, match="results folder not found"):
        export(str(tmp_path / "nowhere"), str(tmp_path / "c"))


def test_the_same_file_with_different_contents_in_two_bundles_is_an_error(tmp_path):
    results = _results(tmp_path / "results", tasks=("RTE",))
    export(str(results), str(tmp_path / "a"))
    (results / "finetune" / "RTE" / "seed1" / "metrics.json").write_text('{"changed": true}')
    export(str(results), str(tmp_path / "b"))
    assert study_config([str(tmp_path / "a"), str(tmp_path / "b")])["tasks"] == ["RTE"]
    with pytest.raises(BertLotteryError, match=r"bundles .*a and .*b both hold finetune/RTE/seed1/metrics.json, "
                                               "with different contents"):
        unpack([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "restored"))


def test_family_f_travels_in_bundles(tmp_path):
    """The optional Fisher family: its good masks and retrained runs are exported, restored, and put f back
    into the rebuilt config's retrain.families."""
    results = _results(tmp_path / "results", tasks=("RTE",))
    for seed in (1, 2):
        HeadMlpMask.full(2, 4).save(results / L.mask_file("f", "RTE", seed, "good").removeprefix("results/"))
        _write(results, L.retrain_metrics("f", "good", "RTE", seed))
    export(str(results), str(tmp_path / "b"))
    assert study_config([str(tmp_path / "b")])["retrain"]["families"] == ["m", "f"]
    unpack([str(tmp_path / "b")], str(tmp_path / "restored"))
    relative = "masks/f/RTE/seed1/good.safetensors"
    assert (tmp_path / "restored" / relative).read_bytes() == (results / relative).read_bytes()


def test_config_overrides_are_merged_and_parsed_as_snakemake_does(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("retrain: {families: [m, s]}\ndata: {max_train_examples: 2000}\n")
    resolved = resolved_config([str(config)], ["retrain={kinds: [good]}", "seeds=[42, 86]", "epochs=3"])
    # a section given with --config is merged into the file's (Snakemake's update_config), not replacing it
    assert resolved["retrain"]["families"] == ["m", "s"] and resolved["retrain"]["kinds"] == ["good"]
    assert resolved["data"]["max_train_examples"] == 2000 and resolved["epochs"] == 3
    assert resolved["seeds"] == ["42", "86"]  # Snakemake's --config reads list items as strings
    with pytest.raises(BertLotteryError, match=r"--config =1: .*expected KEY=VALUE"):
        resolved_config([], ["=1"])


def test_rebuilt_config_reads_per_task_data_and_optional_outputs(tmp_path):
    results = _results(tmp_path / "results", tasks=("CoLA", "RTE", "SST-2"))
    _write(results, L.data_card("CoLA"), json.dumps({"task": "CoLA", "tokenizer": "some/model", "max_seq_length": 64,
                                                     "subsampling": {"max_train_examples": None}}))
    _write(results, L.search_trace("s", "RTE", 1))
    export(str(results), str(tmp_path / "b"))
    config = json.loads((tmp_path / "b" / "bundle.json").read_text())["config"]
    assert config["data"]["max_train_examples"] == 10 and config["overrides"] == {"CoLA": {"max_train_examples": None}}
    assert config["speed"]["enabled"] and config["s_pruning"]["save_iterations"]
    assert not config["retrain"]["bad_6_epochs"] and not config["retrain"]["separate_searches"]


def test_bundle_settings_absent_or_machine_paths(tmp_path):
    results = _results(tmp_path / "results", tasks=("RTE",))
    for name, text in (("a", "patterns: {labelled_dir: /machine/a/maps}\n"),
                       ("b", "patterns: {labelled_dir: /machine/b/maps}\n"), ("c", "")):
        text = RUN + "training: {max_seq_length: 64}\n" + text
        (tmp_path / f"{name}.yaml").write_text(text)
        export(str(results), str(tmp_path / name), configfiles=[str(tmp_path / f"{name}.yaml")])
    # a machine's path is not a setting; whether the CNN classified the patterns is
    config = study_config([str(tmp_path / "a"), str(tmp_path / "b")])
    assert config["patterns"]["labelled_dir"] is None
    with pytest.raises(BertLotteryError, match=r"patterns.labelled_dir \(set vs not set\)"):
        study_config([str(tmp_path / "a"), str(tmp_path / "c")])
    # a section an older bertlottery did not write reads as the schema's defaults: equal to a bundle that
    # records them, and named (with both versions) beside one that does not
    info = json.loads((tmp_path / "c" / "bundle.json").read_text())
    del info["config"]["speed"]
    (tmp_path / "c" / "bundle.json").write_text(json.dumps(info))
    write_manifest(tmp_path / "c")
    assert study_config([str(tmp_path / "c"), str(tmp_path / "c")])["speed"] == fill_defaults({})["speed"]
    info = json.loads((tmp_path / "b" / "bundle.json").read_text())
    info["config"]["speed"]["enabled"] = True
    info["config"]["patterns"]["labelled_dir"] = None
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(info))
    write_manifest(tmp_path / "b")
    with pytest.raises(BertLotteryError, match=r"speed.enabled \(true vs false\) \(bertlottery .* vs .*\)"):
        study_config([str(tmp_path / "b"), str(tmp_path / "c")])


def test_export_refuses_a_config_that_is_not_the_runs(tmp_path):
    """The run's records (data cards, fine-tuning summaries, metrics' config hashes) against the config given:
    before, a run made with 1 epoch and 10 examples exported with another config recorded that config."""
    from bertlottery.settings import TrainingSettings, config_hash

    results = _results(tmp_path / "results", tasks=("RTE",))
    run_training = TrainingSettings.from_dict({"max_seq_length": 64, "epochs": 1}, where="test")
    for seed in (1, 2):
        _write(results, L.full_metrics("RTE", seed), json.dumps({"task": "RTE", "config_hash": config_hash(run_training)}))
        _write(results, L.train_summary("RTE", seed), json.dumps({"epochs": 1}))
    (tmp_path / "run.yaml").write_text(RUN + "training: {max_seq_length: 64, epochs: 1}\n")
    export(str(results), str(tmp_path / "ok"), configfiles=[str(tmp_path / "run.yaml")])  # the run's own: accepted
    for overrides, message in (
        (["data={max_train_examples: 96}"], "data/RTE/data_card.json: max_train_examples 10, the config 96"),
        (["training={epochs: 2}"], "finetune/RTE/seed1/train_summary.json: epochs 1, the config 2"),
        (["training={learning_rate: 0.1}"], "finetune/RTE/seed1/metrics.json: made with training settings of hash"),
        (["model=other/model"], "data/RTE/data_card.json: model some/model, the config other/model"),
        (["seeds=[1]"], "seeds [1] lack 2"),
        (["training={epochs: abc}"], "bundle export: config key training.epochs: 'abc' is not of type 'number'"),
        (["bogus_key=1"], "bundle export: config key (top level): Additional properties are not allowed ('bogus_key'"),
    ):
        with pytest.raises(BertLotteryError) as error:
            export(str(results), str(tmp_path / "b"), configfiles=[str(tmp_path / "run.yaml")], overrides=overrides)
        assert message in str(error.value), str(error.value)
        assert not (tmp_path / "b").exists()  # refused before anything is written
