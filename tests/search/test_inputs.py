"""search/inputs.py: the arguments and inputs both search commands share."""

from __future__ import annotations

import pytest

from bertlottery.errors import BertLotteryError
from bertlottery.search.inputs import resolve_section, search_parser

REQUIRED = ["--task", "RTE", "--seed", "42", "--model-dir", "m", "--data-dir", "d", "--out-dir", "o"]


def test_padding_free_follows_the_flag_and_defaults_on():
    parser = search_parser("prog", "test", "s_pruning")
    assert parser.parse_args(REQUIRED).padding_free is True
    assert parser.parse_args(REQUIRED + ["--no-padding-free"]).padding_free is False
    assert parser.parse_args(REQUIRED + ["--padding-free"]).padding_free is True


def test_state_dir_defaults_to_none_and_missing_arguments_stop_the_parser():
    parser = search_parser("prog", "test", "m_pruning")
    assert parser.parse_args(REQUIRED).state_dir is None
    with pytest.raises(SystemExit):
        parser.parse_args(REQUIRED[:-2])  # no --out-dir


def test_section_fills_defaults_and_rejects_unknown_keys():
    settings = resolve_section("m_pruning", {"threshold": 0.8}, "--settings (m_pruning)")
    assert settings.threshold == 0.8 and settings.amount == 0.1
    with pytest.raises(BertLotteryError, match=r"--settings \(s_pruning\): unknown key\(s\) \['treshold'\]"):
        resolve_section("s_pruning", {"treshold": 0.8}, "--settings (s_pruning)")
