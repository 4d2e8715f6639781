"""search/inputs.py: the arguments and inputs both search commands share."""

from __future__ import annotations

import pytest

from bertlottery.errors import BertLotteryError
from bertlottery.search.inputs import search_parser
from bertlottery.settings import SECTIONS

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
    settings = SECTIONS["m_pruning"].from_arg('{"threshold": 0.8}', "settings", where="--settings (m_pruning)")
    assert settings.threshold == 0.8 and settings.amount == 0.1
    with pytest.raises(BertLotteryError, match=r"--settings \(s_pruning\): unknown key\(s\) \['treshold'\]"):
        SECTIONS["s_pruning"].from_arg('{"treshold": 0.8}', "settings", where="--settings (s_pruning)")
    with pytest.raises(BertLotteryError, match=r"--speed: expected a JSON object, got list"):
        SECTIONS["speed"].from_arg("[1]", "speed")
