"""The Python phases of benchmarks/gpu_check.sh (see there): each writes one JSON into the output folder.

    python benchmarks/gpu_check.py assets OUT            # a tiny tokenizer + BERT for the phases (no network)
    python benchmarks/gpu_check.py equivalence OUT [--small]
    python benchmarks/gpu_check.py sharing OUT [--small]
    python benchmarks/gpu_check.py summary OUT           # summary.md from the phases' JSONs and status lines

`equivalence`: padded vs padding-free logits, loss and gradients on this machine's device (random tiny,
MiniLM-shaped and bert-base-shaped BERTs; fp32 and bf16), the attention kernel the padding-free branch
takes, CUDA host syncs in one padding-free step, and whether two identical steps repeat bit for bit
(training.deterministic on). `sharing`: 1, 2 and 4 concurrent fine-tunes through `with-gpu` with as many
jobs per GPU, their total throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # (layers, hidden, heads, intermediate)
    "tiny": (2, 32, 4, 64),
    "minilm": (6, 384, 12, 1536),
    "bert-base": (12, 768, 12, 3072),
}


def _write(out: Path, name: str, data: dict) -> None:
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def make_assets(out: Path) -> Path:
    """The tiny tokenizer and BERT the test suite uses (built in code: no download)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import save_tiny_model

    return save_tiny_model(out / "tiny-model")


def _model(shape: str, num_labels: int, device: torch.device):
    from transformers import BertConfig, BertForSequenceClassification

    layers, hidden, heads, inter = SHAPES[shape]
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=inter, max_position_embeddings=512, num_labels=num_labels,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    from bertlottery.modeling.loading import keep_head_in_fp32

    return keep_head_in_fp32(BertForSequenceClassification(config)).to(device).train()


def _batch(lengths: list[int], num_labels: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(1)
    width = max(lengths) + 3
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1000, 30000, (len(lengths), width), generator=g) * mask
    labels = torch.rand(len(lengths), generator=g) * 5 if num_labels == 1 else torch.randint(0, num_labels, (len(lengths),))
    return {k: v.to(device) for k, v in {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
                                          "attention_mask": mask, "labels": labels}.items()}


def _step(model, batch, precision: str, device: torch.device):
    from bertlottery.modeling.unpadded import classify
    from bertlottery.runtime import autocast

    model.zero_grad(set_to_none=True)
    with autocast(device, precision):
        out = classify(model, batch)
    out.loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach().float(), out.loss.detach().float(), grads


def compare(shape: str, precision: str, num_labels: int, device: torch.device, lengths: list[int]) -> dict:
    """Padded (the model's own forward) against padding-free, on one batch."""
    from bertlottery.modeling.unpadded import PackedBatch

    model = _model(shape, num_labels, device)
    batch = _batch(lengths, num_labels, device)
    logits_a, loss_a, grads_a = _step(model, batch, precision, device)
    logits_b, loss_b, grads_b = _step(model, PackedBatch.from_padded(batch), precision, device)
    relative = max(float((grads_a[n] - grads_b[n]).norm() / (grads_a[n].norm() + 1e-30)) for n in grads_a)
    return {"shape": shape, "precision": precision, "num_labels": num_labels, "logits_dtype": str(logits_b.dtype),
            "max_logit_diff": float((logits_a - logits_b).abs().max()), "loss_diff": float((loss_a - loss_b).abs()),
            "max_relative_grad_diff": relative}


def attention_kernel(device: torch.device, precision: str) -> str:
    from bertlottery.modeling.unpadded import _flash_varlen, flash_supported

    if device.type != "cuda":
        return "sdpa on blocks of equal lengths (CPU branch)"
    if precision == "bf16" and flash_supported(device) and _flash_varlen() is not None:
        return "flash-attn varlen"
    return "sdpa on jagged nested tensors"


