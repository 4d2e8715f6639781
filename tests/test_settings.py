"""Config validation: the schema (via snakemake.utils.validate) and per-task settings resolution."""

import copy
import dataclasses
import json
import time
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import bertlottery
from bertlottery.bundle.archive import bundle_folder
from bertlottery.bundle.config import bundle_info
from bertlottery.errors import BertLotteryError
from bertlottery.families import VARIANTS
from bertlottery.glue.tasks import get_task
from bertlottery.settings import (
    SCHEMA_PATH,
    SECTIONS,
    DataSettings,
    MPruningSettings,
    SPruningSettings,
    TrainingSettings,
    RETIRED_KEYS,
    check_config,
    config_hash,
    library_versions,
    provenance,
    resolve_data,
    resolve_training,
    section_defaults,
    training_defaults,
)


@pytest.fixture
def paper_config(repo_dir):
    return yaml.safe_load((repo_dir / "config" / "config.yaml").read_text())


def test_paper_and_smoke_configs_validate_and_get_defaults(repo_dir, paper_config):
    validate(paper_config, str(SCHEMA_PATH), set_default=True)
    assert paper_config["training"]["learning_rate"] == 2e-5
    assert paper_config["training"]["checkpoint_every_steps"] == 500  # filled from the schema default
    assert paper_config["seeds"] == [1337, 42, 86, 71, 166]
    assert len(paper_config["tasks"]) == 9
    smoke = yaml.safe_load((repo_dir / "config" / "smoke.yaml").read_text())
    validate(smoke, str(SCHEMA_PATH), set_default=True)
    assert smoke["s_pruning"]["gradient_accumulation"] == "cumulative"


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"trainig": {"epochs": 3}}, "trainig"),  # typo'd top-level key
        ({"training": {"learnig_rate": 1e-4}}, "learnig_rate"),  # typo'd nested key
        ({"training": {"batch_size": 0}}, "batch_size"),
        ({"training": {"precision": "fp8"}}, "fp8"),
        ({"tasks": ["RTE", "SST2"]}, "SST2"),
        ({"overrides": {"RTE": {"epoch": 4}}}, "epoch"),
        ({"overrides": {"RTEE": {"epochs": 4}}}, "RTEE"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(paper_config, patch, key):
    config = copy.deepcopy(paper_config)
    for section, value in patch.items():
        config[section] = value if not isinstance(config.get(section), dict) else {**config[section], **value}
    with pytest.raises(WorkflowError) as info:
        validate(config, str(SCHEMA_PATH), set_default=True)
    assert key in str(info.value)


def test_overrides_apply_to_one_task_only(paper_config):
    paper_config["overrides"] = {"RTE": {"epochs": 4, "learning_rate": 3e-5}}
    rte = resolve_training(paper_config, "RTE")
    mrpc = resolve_training(paper_config, "MRPC")
    assert (rte["epochs"], rte["learning_rate"]) == (4, 3e-5)
    assert (mrpc["epochs"], mrpc["learning_rate"]) == (3, 2e-5)
    assert config_hash(rte) != config_hash(mrpc)


def test_bad_override_value_names_the_task_and_key(paper_config):
    paper_config["overrides"] = {"RTE": {"epochs": -1}}
    with pytest.raises(BertLotteryError, match=r"overrides\.RTE\.epochs"):
        resolve_training(paper_config, "RTE")


def test_unknown_task_is_a_clear_error():
    with pytest.raises(BertLotteryError, match="unknown task 'SST2'.*SST-2"):
        get_task("SST2")


# --- typed sections -------------------------------------------------------------------------------------

# config_hash of the schema defaults, computed before the typed sections existed: metrics and search JSONs
# record these hashes, so they must never change for the same settings (a new key is new settings:
# training got `padding_free`, s_pruning `heads_only_empty_layers`).
PINNED_HASHES = {"training": "8e4b38f09308fd32", "s_pruning": "1bb59c0fdb9a18de",
                 "m_pruning": "cada3d12bd5dd540", "data": "1079b39086b994a5"}


@pytest.mark.parametrize("section", sorted(PINNED_HASHES))
def test_config_hash_of_the_defaults_is_pinned(section):
    typed = SECTIONS[section].from_dict({}, where="test")
    assert config_hash(typed) == PINNED_HASHES[section]
    assert config_hash(typed.to_dict()) == PINNED_HASHES[section]
    if section == "training":  # the rules' JSON: the schema's defaults and the retired keep_weights
        assert config_hash(training_defaults() | RETIRED_KEYS["training"]) == PINNED_HASHES[section]
        assert config_hash(resolve_training({}, "RTE")) == PINNED_HASHES[section]
    else:
        assert config_hash(section_defaults(section)) == PINNED_HASHES[section]


def test_typed_training_hashes_as_the_json_the_rule_passes(paper_config):
    """The rule passes resolve_training's dict as sorted JSON; the command's typed settings hash the same."""
    paper_config["overrides"] = {"RTE": {"epochs": 4, "learning_rate": 3e-5}}
    resolved = resolve_training(paper_config, "RTE")
    typed = TrainingSettings.from_dict(json.loads(json.dumps(resolved, sort_keys=True)), where="--training")
    assert config_hash(typed) == config_hash(resolved)
    assert (typed.epochs, typed.learning_rate, typed.batch_size) == (4, 3e-5, 32)
    assert typed.to_dict() == resolved


def test_retired_keep_weights_is_read_by_no_job_and_hashed_as_before(paper_config):
    """training.keep_weights left the schema and the typed settings; the rules' JSON and every hash still
    hold it as true, and a config or command that sets it to that value is accepted (dropped)."""
    assert "keep_weights" not in training_defaults()
    assert not hasattr(TrainingSettings.from_dict({}, where="test"), "keep_weights")
    assert resolve_training({}, "RTE")["keep_weights"] is True
    typed = TrainingSettings.from_dict({"keep_weights": True}, where="--training")
    assert config_hash(typed) == PINNED_HASHES["training"]
    with pytest.raises(BertLotteryError, match=r"--training: \['keep_weights'\] removed"):
        TrainingSettings.from_dict({"keep_weights": False}, where="--training")
    paper_config["training"] = {**paper_config.get("training", {}), "keep_weights": True}
    paper_config["overrides"] = {"RTE": {"keep_weights": True, "epochs": 4}}
    check_config(paper_config)  # dropped where it holds the hashed value
    assert "keep_weights" not in paper_config["training"] and paper_config["overrides"]["RTE"] == {"epochs": 4}
    paper_config["overrides"]["RTE"]["keep_weights"] = False
    with pytest.raises(BertLotteryError, match="config key overrides.RTE.keep_weights: removed"):
        check_config(paper_config)


def test_committed_bundles_config_hashes_are_what_the_code_computes(repo_dir):
    """Every metrics record of the committed MiniLM study holds the config hash the code computes from its
    bundle's recorded config (which still has training.keep_weights): no finished job reruns."""
    bundles = sorted((repo_dir / "docs/results/minilm/bundles").iterdir())
    assert bundles
    checked = 0
    for bundle in bundles:  # <task>.tar.gz archives
        info = bundle_info(str(bundle))
        with bundle_folder(bundle) as folder:
            assert "keep_weights" in json.loads((folder / "bundle.json").read_text())["config"]["training"]
            for record_path in folder.rglob("metrics.json"):
                record = json.loads(record_path.read_text())
                training = resolve_training(info["config"], record["task"])
                retraining = VARIANTS.get(record.get("variant", record.get("kind")))  # old records: kind
                if retraining is not None and retraining.epochs is not None:
                    training["epochs"] = retraining.epochs
                typed = TrainingSettings.from_dict(training, where=str(record_path))
                assert record["config_hash"] == config_hash(typed), record_path
                checked += 1
    assert checked >= 90  # 3 bundles: fine-tuned, evaluated and retrained runs


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_sections_follow_the_schema_in_its_order(section):
    cls = SECTIONS[section]
    defaults = cls.defaults()  # raises if the dataclass fields and the schema keys differ
    typed = cls.from_dict({}, where="test")
    assert list(defaults) == [f.name for f in dataclasses.fields(cls)]
    assert typed.to_dict() == defaults | cls.RETIRED and list(typed.to_dict()) == list(defaults) + list(cls.RETIRED)


def test_given_values_override_defaults_and_keep_their_type():
    typed = SPruningSettings.from_dict({"threshold": 0.8, "batch_size": 8}, where="--settings (s_pruning)")
    assert (typed.threshold, typed.batch_size, typed.amount) == (0.8, 8, 0.1)
    epochs = TrainingSettings.from_dict({"epochs": 3.0}, where="--training").epochs
    assert isinstance(epochs, float)  # not coerced: the hash of 3.0 is not the hash of 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.threshold = 0.5


@pytest.mark.parametrize("cls, where, message", [
    (SPruningSettings, "--settings (s_pruning)", r"--settings \(s_pruning\): unknown key\(s\) \['treshold'\]"),
    (MPruningSettings, "--settings (m_pruning)", r"--settings \(m_pruning\): unknown key\(s\) \['treshold'\]"),
    (TrainingSettings, "--training", r"--training: unknown key\(s\) \['treshold'\]"),
    (DataSettings, "--data", r"--data: unknown keys \['treshold'\]; expected some of \['max_dev_examples'"),
])
def test_unknown_keys_are_rejected_naming_them(cls, where, message):
    with pytest.raises(BertLotteryError, match=message):
        cls.from_dict({"treshold": 0.9}, where=where)


def test_schema_and_paper_numbers_are_package_data():
    from bertlottery.analysis.aggregate import PAPER_RESULTS_PATH

    package = Path(bertlottery.__file__).parent
    assert SCHEMA_PATH == package / "resources" / "config.schema.yaml" and SCHEMA_PATH.is_file()
    assert PAPER_RESULTS_PATH == package / "resources" / "paper_results.yaml" and PAPER_RESULTS_PATH.is_file()


def test_a_tasks_data_override_changes_only_its_data_settings(paper_config):
    """overrides: {CoLA: {max_train_examples: null}}: CoLA's data settings change, its training settings and
    every other task's stay as without the override (so only CoLA's prepare_data reruns)."""
    config = {**paper_config, "data": {"max_train_examples": 2000}, "overrides": {"CoLA": {
        "max_train_examples": None, "learning_rate": 1e-4}}}
    plain = {**config, "overrides": {}}
    assert resolve_data(config, "CoLA")["max_train_examples"] is None
    assert resolve_data(config, "SST-2") == resolve_data(plain, "SST-2")
    assert resolve_data(plain, "SST-2") == {"max_train_examples": 2000, "max_dev_examples": None, "subsample_seed": 0}
    assert "max_train_examples" not in resolve_training(config, "CoLA")
    assert resolve_training(config, "CoLA")["learning_rate"] == 1e-4
    bad = {**config, "overrides": {"CoLA": {"max_train_examples": 0}}}
    with pytest.raises(BertLotteryError, match=r"overrides\.CoLA\.max_train_examples"):
        resolve_data(bad, "CoLA")


def test_provenance_fields_in_the_order_every_job_writes_them():
    settings = TrainingSettings.from_dict({}, where="test")
    fields = provenance(time.time() - 2.0, settings, "cpu")
    assert list(fields) == ["wall_time_s", "device", "versions", "config_hash"]
    assert 2.0 <= fields["wall_time_s"] < 60 and fields["device"] == "cpu"
    assert fields["versions"] == library_versions() and fields["config_hash"] == PINNED_HASHES["training"]
    untimed = provenance(None, {"a": 1})  # no device given: the record keeps it elsewhere (speed's machine)
    assert list(untimed) == ["wall_time_s", "versions", "config_hash"] and untimed["wall_time_s"] is None
    assert untimed["config_hash"] == config_hash({"a": 1})
    assert provenance(None, {}, None)["device"] is None  # an unknown device is recorded as such
