"""Config validation: the schema (via snakemake.utils.validate) and per-task settings resolution."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import get_task
from bertlottery.settings import SCHEMA_PATH, config_hash, resolve_training


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