def host_syncs(device: torch.device, lengths: list[int]) -> int | None:
    """CUDA synchronisations one padding-free training step makes (torch's sync debug mode); None on CPU."""
    if device.type != "cuda":
        return None
    from bertlottery.modeling.unpadded import PackedBatch

    model = _model("minilm", 2, device)
    packed = PackedBatch.from_padded(_batch(lengths, 2, device))
    _step(model, packed, "fp32", device)  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _step(model, packed, "fp32", device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def repeatability(device: torch.device, lengths: list[int], shape: str) -> dict:
    from bertlottery.modeling.unpadded import PackedBatch
    from bertlottery.runtime import configure_torch

    configure_torch(deterministic=True)
    try:
        runs = [_step(_model(shape, 2, device), PackedBatch.from_padded(_batch(lengths, 2, device)), "fp32", device)
                for _ in range(2)]
    finally:
        configure_torch()
    (la, _, ga), (lb, _, gb) = runs
    return {"shape": shape, "deterministic": True, "logits_bitwise_equal": bool(torch.equal(la, lb)),
            "grads_bitwise_equal": all(torch.equal(ga[n], gb[n]) for n in ga)}


def equivalence(out: Path, small: bool) -> None:
    from bertlottery.runtime import device_name, pick_device

    device = pick_device()
    lengths = [20, 5, 13, 20, 1, 7] if small else [128, 17, 64, 128, 3, 90, 45, 128] * 4
    shapes = ["tiny"] if small else list(SHAPES)
    precisions = ["fp32", "bf16"]  # bf16 autocast runs on CUDA only; on the CPU it is the fp32 path
    rows = [compare(shape, precision, labels, device, lengths)
            for shape in shapes for precision in precisions for labels in (2, 1)]
    bound = {"fp32": 1e-4, "bf16": 5e-2}
    ok = all(r["max_logit_diff"] <= bound[r["precision"]] and r["logits_dtype"] == "torch.float32" for r in rows)
    result = {"device": device_name(device), "rows": rows, "ok": ok,
              "attention_kernel": {p: attention_kernel(device, p) for p in precisions},
              "host_syncs_per_padding_free_step": host_syncs(device, lengths),
              "repeatability": repeatability(device, lengths, shapes[-1])}
    _write(out, "equivalence", result)
    print(json.dumps({"ok": ok, "device": result["device"]}))
    sys.exit(0 if ok else 1)


JOB = """
import sys, time
from pathlib import Path
from bertlottery.runtime import pick_device, set_seed
from bertlottery.train.loop import train
from bertlottery.settings import TrainingSettings
from bertlottery.glue.splits import load_split
from bertlottery.modeling.loading import load_classifier
device = pick_device()
set_seed(1)
model = load_classifier(sys.argv[1], 2).to(device)
split = load_split(sys.argv[2], "train")
settings = TrainingSettings.from_dict({"epochs": float(sys.argv[3]), "checkpoint_every_steps": 0}, where="gpu_check")
start = time.time()
summary = train(model, split, settings, 1, out_dir=Path(sys.argv[4]), device=device, progress=False)
print(f"examples={summary['train_examples']} seconds={time.time() - start:.3f} device={device}")
"""


def sharing(out: Path, small: bool) -> None:
    """1, 2 and 4 concurrent fine-tunes through with-gpu, as many jobs per GPU."""
    from bertlottery.glue.prepare import prepare_data

    model = str(out / "tiny-model")
    data = out / "work" / "RTE"
    if not (data / "data_card.json").is_file():
        prepare_data("RTE", model, data, glue_dir=REPO / "tests/data/glue", max_seq_length=64)
    rows = []
    for jobs in (2,) if small else (1, 2, 4):  # small: two concurrent jobs still share out the slots
        env = os.environ | {"BERTLOTTERY_JOBS_PER_GPU": str(jobs), "BERTLOTTERY_GPU_LOCK_DIR": str(out / "locks"),
                            "BERTLOTTERY_THREADS": "1"}
        started = time.time()
        procs = [subprocess.Popen([sys.executable, "-m", "bertlottery", "with-gpu", "--", sys.executable, "-c", JOB,
                                   model, str(data), "1" if small else "20", str(out / "work" / f"run{jobs}-{i}")],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(jobs)]
        results = [p.communicate() for p in procs]
        wall = time.time() - started
        failed = [err[-500:] for p, (_, err) in zip(procs, results) if p.returncode != 0]
        examples = sum(int(o.split("examples=")[1].split()[0]) for o, _ in results if "examples=" in o)
        devices = sorted({line.split("CUDA_VISIBLE_DEVICES=")[1].split()[0] for _, e in results
                          for line in e.splitlines() if "CUDA_VISIBLE_DEVICES=" in line})
        rows.append({"jobs_per_gpu": jobs, "jobs": jobs, "wall_s": round(wall, 3), "examples": examples,
                     "examples_per_s": round(examples / wall, 2), "devices": devices, "failed": failed})
    _write(out, "sharing", {"rows": rows, "ok": not any(r["failed"] for r in rows)})
    sys.exit(1 if any(r["failed"] for r in rows) else 0)


def summary(out: Path) -> None:
    """summary.md: one row per phase (status, seconds, the key figure), from status.tsv and the JSONs."""
    lines = ["# GPU check", "", "| phase | status | seconds | result |", "|---|---|---|---|"]
    for row in (out / "status.tsv").read_text().splitlines():
        phase, status, seconds = row.split("\t")
        lines.append(f"| {phase} | {status} | {seconds} | {_key_figure(out, phase)} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print((out / "summary.md").read_text())


def _key_figure(out: Path, phase: str) -> str:
    path = out / f"{phase}.json"
    if phase == "doctor" and (out / "doctor.log").is_file():
        return " ".join((out / "doctor.log").read_text().splitlines()[0].split())  # the device line
    if not path.is_file():
        return f"see {phase}.log"
    data = json.loads(path.read_text())
    if phase == "equivalence":
        worst = max(data["rows"], key=lambda r: r["max_logit_diff"])
        return (f"{data['device']}: worst logit diff {worst['max_logit_diff']:.2e} ({worst['shape']} "
                f"{worst['precision']}); kernels {data['attention_kernel']}; host syncs "
                f"{data['host_syncs_per_padding_free_step']}; repeatable {data['repeatability']['grads_bitwise_equal']}")
    if phase == "sharing":
        return "; ".join(f"{r['jobs']} job(s): {r['examples_per_s']} ex/s" for r in data["rows"])
    if phase.startswith("speed"):
        summary_ = data.get("summary", {})
        own = summary_.get("bertlottery") or {}
        return (f"{data.get('device')}: bertlottery {own.get('examples_per_s', float('nan')):.1f} ex/s, "
                f"x{summary_.get('speedup_vs_trainer', float('nan')):.2f} the HF Trainer's")
    return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["assets", "equivalence", "sharing", "summary"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--small", action="store_true", help="the CPU test mode: tiny sizes")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.phase == "assets":
        print(make_assets(args.out))
    elif args.phase == "equivalence":
        equivalence(args.out, args.small)
    elif args.phase == "sharing":
        sharing(args.out, args.small)
    else:
        summary(args.out)


if __name__ == "__main__":
    main()
