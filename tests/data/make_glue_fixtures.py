"""Writes tests/data/glue: small made-up GLUE files in every task's `download_glue_data.py` layout.

Run from the repository root (`python tests/data/make_glue_fixtures.py`); the output is committed, so the
tests never run this. Each task gets 96 train and 48 dev rows (MNLI: 48 matched and 48 mismatched) whose
labels follow a keyword, so a tiny model can learn them. Single sentences are two clauses long: the
attention-pattern step samples dev examples of at least 16 tokens. The quirks of the real files are reproduced:
MRPC's UTF-8 BOM, CoLA without a header (and no final newline in dev), SST-2's trailing space, QQP's
question broken over two lines (a row the reader skips), STS-B's float scores, MNLI's parse columns and
extra annotator labels in dev, and unbalanced `"` inside sentences (read with quoting off).
"""

from __future__ import annotations

import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "glue"
N_TRAIN, N_DEV = 96, 48

SUBJECTS = ["the film", "a story", "the plot", "this show", "her song", "the actor", "my friend", "the city",
            "a teacher", "the river", "our team", "the old man"]
VERBS = ["was", "seemed", "felt", "looked", "became", "stayed"]
GOOD = ["good", "great", "bright", "warm", "lovely", "clever"]
BAD = ["bad", "dull", "cold", "poor", "awful", "boring"]
PLACES = ["in paris", "at home", "near the sea", "in the park", "on monday", "after dinner"]


def sentence(rng: random.Random, positive: bool, quote: bool = False) -> str:
    words = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(GOOD if positive else BAD)} {rng.choice(PLACES)}"
    text = words[0].upper() + words[1:] + "."
    if quote:  # an unbalanced quote, as in real GLUE rows: must not merge lines
        text = rng.choice(['"', '', 'He said "']) + text if rng.random() < 0.5 else text + '"'
    return text


def pair(rng: random.Random, positive: bool, quote: bool = False) -> tuple[str, str]:
    """A premise and a hypothesis whose adjective agrees with the label."""
    return sentence(rng, rng.random() < 0.5, quote), sentence(rng, positive, quote and rng.random() < 0.3)


def rows(task: str, split: str, n: int, rng: random.Random) -> list[str]:
    out = []
    for i in range(n):
        positive = i % 2 == 0 if split == "train" else rng.random() < 0.5
        quote = i % 7 == 3
        if task == "CoLA":
            text = f"{sentence(rng, positive, quote)[:-1]} and {sentence(rng, positive).lower()}"
            out.append(f"src{i % 5}\t{int(positive)}\t{'' if positive else '*'}\t{text}")
        elif task == "SST-2":
            text = f"{sentence(rng, positive, quote).lower().rstrip('.')} , and {sentence(rng, positive).lower()[:-1]}"
            out.append(f"{text} \t{int(positive)}")
        elif task == "MRPC":
            a, b = pair(rng, positive, quote)
            out.append(f"{int(positive)}\t{100000 + 2 * i}\t{100001 + 2 * i}\t{a}\t{b}")
        elif task == "QQP":
            a, b = pair(rng, positive, quote)
            out.append(f"{i}\t{2 * i + 1}\t{2 * i + 2}\tWhy {a.lower()[:-1]}?\tWhy {b.lower()[:-1]}?\t{int(positive)}")
            if split == "train" and i == 5:  # a question broken over two lines: two malformed rows, skipped
                out.append(f"{n + i}\t{3 * n}\t{3 * n + 1}\tWhat is the story of")
                out.append("the old man?\tWho is the old man?\t1")
        elif task == "STS-B":
            a, b = pair(rng, positive, quote)
            score = rng.uniform(3.0, 5.0) if positive else rng.uniform(0.0, 2.0)
            out.append(f"{i}\tmain-news\theadlines\t2015\t{i:04d}\tnone\tnone\t{a}\t{b}\t{score:.3f}")
        elif task == "MNLI":
            label = ["entailment", "neutral", "contradiction"][i % 3]
            a, b = pair(rng, label == "entailment", quote)
            if label == "neutral":
                b = b[:-1] + " maybe."
            parses = f"( {a.split()[0]} )\t( {b.split()[0]} )\t(ROOT {a.split()[0]})\t(ROOT {b.split()[0]})"
            front = f"{i}\t{5000 + i}\t{5000 + i}{label[0]}\tfiction\t{parses}\t{a}\t{b}\t{label}"
            out.append(f"{front}\t{label}" if split == "train" else f"{front}\t{label}\t{label}\t{label}\t{label}\t{label}")
        elif task == "QNLI":
            a, b = pair(rng, positive, quote)
            out.append(f"{i}\tWhy {a.lower()[:-1]}?\t{b}\t{'entailment' if positive else 'not_entailment'}")
        elif task in ("RTE", "WNLI"):
            a, b = pair(rng, positive, quote)
            label = ("entailment" if positive else "not_entailment") if task == "RTE" else str(int(positive))
            out.append(f"{i}\t{a}\t{b}\t{label}")
    return out


MNLI_HEAD = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
             "sentence2_parse\tsentence1\tsentence2\tlabel1")
HEADERS = {
    "SST-2": "sentence\tlabel",
    "MRPC": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
    "QQP": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
    "STS-B": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
    "QNLI": "index\tquestion\tsentence\tlabel",
    "RTE": "index\tsentence1\tsentence2\tlabel",
    "WNLI": "index\tsentence1\tsentence2\tlabel",
}
FILES = {"MNLI": {"train": "train.tsv", "dev": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"}}


def main() -> None:
    for t, task in enumerate(["CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI"]):
        folder = OUT / task
        folder.mkdir(parents=True, exist_ok=True)
        for s, (split, name) in enumerate(FILES.get(task, {"train": "train.tsv", "dev": "dev.tsv"}).items()):
            rng = random.Random(1000 * t + s)
            lines = rows(task, split, N_TRAIN if split == "train" else N_DEV, rng)
            if task == "MNLI":
                header = MNLI_HEAD + ("\tgold_label" if split == "train" else "\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
            else:
                header = HEADERS.get(task)
            text = "\n".join(([header] if header else []) + lines)
            if not (task == "CoLA" and split == "dev"):  # the real CoLA dev.tsv has no final newline
                text += "\n"
            (folder / name).write_bytes(text.encode("utf-8"))


if __name__ == "__main__":
    main()
