"""analysis.masksets, stability, m_blocks, importance, paired_tests, stats and claims: agreement, overlaps,
super-survivors, block fractions, paired tests and claims, on synthetic masks and metrics with hand-computed
answers. Mask builders here are reused by the figures tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from statsmodels.stats.multitest import multipletests
from transformers import BertConfig

from bertlottery.analysis import claims as C
from bertlottery.analysis import claims_report as CR
from bertlottery.analysis import importance as IMP
from bertlottery.analysis import m_blocks as MB
from bertlottery.analysis import masksets as MS
from bertlottery.analysis import paired_tests as PT
from bertlottery.analysis import stability as STB
from bertlottery.analysis import stats as S
from bertlottery.analysis import verdicts as V
from bertlottery.analysis.claims_catalog import claim_list
from bertlottery.analysis.aggregate import collect, load_paper, summarize
from bertlottery.analysis.claims_report import main_claims
from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.loading import model_of_config_file

# 4 units x 3 raters. Fleiss by hand: n_i1 = 3,2,0,1; P_i = 1, 1/3, 1, 1/3 -> P_bar = 2/3;
# p_1 = p_0 = 6/12 -> P_e = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3.
# Cochran by hand: column totals C = 3,2,1 (N = 6), row totals R = 3,2,0,1 (sum R^2 = 14), k = 3:
# Q = (k-1)(k sum C^2 - N^2) / (k N - sum R^2) = 2 (3*14 - 36) / (18 - 14) = 3; df = 2; p = exp(-3/2).
HAND = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]])


def test_fleiss_kappa_matches_hand_computation():
    kappa, reason = STB.fleiss_kappa_binary(HAND)
    assert kappa == pytest.approx(1 / 3)
    assert reason == ""


def test_cochran_q_matches_hand_computation():
    q, df, p, reason = STB.cochran_q_test(HAND)
    assert (q, df) == (pytest.approx(3.0), 2)
    assert p == pytest.approx(math.exp(-1.5))
    assert reason == ""


def test_cochran_q_two_seeds_is_mcnemar():
    # b = 3 units kept only by seed 1, c = 1 only by seed 2, plus 2 concordant of each kind:
    # Q = (b - c)^2 / (b + c) = 1, df 1, p = P(chi2_1 >= 1) = 0.3173.
    matrix = np.array([[1, 0]] * 3 + [[0, 1]] + [[1, 1]] * 2 + [[0, 0]] * 2)
    q, df, p, _ = STB.cochran_q_test(matrix)
    assert (q, df) == (pytest.approx(1.0), 1)
    assert p == pytest.approx(0.31731, abs=1e-5)


def test_degenerate_agreement_gives_nan_with_reason():
    kappa, reason = STB.fleiss_kappa_binary(np.ones((5, 3), int))
    assert np.isnan(kappa) and "kept in every seed" in reason
    q, _, p, reason = STB.cochran_q_test(np.array([[1, 1], [0, 0], [1, 1]]))
    assert np.isnan(q) and np.isnan(p) and "identical" in reason
    kappa, reason = STB.fleiss_kappa_binary(np.ones((5, 1), int))
    assert np.isnan(kappa) and "2 seeds" in reason


def mask(heads, mlps) -> HeadMlpMask:
    return HeadMlpMask(torch.tensor(np.asarray(heads, bool)), torch.tensor(np.asarray(mlps, bool)))


def test_stability_on_masks():
    # 1 layer x 4 heads, 3 seeds: heads = the columns of HAND; MLP always kept (undefined agreement).
    masks = {"RTE": {s: mask([HAND[:, i]], [1]) for i, s in enumerate((1, 2, 3))}}
    table, pairs = STB.stability(masks, alpha=0.05)
    heads = table[table.unit == "heads"].iloc[0]
    assert heads["kappa"] == pytest.approx(1 / 3)
    assert heads["q"] == pytest.approx(3.0)
    assert heads["pairs_total"] == 3 and len(pairs[pairs.unit == "heads"]) == 3
    assert heads["kept_mean"] == pytest.approx(2.0) and heads["kept_std"] == pytest.approx(1.0)
    mlps = table[table.unit == "mlps"].iloc[0]
    assert np.isnan(mlps["kappa"]) and mlps["kappa_reason"]
    assert mlps["pairs_defined"] == 0


def test_overlap_counts_hypergeometric():
    a = np.zeros(12, bool)
    a[:6] = True
    b = np.zeros(12, bool)
    b[3:7] = True  # 4 kept, 3 shared with a
    out = STB.overlap_counts(a, b)
    assert (out["overlap"], out["n_a"], out["n_b"], out["total"]) == (3, 6, 4, 12)
    assert out["expected"] == pytest.approx(6 * 4 / 12)
    # P(X >= 3) = [C(6,3) C(6,1) + C(6,4) C(6,0)] / C(12,4) = (120 + 15) / 495
    assert out["p"] == pytest.approx(135 / 495)


def test_super_survivors_and_overlaps():
    seeds = (1, 2, 3)
    a_heads = [[[1, 1, 1, 0]], [[1, 1, 0, 0]], [[1, 0, 1, 0]]]
    b_heads = [[[1, 0, 0, 0]], [[0, 1, 0, 0]], [[1, 0, 1, 1]]]
    masks = {"MRPC": {s: mask(h, [1]) for s, h in zip(seeds, a_heads)},
             "RTE": {s: mask(h, [s != 2]) for s, h in zip(seeds, b_heads)}}
    surv = STB.super_survivors(masks).set_index("task")
    assert surv.loc["MRPC", "super_heads"] == 1 and surv.loc["MRPC", "never_heads"] == 1
    assert surv.loc["RTE", "super_heads"] == 0 and surv.loc["RTE", "never_heads"] == 0
    assert surv.loc["RTE", "super_mlps"] == 0 and surv.loc["MRPC", "super_mlps"] == 1
    assert surv.loc["MRPC", "heads_per_seed"] == "3 2 2"
    over = STB.overlaps(masks)
    good = over[(over.unit == "heads") & (over.set == "good") & (over.task_a == "RTE") & (over.task_b == "MRPC")].iloc[0]
    # same-seed overlaps: seed 1 -> 1, seed 2 -> 1, seed 3 -> 2
    assert good["mean"] == pytest.approx(4 / 3) and good["std"] == pytest.approx(np.std([1, 1, 2], ddof=1))
    expected = np.mean([3 * 1 / 4, 2 * 1 / 4, 2 * 3 / 4])
    assert good["expected_mean"] == pytest.approx(expected)
    diag = over[(over.unit == "heads") & (over.set == "good") & (over.task_a == "MRPC") & (over.task_b == "MRPC")].iloc[0]
    assert diag["mean"] == pytest.approx(7 / 3) and np.isnan(diag["expected_mean"])
    sup = over[(over.unit == "heads") & (over.set == "super") & (over.task_a == "RTE") & (over.task_b == "MRPC")].iloc[0]
    assert sup["mean"] == 0


def test_all_tasks_survival():
    masks = {"MRPC": {1: mask([[1, 0]], [1]), 2: mask([[1, 1]], [0])},
             "RTE": {1: mask([[1, 1]], [1]), 2: mask([[0, 1]], [0])}}
    mean, std, tasks, seeds = STB.all_tasks_survival(masks, "heads")
    assert tasks == ["MRPC", "RTE"] and seeds == [1, 2]
    np.testing.assert_allclose(mean, [[1.5, 1.5]])  # seed 1: 2, 1; seed 2: 1, 2
    np.testing.assert_allclose(std, [[np.std([2, 1], ddof=1)] * 2])


def write_original_layout(root: Path, masks: dict) -> None:
    """<root>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy as 0/1 float arrays (the original study's files)."""
    for task, by_seed in masks.items():
        for seed, (heads, mlps) in by_seed.items():
            d = root / task / f"seed_{seed}"
            d.mkdir(parents=True)
            np.save(d / "head_mask.npy", np.asarray(heads, np.float32))
            np.save(d / "mlp_mask.npy", np.asarray(mlps, np.float32))


def test_original_layout_masks_kappa(tmp_path):
    rng = np.random.default_rng(0)
    half = np.zeros((12, 12))
    half.flat[rng.permutation(144)[:72]] = 1
    write_original_layout(tmp_path, {
        "CoLA": {1337: (half, np.ones(12)), 42: (half, np.ones(12))},        # identical: kappa = 1
        "sst-2": {1337: (half, np.ones(12)), 42: (1 - half, np.zeros(12))},  # complementary: kappa = -1
    })
    masks = MS.load_original_masks(tmp_path)
    assert list(masks) == ["CoLA", "SST-2"] and list(masks["CoLA"]) == [42, 1337]
    table, _ = STB.stability(masks)
    kappa = table.set_index(["task", "unit"])["kappa"]
    assert kappa["CoLA", "heads"] == pytest.approx(1.0)
    assert kappa["SST-2", "heads"] == pytest.approx(-1.0)
    assert kappa["SST-2", "mlps"] == pytest.approx(-1.0)
    S.main_stats(["masks", "--original-masks", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    written = pd.read_csv(tmp_path / "out/stability.csv")
    assert set(written["mask_source"]) == {str(tmp_path)}
    assert written.loc[(written.task == "CoLA") & (written.unit == "heads"), "kappa"].item() == pytest.approx(1.0)


def test_original_layout_missing_dir_is_an_error(tmp_path):
    with pytest.raises(Exception, match="seed_<S>"):
        MS.load_original_masks(tmp_path)


def weight_mask_one_layer(query_rows_kept: int, out_cols_kept: int) -> WeightMask:
    """1 layer, hidden 4, 2 heads of size 2, intermediate 3. Q weight rows [0, query_rows_kept) kept,
    attention-output columns [0, out_cols_kept) kept, everything else kept except the key bias."""
    p = "bert.encoder.layer.0."
    m = {p + "attention.self.query.weight": torch.zeros(4, 4, dtype=torch.bool),
         p + "attention.self.query.bias": torch.ones(4, dtype=torch.bool),
         p + "attention.self.key.weight": torch.ones(4, 4, dtype=torch.bool),
         p + "attention.self.key.bias": torch.zeros(4, dtype=torch.bool),
         p + "attention.self.value.weight": torch.ones(4, 4, dtype=torch.bool),
         p + "attention.self.value.bias": torch.ones(4, dtype=torch.bool),
         p + "attention.output.dense.weight": torch.zeros(4, 4, dtype=torch.bool),
         p + "attention.output.dense.bias": torch.ones(4, dtype=torch.bool),
         p + "intermediate.dense.weight": torch.ones(3, 4, dtype=torch.bool),
         p + "intermediate.dense.bias": torch.zeros(3, dtype=torch.bool),
         p + "output.dense.weight": torch.ones(4, 3, dtype=torch.bool)}
    m[p + "attention.self.query.weight"][:query_rows_kept] = True
    m[p + "attention.output.dense.weight"][:, :out_cols_kept] = True
    return WeightMask(m)


def tiny_bert_config(layers: int = 1) -> BertConfig:
    """The architecture of weight_mask_one_layer's masks: hidden 4, 2 heads of size 2, intermediate 3."""
    return BertConfig(vocab_size=10, hidden_size=4, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=3, max_position_embeddings=8)


def write_model_config(path: Path, layers: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tiny_bert_config(layers).to_json_file(path)
    return path


def test_block_fractions_by_hand(tmp_path):
    model = model_of_config_file(write_model_config(tmp_path / "config.json"))
    hk, ht, mk, mt = MB.block_fractions(weight_mask_one_layer(query_rows_kept=2, out_cols_kept=1), model)
    # per head: Q/K/V weight rows 3 x (2 x 4) = 24, biases 3 x 2 = 6, output columns 4 x 2 = 8 -> 38
    np.testing.assert_array_equal(ht, [[38, 38]])
    # head 0: Q rows 8 + Q bias 2 + K 8 + V 8 + V bias 2 + 1 output column (4) = 32; head 1: 0+2+8+8+2+0 = 20
    np.testing.assert_array_equal(hk, [[32, 20]])
    # MLP: intermediate weight 12 + bias 3 + output weight 12 = 27 total, 24 kept
    assert (mk[0], mt[0]) == (24, 27)


def test_m_block_table_reads_files_and_heads_from_config(tmp_path):
    for seed in (1, 2):
        weight_mask_one_layer(2 * seed - 2, seed).save(tmp_path / f"RTE/seed{seed}/good.safetensors",
                                                       task="RTE", seed=seed)
    config = write_model_config(tmp_path / "config.json")
    table = MB.m_block_table(sorted(tmp_path.rglob("good.safetensors")), model_config=str(config))
    head0 = table[(table["block"] == "head") & (table["head"] == 0)].set_index("seed")["fraction"]
    assert head0[1] == pytest.approx((0 + 2 + 8 + 8 + 2 + 4) / 38)
    hm, hs, mm, ms = MB.block_grid(table, "RTE")
    assert hm.shape == (1, 2) and mm.shape == (1,)
    assert hm[0, 0] == pytest.approx(np.mean([24 / 38, 36 / 38]))  # seed 2: 8+2+8+0+8+2+8
    config.write_text(json.dumps({"num_attention_heads": 2}))
    with pytest.raises(BertLotteryError, match="config.json: model_type None is not a transformers model type"):
        MB.m_block_table(sorted(tmp_path.rglob("good.safetensors")), model_config=str(config))
    write_model_config(config, layers=2)  # masks of another architecture
    with pytest.raises(BertLotteryError, match="no entry for prunable parameter 'bert.encoder.layer.1"):
        MB.m_block_table(sorted(tmp_path.rglob("good.safetensors")), model_config=str(config))


def test_paired_test_known_values():
    b = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    a = b + np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    out = PT.paired_test(a, b, n_boot=2000)
    # d = .1..0.5: mean 0.3, sd sqrt(0.025); t = 0.3 / (sd / sqrt 5) = 3 sqrt 2; d_z = 0.3 / sd = 6 / sqrt 10
    assert out["mean_diff"] == pytest.approx(0.3)
    assert out["t"] == pytest.approx(3 * math.sqrt(2))
    assert out["cohen_dz"] == pytest.approx(6 / math.sqrt(10))
    assert out["w_p"] == pytest.approx(2 / 32)  # exact: all 5 differences positive
    assert 0.1 <= out["ci_low"] < 0.3 < out["ci_high"] <= 0.5


def test_paired_test_degenerate_cases():
    two = PT.paired_test(np.array([0.6, 0.7]), np.array([0.5, 0.65]))
    assert np.isfinite(two["t_p"]) and "n=2" in two["reason"]
    const = PT.paired_test(np.array([0.6, 0.7, 0.8]), np.array([0.5, 0.6, 0.7]))
    assert np.isnan(const["t"]) and "constant" in const["reason"]
    same = PT.paired_test(np.array([0.6, 0.7]), np.array([0.6, 0.7]))
    assert np.isnan(same["t_p"]) and np.isnan(same["w_p"]) and "all paired differences are 0" in same["reason"]
    one = PT.paired_test(np.array([0.6]), np.array([0.5]))
    assert np.isnan(one["t_p"]) and "2 paired seeds" in one["reason"]


def test_holm_matches_statsmodels_and_skips_nan():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    # by hand: sorted 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 -> max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(PT.holm(p)[:3], [0.03, 0.06, 0.06])
    assert np.isnan(PT.holm(p)[3])
    np.testing.assert_allclose(PT.holm(p)[:3], multipletests(p[:3], method="holm")[1])


def test_paired_tests_table(tmp_path):
    from test_aggregate import make_results_tree

    table = collect(make_results_tree(tmp_path, tasks=("RTE",), seeds=(1, 2, 3, 4, 5), noise=0.02))
    tests = PT.paired_tests(table, n_boot=500)
    assert len(tests) == 3 * 2 * 3  # families x evaluations x comparisons
    assert (tests["n"] == 5).all()
    row = tests[(tests.family == "m") & (tests.evaluated == "retrained") & (tests.a == "good") & (tests.b == "bad")].iloc[0]
    sub = table[(table.family == "m") & (table.evaluated == "retrained")].pivot(index="seed", columns="kind", values="reported")
    assert row["mean_diff"] == pytest.approx((sub["good"] - sub["bad"]).mean())
    np.testing.assert_allclose(tests["t_p_holm"], multipletests(tests["t_p"], method="holm")[1])


def test_claims_on_the_papers_numbers_match_the_spec():
    """The claim criteria, applied to the paper's own numbers, give the reading of the reference: the
    point effects are the published ones, and the published spreads decide what 5 seeds can show."""
    paper = load_paper()
    claims = {c["id"]: c for c in CR.evaluate_claims(CR.paper_numbers(paper), None, 0.05, C.PAR_TOLERANCE)}
    # the true random-retrained numbers: CoLA, MRPC and QNLI 8.8, 9.4 and 4.5 points behind good
    par = claims["s-random-on-par"]["reason"]
    assert "CoLA 8.8 [" in par and "MRPC 9.4 [" in par and "QNLI 4.5 [" in par
    # paper §5.1 data: MNLI (p = 0.39) and STS-B (0.058) do not reject: 'all tasks' is not shown
    assert claims["cochran-unstable"]["verdict"] == V.NOT_SHOWN
    assert "unclear: STS-B, MNLI" in claims["cochran-unstable"]["reason"]
    assert claims["kappa-range"]["verdict"] == V.HOLDS  # 0.180..0.325, truncated 0.32
    assert "CoLA 38.1 [" in claims["m-bad-behind"]["reason"]
    formula = claims["m-more-compression"]["reason"]  # the paper's differences 14,13,11,12,15,12,14,7,-31
    assert all(f"(paper's formula: {d})" in formula for d in (14, 13, 11, 12, 15, 7, -31))
    loss = claims["super-loss"]["reason"]  # 6.8, 9.1, 12.8, 4.0, 8.2, 8.4, 8.3, 13.2 (WNLI excluded)
    assert all(f"{v} [" in loss for v in ("6.8", "9.1", "12.8", "4.0", "8.2", "8.4", "8.3", "13.2"))
    # 4 of 8: WNLI, whose full model is below the majority class, cannot tell (Table 2's averages: 0.52 vs 0.51)
    randinit = claims["randinit-vs-m-bad"]
    assert randinit["verdict"] == V.PARTLY and "4/8 tasks" in randinit["reason"]
    assert "cannot be checked: WNLI" in randinit["reason"]
    assert claims["m-half"]["verdict"] == V.UNCHECKABLE  # the paper's m-masks are not published


def test_claims_never_crash_on_sparse_inputs(tmp_path):
    from test_aggregate import metrics_record

    path = tmp_path / "m.json"
    path.write_text(json.dumps(metrics_record("RTE", 1, "full", None, "full", 0.6)))
    ours = CR.our_numbers(summarize(collect([path])), load_paper())
    claims = CR.evaluate_claims(ours, CR.paper_numbers(load_paper()), 0.05, 0.03)
    assert {c["verdict"] for c in claims} == {V.UNCHECKABLE}
    assert all(c["reason"] for c in claims)


def make_mask_tree(root: Path, tasks=("MRPC", "RTE"), seeds=(1337, 42), layers=2, heads=4, rng_seed=0) -> None:
    """s good masks, s traces and m weight masks at the workflow's paths (tiny architecture)."""
    rng = np.random.default_rng(rng_seed)
    for task in tasks:
        for seed in seeds:
            d = root / f"masks/s/{task}/seed{seed}"
            mask(rng.random((layers, heads)) < 0.6, rng.random(layers) < 0.7).save(
                d / "good.safetensors", task=task, seed=seed, family="s", kind="good")
            imp = rng.random((3, layers, heads)).astype(np.float32)
            save_file({"heads": torch.ones(3, layers, heads, dtype=torch.uint8),
                       "mlps": torch.ones(3, layers, dtype=torch.uint8),
                       "head_importance": torch.tensor(imp), "mlp_importance": torch.rand(3, layers)},
                      str(d / "trace.safetensors"))
            rows = [{"iteration": i, "phase": phase} for i, phase in enumerate(("initial", "joint", "heads"))]
            (d / "trace.json").write_text(json.dumps({"task": task, "seed": seed, "mode": "joint", "iterations": rows}))
            weights = {}
            for layer in range(layers):
                for name, t in weight_mask_one_layer(int(rng.integers(0, 5)), int(rng.integers(0, 5))).masks.items():
                    weights[name.replace("layer.0.", f"layer.{layer}.")] = t
            WeightMask(weights).save(root / f"masks/m/{task}/seed{seed}/good.safetensors", task=task, seed=seed)
    write_model_config(root / "model/config.json", layers)  # the m-masks' architecture


def test_importance_summary(tmp_path):
    make_mask_tree(tmp_path, tasks=("RTE",), seeds=(1,))
    imp = IMP.importance_summary([tmp_path / "masks/s/RTE/seed1/trace.json"])
    assert len(imp) == 3 and set(imp["task"]) == {"RTE"} and (imp["heads_alive"] == 8).all()
    assert imp["heads_low_share"].between(0, 1).all()


def test_stats_cli_end_to_end(tmp_path):
    from test_aggregate import make_results_tree

    metrics = make_results_tree(tmp_path, seeds=(1337, 42))
    make_mask_tree(tmp_path)
    from bertlottery.analysis.aggregate import main_aggregate

    a = tmp_path / "analysis"
    main_aggregate(["--inputs", *map(str, metrics), "--out-dir", str(a)])
    S.main_stats(["masks", "--s-masks", *map(str, sorted(tmp_path.glob("masks/s/*/*/good.safetensors"))),
                  "--out-dir", str(a)])
    S.main_stats(["m-blocks", "--m-masks", *map(str, sorted(tmp_path.glob("masks/m/*/*/good.safetensors"))),
                  "--model-config", str(tmp_path / "model/config.json"), "--output", str(a / "m_blocks.csv")])
    S.main_stats(["tests", "--metrics", str(a / "metrics.parquet"), "--bootstrap", "200",
                  "--output", str(a / "paired_tests.csv")])
    main_claims(["--summary", str(a / "summary.parquet"), "--tests", str(a / "paired_tests.parquet"),
                  "--metrics", str(a / "metrics.parquet"), "--dev-bootstrap", str(a / "dev_bootstrap.parquet"),
                  "--stability", str(a / "stability.parquet"), "--stability-pairs", str(a / "stability_pairs.parquet"),
                  "--overlaps", str(a / "overlaps.parquet"),
                  "--survivors", str(a / "survivors.parquet"), "--m-blocks", str(a / "m_blocks.parquet"),
                  "--traces", *map(str, sorted(tmp_path.glob("masks/s/*/*/trace.json"))), "--out-dir", str(a)])
    claims = json.loads((a / "claims.json").read_text())["claims"]
    assert len(claims) == len(claim_list(0.05, 0.03))
    assert {c["verdict"] for c in claims} <= set(V.VERDICTS) and all(c["uncertainty"] for c in claims)
    text = (a / "claims.md").read_text()
    assert "random s-subnetworks (retrained) mostly perform on par" in text
    assert "<table" in (a / "claims.html").read_text()


def test_wnli_published_masks_reproduce_the_papers_kappa_and_q(tmp_path):
    """WNLI's published masks are fixed by their counts (seed 86 keeps all 144 heads, the others none,
    no MLP anywhere): our statistics must give the paper's kappa -0.250 and Cochran p 2.4e-123 (paper_results.yaml)."""
    counts = load_paper()["s_counts"]["WNLI"]["heads"]
    write_original_layout(tmp_path, {"WNLI": {s: (np.full((12, 12), float(c == 144)), np.zeros(12))
                                              for s, c in zip(load_paper()["seeds"], counts)}})
    table, pairs = STB.stability(MS.load_original_masks(tmp_path))
    heads = table[table.unit == "heads"].iloc[0]
    assert heads["kappa"] == pytest.approx(-0.25)
    assert heads["q_p"] == pytest.approx(2.4e-123, rel=0.05)
    assert heads["pairs_similar"] == 0  # the 0-vs-0 pairs are undefined, the 0-vs-144 pairs reject
    mlps = table[table.unit == "mlps"].iloc[0]
    assert np.isnan(mlps["kappa"]) and np.isnan(mlps["q_p"])  # 'undefined' in the paper


def test_seed_pairs_agreement_is_about_which_heads_not_how_many():
    """The issue's SST-2 pair: 37 of 72 heads kept by each seed, 18 discordant each way, 19 shared where
    19.0 are expected by chance: McNemar (Q on two seeds) p = 1, yet Cohen's kappa is about 0."""
    a = np.zeros(72, bool)
    a[:37] = True
    b = np.zeros(72, bool)
    b[18:55] = True  # 19 shared (18..36), 18 only in a, 18 only in b
    agreement = STB.pair_agreement(a, b)
    assert (agreement["kept_a"], agreement["kept_b"], agreement["shared"]) == (37, 37, 19)
    assert agreement["shared_expected"] == pytest.approx(37 * 37 / 72)
    assert abs(agreement["kappa"]) < 0.01 and agreement["shared_p"] > 0.3
    assert STB.cohen_kappa_binary(a, a) == pytest.approx(1.0)
    assert STB.cohen_kappa_binary(a, ~a) < -0.99  # -1 exactly only with equal margins
    _, _, p, _ = STB.cochran_q_test(np.stack([a, b], axis=1))
    assert p == pytest.approx(1.0)
    everything = STB.pair_agreement(np.ones(72, bool), b)
    assert np.isnan(everything["shared_p"]) and "overlap fixed" in everything["agreement_reason"]
