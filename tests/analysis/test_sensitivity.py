"""sensitivity.py: the stopping band against dev-set sampling error, the still-good share, non-converged counts."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from bertlottery.analysis.aggregate import flag_nonconverged, run_keys
from bertlottery.analysis.dev_bootstrap import dev_bootstrap
from bertlottery.analysis.sensitivity import display, notes, sensitivity, threshold_arg
from bertlottery.errors import BertLotteryError


def _run(task, seed, family, kind, evaluated, reported, loss=0.5):
    return {"task": task, "seed": seed, "family": family, "kind": kind, "evaluated": evaluated,
            "reported_metric": "mcc", "reported": reported, "train_final_loss": loss}


def _metrics():
    rows = [_run("CoLA", 1, "full", "none", "full", 0.40, loss=0.3),
            _run("CoLA", 1, "s", "good", "pruned", 0.37),
            _run("CoLA", 1, "s", "good", "retrained", 0.38, loss=0.4),
            _run("CoLA", 1, "s", "bad", "retrained", 0.05, loss=0.9),  # 3 x the full model's loss: not converged
            _run("CoLA", 1, "m", "good", "pruned", 0.39),
            _run("CoLA", 1, "super", "good", "retrained", 0.30, loss=0.5)]
    return flag_nonconverged(pd.DataFrame(rows))


def _boot(full, s_good, m_good):
    frames = []
    for (family, kind, evaluated), values in {("full", "none", "full"): full, ("s", "good", "pruned"): s_good,
                                              ("m", "good", "pruned"): m_good}.items():
        frames.append(pd.DataFrame({"task": "CoLA", "seed": 1, "family": family, "kind": kind, "evaluated": evaluated,
                                    "replicate": np.arange(len(values)), "value": values}))
    return pd.concat(frames, ignore_index=True)


def test_band_in_dev_sds_and_the_paired_still_good_share():
    full = np.array([0.40, 0.30, 0.50, 0.40])
    # paired: replicate 1's full score is low, so s clears 0.9 x 0.30 there although it is low too
    s_good = np.array([0.37, 0.28, 0.44, 0.35])  # >= 0.9 x full: yes, yes, no (0.44 < 0.45), no (0.35 < 0.36)
    m_good = np.array([0.39, 0.29, 0.46, 0.38])  # all four clear it
    table = sensitivity(_metrics(), _boot(full, s_good, m_good), {"m": 0.9, "s": 0.9})
    s = table.set_index("family").loc["s"]
    assert s["band"] == pytest.approx(0.1 * 0.40)
    assert s["full_dev_sd"] == pytest.approx(np.std(full, ddof=1))
    assert s["band_in_sd"] == pytest.approx(0.04 / np.std(full, ddof=1))
    assert s["p_still_good"] == pytest.approx(0.5)
    assert s["good_ratio"] == pytest.approx(0.37 / 0.40)
    assert (s["retrained"], s["nonconverged"]) == (2, 1)
    m = table.set_index("family").loc["m"]
    assert m["p_still_good"] == 1.0 and m["retrained"] == 0
    sup = table.set_index("family").loc["super"]  # not a threshold search: counts only
    assert np.isnan(sup["band"]) and (sup["retrained"], sup["nonconverged"]) == (1, 0)
    assert list(table["family"]) == ["m", "s", "super"]  # the registry's order


def test_the_display_counts_every_familys_retrainings_and_says_how_to_read_it():
    table = sensitivity(_metrics(), _boot(np.full(3, 0.4), np.full(3, 0.37), np.full(3, 0.39)), {"m": 0.9, "s": 0.9})
    shown = display(table).set_index("row")["CoLA"]
    assert shown["s: retrainings not converged"] == "1 of 2"
    assert shown["all retrainings not converged"] == "1 of 3"
    assert shown["s good: share of resampled dev sets where it still clears the threshold"] == "1.00"
    assert any("Not converged" in n for n in notes(table))


def test_records_without_predictions_leave_the_dev_columns_empty_and_say_so():
    empty = dev_bootstrap([], run_keys)  # what aggregate writes when no record keeps predictions
    table = sensitivity(_metrics(), empty, {"s": 0.9})
    assert table["full_dev_sd"].isna().all() and table.set_index("family").loc["s", "band"] == pytest.approx(0.04)
    assert any("No dev bootstrap" in n for n in notes(table))


def test_bad_input_is_named():
    with pytest.raises(BertLotteryError, match="no threshold search for family \\['super'\\]"):
        sensitivity(_metrics(), _boot([0.4], [0.4], [0.4]), {"super": 0.9})
    without_full = _metrics().iloc[1:]
    with pytest.raises(BertLotteryError, match="CoLA seed 1 has .* runs but no full model's metrics"):
        sensitivity(without_full, _boot([0.4], [0.4], [0.4]), {"s": 0.9})
    assert threshold_arg("s-heads=0.85") == ("s-heads", 0.85)
    with pytest.raises(argparse.ArgumentTypeError, match="not FAMILY=NUMBER"):
        threshold_arg("s:0.9")
