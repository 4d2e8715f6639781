"""Writes tests/data/custom: the README's example of a task of one's own, two made-up tasks in files.

Run from the repository root (`python tests/data/make_custom_fixtures.py`); the output is committed, so the
tests never run this. Reviews: one text column, three classes (negative / neutral / positive, by keyword),
CSV files whose texts hold commas and quotes. Similarity: two text columns and a score in [0, 1]
(regression), JSON Lines. 64 train and 32 dev rows each, from the words of make_glue_fixtures.py.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from make_glue_fixtures import sentence

OUT = Path(__file__).resolve().parent / "custom"
N_TRAIN, N_DEV = 64, 32
CLASSES = ["negative", "neutral", "positive"]


def review(rng: random.Random, label: str) -> str:
    first = sentence(rng, label == "positive" or (label == "neutral" and rng.random() < 0.5))
    text = f"{first[:-1]}, and {sentence(rng, label == 'positive').lower()}"
    if label == "neutral":
        text = text[:-1] + ", maybe."
    return text if rng.random() < 0.8 else f'"{text}" she wrote'


def write_reviews(split: str, n: int, rng: random.Random) -> None:
    with open(OUT / f"reviews_{split}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review", "rating"])
        for i in range(n):
            label = CLASSES[i % 3] if split == "train" else rng.choice(CLASSES)
            writer.writerow([f"{split}-{i}", review(rng, label), label])


def write_similarity(split: str, n: int, rng: random.Random) -> None:
    with open(OUT / f"similarity_{split}.jsonl", "w", encoding="utf-8") as handle:
        for i in range(n):
            similar = i % 2 == 0 if split == "train" else rng.random() < 0.5
            a = sentence(rng, similar)
            b = sentence(rng, similar)
            score = rng.uniform(0.6, 1.0) if similar else rng.uniform(0.0, 0.4)
            handle.write(json.dumps({"first": a, "second": b, "score": round(score, 3)}) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", N_TRAIN), ("dev", N_DEV)):
        write_reviews(split, n, rng)
        write_similarity(split, n, rng)


if __name__ == "__main__":
    main()
