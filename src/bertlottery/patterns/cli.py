"""Self-attention pattern analysis (paper §5.2, Figure 4, Appendix F; docs/protocol.md §Statistics).

For a sample of dev examples, every head's attention map over the example's real tokens ([CLS] and [SEP]
included, padding stripped) is classified into one of Kovaleva et al.'s five types, in two forms:
* raw: the attention probabilities alpha (eager attention, output_attentions=True);
* normed (Kobayashi et al. 2020): ||alpha_ij * f_h(x_j)|| with f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h, the
  value vector projected through head h's columns of the attention-output dense (its bias excluded).
  Since alpha_ij is a non-negative scalar this is alpha_ij * ||f_h(x_j)||.

Classifiers:
* `RuleClassifier` (default): transparent rules on the row-normalised map, thresholds in `RuleThresholds`.
  It looks only at the image (no token ids), so it applies to the original's labelled .npy maps too.
* `CnnClassifier`: the original's six-convolution CNN, trained by `train-cnn` when the user supplies labelled maps
  (config patterns.labelled_dir). Maps are row-normalised, scaled to max 1 and resized to 64x64 (bilinear,
  antialiased) instead of the original's crop / zero-pad to the largest training map: one input size for
  every sequence length.

Configurations (as the original): model in {finetuned, pretrained} x selection in {all heads, super-survivors}.
By default super-survivor maps are computed in the pruned network (soft head and MLP masks of
bertlottery.modeling.model.attach_soft_masks, as the original did); `--super-network full` instead selects the
super-survivor heads from the full network's maps.

Sampling: per (task, seed) `n_examples` dev examples with at least `min_tokens` tokens, drawn with
numpy's generator seeded by (sample_seed, seed): each seed gets its own draw (as the original's single
RNG stream did), and the fine-tuned and pre-trained models of one (task, seed) see the same examples.

Files:
* counts (one per task, seed, model): safetensors with int64 "all/raw", "all/normed", "super/raw",
  "super/normed" [layers, heads, 5] = number of maps of each type (types in PATTERN_TYPES order; heads
  outside the selection count 0) and uint8 "super/heads" [layers, heads]; metadata names task, seed,
  model config, classifiers, network and examples.
* CNN: <dir>/<kind>/model.safetensors (state dict) + card.json (classes, input size, validation scores).
* labelled maps (input, user supplied): <labelled_dir>/<kind>/labels.csv with columns `file,label`
  (kind in raw, normed); `file` is a path relative to that folder of a 2-D square .npy map over one
  example's tokens (rows = queries); `label` one of PATTERN_TYPES or the original's names (LABEL_ALIASES).
"""

from __future__ import annotations

import argparse

from bertlottery.patterns.attention import KINDS
from bertlottery.patterns.cnn import CnnJob, train_cnn_command
from bertlottery.patterns.extract import MODEL_CONFIGS, ExtractJob, extract
from bertlottery.patterns.summary import SummaryJob, summarize


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertlottery patterns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    ext = sub.add_parser("extract", help="classify every head's maps of sampled dev examples; write counts")
    ext.add_argument("--task", required=True)
    ext.add_argument("--seed", type=int, required=True, help="the model's seed (also seeds the example draw)")
    ext.add_argument("--config", choices=MODEL_CONFIGS, required=True)
    ext.add_argument("--model", required=True, help="model directory or hub id")
    ext.add_argument("--data-dir", required=True, help="prepared task data (results/data/<task>)")
    ext.add_argument("--n-examples", type=int, default=100)
    ext.add_argument("--min-tokens", type=int, default=16, help="skip shorter examples")
    ext.add_argument("--sample-seed", type=int, default=1337)
    ext.add_argument("--super-mask", help="HeadMlpMask of the task's super-survivors")
    ext.add_argument("--super-network", choices=["pruned", "full"], default="pruned",
                     help="pruned: super maps computed with the mask applied (original); full: selected from all")
    ext.add_argument("--cnn-dir", help="folder with <kind>/model.safetensors + card.json; else the rules")
    ext.add_argument("--batch-size", type=int, default=8)
    ext.add_argument("--output", required=True)
    cnn = sub.add_parser("train-cnn", help="train the pattern CNN on labelled maps")
    cnn.add_argument("--labelled-dir", required=True, help="folder with raw/ and/or normed/ labels.csv + .npy")
    cnn.add_argument("--kind", choices=KINDS, required=True)
    cnn.add_argument("--epochs", type=int, default=200)
    cnn.add_argument("--seed", type=int, default=13, help="the original's normed classifier used 13")
    cnn.add_argument("--out-dir", required=True)
    summ = sub.add_parser("summarize", help="distribution tables, Figure 4, super/heterogeneous correlation")
    summ.add_argument("--counts", nargs="+", required=True)
    summ.add_argument("--paper", help="paper_results.yaml (optional; adds the paper's percentages)")
    summ.add_argument("--tables-dir", required=True)
    summ.add_argument("--figures-dir", required=True)
    summ.add_argument("--correlation", required=True, help="output JSON")
    return parser


def main_patterns(argv: list[str]) -> None:
    options = vars(_parser().parse_args(argv))
    run, job = {"extract": (extract, ExtractJob), "train-cnn": (train_cnn_command, CnnJob),
                "summarize": (summarize, SummaryJob)}[options.pop("action")]
    run(job(**options))  # the options typed at the edge: the commands never see a Namespace
