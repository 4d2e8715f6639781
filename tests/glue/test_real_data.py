"""The real GLUE files and MiniLM tokenizer of the shared folder (conftest's `glue_dir` and `minilm_dir`;
skipped with the reason when absent): the published row counts, class balances and majority baselines."""

from __future__ import annotations

import numpy as np
import pytest

from bertlottery.glue import prepare, reading, splits
from bertlottery.glue.tasks import get_task


def test_real_rte_and_mrpc_end_to_end(tmp_path, glue_dir, minilm_dir):
    expected = {"RTE": ({"entailment": 1249, "not_entailment": 1241}, {"entailment": 146, "not_entailment": 131},
                        0.527),
                "MRPC": ({"0": 1194, "1": 2474}, {"0": 129, "1": 279}, 0.684)}
    for task, (train_counts, dev_counts, baseline) in expected.items():
        card = prepare.prepare_data(task, str(minilm_dir), tmp_path / task, glue_dir=glue_dir)
        train, dev = card["splits"]["train"], card["splits"]["dev"]
        assert train["label_counts"] == train_counts and dev["label_counts"] == dev_counts
        assert train["rows_in_source"] == train["rows_kept"] == sum(train_counts.values())
        assert dev["rows_in_source"] == dev["rows_kept"] == sum(dev_counts.values())
        assert dev["majority_baseline"]["score"] == pytest.approx(baseline, abs=5e-4)
        assert train["max_tokens"] <= 128
        for split, info in card["splits"].items():
            loaded = splits.load_split(tmp_path / task, split)
            assert len(loaded) == info["rows_kept"] and int(loaded.lengths.max()) == info["max_tokens"]
            assert int((loaded.lengths == 128).sum()) >= info["n_truncated"]
    assert (len(splits.load_split(tmp_path / "RTE", "train")), len(splits.load_split(tmp_path / "MRPC", "dev"))) == \
        (2490, 408)


def test_real_majority_baselines_match_the_paper(glue_dir):
    cola = reading.read_examples("CoLA", "dev", glue_dir)
    stsb = reading.read_examples("STS-B", "dev", glue_dir)
    assert len(cola) == 1043 and len(stsb) == 1500
    cola_labels = np.array([ex.label for ex in cola])
    assert prepare.majority_baseline(get_task("CoLA"), cola_labels)["score"] == 0.0
    stsb_labels = np.array([ex.label for ex in stsb])
    assert round(prepare.majority_baseline(get_task("STS-B"), stsb_labels)["score"], 3) == 0.024

