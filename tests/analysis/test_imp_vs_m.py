"""imp_vs_m.py: the i-good and m-good masks of each (task, seed) compared (sizes, overlap), their scores side by
side, and the command's table and figure, on hand-built masks, records and metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from bertlottery.analysis import imp_vs_m as IV
from bertlottery.analysis.aggregate import NO_KIND
from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import WeightMask

SHAPES = {"layer.0.query.weight": (4, 5), "layer.0.query.bias": (5,), "layer.1.mlp.weight": (3, 10)}
TOTAL = 20 + 5 + 30


def mask(kept_flat: np.ndarray, family: str, task: str, seed: int) -> WeightMask:
    parts = np.split(kept_flat, np.cumsum([int(np.prod(s)) for s in SHAPES.values()])[:-1])
    return WeightMask({name: torch.tensor(part.reshape(shape)) for (name, shape), part in zip(SHAPES.items(), parts)},
                      {"task": task, "seed": seed, "family": family, "kind": "good"})


def test_overlap_counts_the_kept_weights_both_masks_keep():
    i = np.zeros(TOTAL, dtype=bool)
    m = np.zeros(TOTAL, dtype=bool)
    i[:10], m[5:30] = True, True  # i keeps 10, m keeps 25, both keep 5
    out = IV.overlap(mask(i, "i", "RTE", 1), mask(m, "m", "RTE", 1))
    assert (out["i_kept"], out["m_kept"], out["both_kept"]) == (10, 25, 5)
    assert out["jaccard"] == pytest.approx(5 / 30) and out["i_kept_in_m"] == pytest.approx(0.5)
    assert out["m_kept_in_i"] == pytest.approx(5 / 25) and out["i_kept_in_m_chance"] == pytest.approx(25 / TOTAL)
    assert out["i_sparsity"] == pytest.approx(1 - 10 / TOTAL)
    other = WeightMask({"x": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(BertLotteryError, match="different parameters"):
        IV.overlap(mask(i, "i", "RTE", 1), other)


def _write_run(root, task, seed, i_kept, m_kept):
    paths = {}
    for family, kept in (("i", i_kept), ("m", m_kept)):
        folder = root / "masks" / family / task / f"seed{seed}"
        folder.mkdir(parents=True)
        mask(kept, family, task, seed).save(folder / "good.safetensors")
        paths[f"{family}_mask"] = str(folder / "good.safetensors")
    i_record = {"task": task, "seed": seed, "good_round": 2, "rounds_taken": 3, "stop_metric": "accuracy",
                "s0": 0.8, "threshold": 0.72, "score": 0.75, "cost": {"wall_time_s": 12.0},
                "rounds": [{"round": k, "sparsity": 1 - 0.9 ** k, "score": s, "accepted": s >= 0.72}
                           for k, s in enumerate((0.8, 0.79, 0.75, 0.6))]}
    m_record = {"task": task, "seed": seed, "saved_step": 1, "steps_taken": 2, "score": 0.74}
    for family, record in (("i", i_record), ("m", m_record)):
        path = root / "masks" / family / task / f"seed{seed}" / "search.json"
        path.write_text(json.dumps(record))
        paths[f"{family}_record"] = str(path)
    return paths


def test_command_writes_rows_table_and_figure(tmp_path):
    runs, metrics = [], []
    rng = np.random.default_rng(0)
    for task in ("SST-2", "MRPC"):
        for seed in (1, 2):
            i, m = rng.random(TOTAL) < 0.4, rng.random(TOTAL) < 0.6
            runs.append(_write_run(tmp_path / "results", task, seed, i, m))
            for family, kind, evaluated, value in (("full", NO_KIND, "full", 0.8), ("i", "good", "pruned", 0.5),
                                                   ("m", "good", "pruned", 0.74), ("i", "good", "retrained", 0.78),
                                                   ("m", "good", "retrained", 0.79)):
                metrics.append({"task": task, "seed": seed, "family": family, "kind": kind, "evaluated": evaluated,
                                "reported": value, "reported_metric": "accuracy"})
    pd.DataFrame(metrics).to_csv(tmp_path / "metrics.csv", index=False)
    args = []
    for key in ("i_mask", "i_record", "m_mask", "m_record"):
        args += [f"--{key.replace('_', '-')}s"] + [r[key] for r in runs]
    IV.main_i_vs_m(args + ["--metrics", str(tmp_path / "metrics.csv"), "--output", str(tmp_path / "rows.parquet"),
                           "--table", str(tmp_path / "table"), "--figure", str(tmp_path / "figure")])
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    assert list(rows["task"]) == ["SST-2", "SST-2", "MRPC", "MRPC"]  # the paper's task order
    assert (rows["i_round"] == 2).all() and (rows["m_step"] == 1).all()
    assert np.allclose(rows["retrained_diff"], -0.01) and np.allclose(rows["i_pruned"], 0.5)
    for suffix in (".csv", ".md", ".tex", ".html"):
        assert (tmp_path / f"table{suffix}").stat().st_size > 0
    table = (tmp_path / "table.md").read_text()
    assert "Jaccard index of the kept weights (%)" in table and "i good, retrained" in table
    assert (tmp_path / "figure.png").stat().st_size > 0 and (tmp_path / "figure.pdf").stat().st_size > 0
