"""bertlottery.glue reading, prepare and splits: GLUE TSV/hub reading, validation, subsampling, tokenization, card and batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bertlottery.errors import BertLotteryError
from bertlottery.glue import prepare, reading, splits
from bertlottery.glue.tasks import GLUE_TASKS, get_task
from bertlottery.io import read_json

MNLI_FRONT = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t" \
             "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1"
MNLI_PARSES = "( a )\t( b )\t(ROOT a)\t(ROOT b)"

# Every task's TSV layout, a few rows each: (file name, text). Written with plain utf-8; MRPC's text
# starts with a BOM, as download_glue_data.py wrote it.
FIXTURES: dict[str, dict[str, str]] = {
    "CoLA": {
        "train.tsv": "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
                     "gj04\t0\t*\tThe more books I ask to whom he will give, the more he reads.\n",
        "dev.tsv": "gj04\t1\t\tThe weights made the rope stretch.",  # no final newline, like the real dev
    },
    "SST-2": {
        "train.tsv": "sentence\tlabel\nhide new secretions from the parental units \t0\n"
                     "a gorgeous , witty film \t1\n",
        "dev.tsv": "sentence\tlabel\nit 's a charming journey . \t1\n",
    },
    "MRPC": {
        "train.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                     "1\t702876\t702977\tAmrozi accused his brother, \"the witness\".\tAmrozi accused him.\n"
                     "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's.\n",
        "dev.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                   "1\t1355540\t1355592\tHe said the pie business fits.\t\"The pie business fits.\n",
    },
    "QQP": {
        "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                     "0\t1\t2\tHow do I invest?\tHow to invest in shares?\t0\n"
                     "1\t3\t4\tWhat is the story of Kohinoor\n"  # a question broken over two lines
                     "(Koh-i-Noor) Diamond?\tWhat happens to the Kohinoor?\t1\n"
                     "2\t5\t6\tWhy am I lonely?\tHow can I stop being lonely?\t1\n",
        "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                   "9\t10\t11\tWhat is AI?\tWhat is artificial intelligence?\t1\n",
    },
    "STS-B": {
        "train.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                     "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t"
                     "An air plane is taking off.\t5.000\n"
                     "1\tmain-news\theadlines\t2013\t0002\tnone\tnone\t\"He said it was over.\t"
                     "Nothing ends.\t0.500\n"
                     "2\tmain-news\theadlines\t2013\t0003\tnone\tnone\tA man plays a flute.\t"
                     "A man is playing a flute.\"\t3.800\n",
        "dev.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                   "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man is dancing.\t"
                   "A man wearing a hat is dancing.\t4.250\n",
    },
    "MNLI": {
        "train.tsv": f"{MNLI_FRONT}\tgold_label\n"
                     f"0\t31193\t31193n\tgovernment\t{MNLI_PARSES}\tConceptually cream skimming.\t"
                     "Product and geography are what make it work.\tneutral\tneutral\n"
                     f"1\t101457\t101457e\ttelephone\t{MNLI_PARSES}\tyou know during the season\t"
                     "You lose the things.\tentailment\tentailment\n",
        "dev_matched.tsv": f"{MNLI_FRONT}\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                           f"0\t63735\t63735n\tslate\t{MNLI_PARSES}\tThe new rights are nice enough\t"
                           "Everyone really likes the newest benefits\tneutral\tentailment\tneutral\t"
                           "neutral\tneutral\tneutral\n"
                           f"1\t91383\t91383c\tgovernment\t{MNLI_PARSES}\tThis site includes a list.\t"
                           "The site has no list.\tcontradiction\tcontradiction\tcontradiction\t"
                           "contradiction\tcontradiction\tcontradiction\n",
        "dev_mismatched.tsv": f"{MNLI_FRONT}\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                              f"0\t75290\t75290c\tletters\t{MNLI_PARSES}\tYour contribution helped.\t"
                              "Your contributions were of no help.\tcontradiction\tcontradiction\t"
                              "contradiction\tcontradiction\tcontradiction\tcontradiction\n",
    },
    "QNLI": {
        "train.tsv": "index\tquestion\tsentence\tlabel\n0\tWhen did it start?\tIt started in 1900.\tentailment\n",
        "dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWhat came into force?\tThe rain fell.\tnot_entailment\n",
    },
    "RTE": {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n"
                     "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons Found in Iraq.\tnot_entailment\n"
                     "1\t \"That film was shot in Rome.\tThe film was shot in Italy.\tentailment\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n"
                   "0\tDana Reeve has died.\tReeve had an accident.\tnot_entailment\n",
    },
    "WNLI": {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n"
                     "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tThe drain is clogged with hair.\tThe drain is clean.\t0\n",
    },
}

# (split, first example's text_a, text_b, label, line, number of examples) per task.
EXPECTED_FIRST = {
    "CoLA": [("train", "The sailors rode the breeze clear of the rocks.", None, 1, 1, 2),
             ("dev", "The weights made the rope stretch.", None, 1, 1, 1)],
    "SST-2": [("train", "hide new secretions from the parental units ", None, 0, 2, 2),
              ("dev", "it 's a charming journey . ", None, 1, 2, 1)],
    "MRPC": [("train", "Amrozi accused his brother, \"the witness\".", "Amrozi accused him.", 1, 2, 2),
             ("dev", "He said the pie business fits.", "\"The pie business fits.", 1, 2, 1)],
    "QQP": [("train", "How do I invest?", "How to invest in shares?", 0, 2, 2),
            ("dev", "What is AI?", "What is artificial intelligence?", 1, 2, 1)],
    "STS-B": [("train", "A plane is taking off.", "An air plane is taking off.", 5.0, 2, 3),
              ("dev", "A man is dancing.", "A man wearing a hat is dancing.", 4.25, 2, 1)],
    "MNLI": [("train", "Conceptually cream skimming.", "Product and geography are what make it work.", 2, 2, 2),
             ("dev", "The new rights are nice enough", "Everyone really likes the newest benefits", 2, 2, 2),
             ("dev_mm", "Your contribution helped.", "Your contributions were of no help.", 0, 2, 1)],
    "QNLI": [("train", "When did it start?", "It started in 1900.", 0, 2, 1),
             ("dev", "What came into force?", "The rain fell.", 1, 2, 1)],
    "RTE": [("train", "No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons Found in Iraq.", 1, 2, 2),
            ("dev", "Dana Reeve has died.", "Reeve had an accident.", 1, 2, 1)],
    "WNLI": [("train", "I stuck a pin through a carrot.", "The carrot had a hole.", 1, 2, 1),
             ("dev", "The drain is clogged with hair.", "The drain is clean.", 0, 2, 1)],
}


def write_task(glue_dir: Path, task: str, files: dict[str, str] | None = None) -> Path:
    folder = glue_dir / task
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or FIXTURES[task]).items():
        (folder / name).write_bytes(text.encode("utf-8"))
    return glue_dir


@pytest.fixture
def glue_dir(tmp_path: Path) -> Path:
    for task in GLUE_TASKS:
        write_task(tmp_path / "glue", task)
    return tmp_path / "glue"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The tiny WordPiece tokenizer of conftest (uncased; every word these tests spell is one token)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield prepare.load_tokenizer(str(tiny_model_dir))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ----------------------------------------------------------------------------------------------------
# Reading TSV


def test_headers_agree_with_task_layouts():
    for task in GLUE_TASKS:
        spec = get_task(task)
        for split in spec.splits:
            header = reading.expected_header(spec, split)
            if spec.tsv.has_header:
                assert len(header) == spec.tsv.n_columns[split], (task, split)
                assert header[spec.tsv.label] in {"label", "Quality", "is_duplicate", "score", "gold_label"}
            else:
                assert header is None and task == "CoLA"


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_every_task_fixture_reads(glue_dir, task):
    spec = get_task(task)
    assert [split for split, *_ in EXPECTED_FIRST[task]] == list(spec.splits)
    for split, text_a, text_b, label, line, n in EXPECTED_FIRST[task]:
        examples = reading.read_examples(task, split, glue_dir)
        assert len(examples) == n
        first = examples[0]
        assert (first.text_a, first.text_b, first.label, first.line) == (text_a, text_b, label, line)
        assert isinstance(first.label, float if spec.is_regression else int)


def test_mrpc_bom_is_stripped_and_header_accepted(glue_dir):
    raw = (glue_dir / "MRPC" / "train.tsv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfQuality")
    assert [ex.label for ex in reading.read_examples("MRPC", "train", glue_dir)] == [1, 0]


def test_cola_first_line_is_data(glue_dir):
    examples = reading.read_examples("CoLA", "train", glue_dir)
    assert [ex.line for ex in examples] == [1, 2]
    assert examples[1].text_a.startswith("The more books")


def test_mnli_labels_dev_files_and_gold_label_column(glue_dir):
    spec = get_task("MNLI")
    assert spec.labels == ("contradiction", "entailment", "neutral")
    assert [ex.label for ex in reading.read_examples("MNLI", "train", glue_dir)] == [2, 1]
    assert [ex.label for ex in reading.read_examples("MNLI", "dev", glue_dir)] == [2, 0]
    assert [ex.label for ex in reading.read_examples("MNLI", "dev_mm", glue_dir)] == [0]


def test_qqp_skips_and_counts_malformed_rows(glue_dir):
    src = reading.read_split("QQP", "train", glue_dir)
    assert src.rows_in_source == 4  # two fragments of the broken row plus two good rows
    assert src.rows_skipped_malformed == 2
    assert src.skipped_lines == [3, 4]
    assert [ex.text_a for ex in src.examples] == ["How do I invest?", "Why am I lonely?"]


def test_stray_quotes_do_not_merge_rows(glue_dir):
    examples = reading.read_examples("STS-B", "train", glue_dir)
    assert [ex.label for ex in examples] == [5.0, 0.5, 3.8]
    assert examples[1].text_a == "\"He said it was over."
    assert examples[2].text_b == "A man is playing a flute.\""
    rte = reading.read_examples("RTE", "train", glue_dir)
    assert rte[1].text_a == " \"That film was shot in Rome."


def test_source_records_path_and_hash(glue_dir):
    src = reading.read_split("RTE", "dev", glue_dir)
    assert src.source == str(glue_dir / "RTE" / "dev.tsv")
    assert len(src.sha256) == 64


def test_committed_fixture_files_read_in_every_layout(fixture_glue_dir):
    """tests/data/glue (the files the tiny workflow and the training tests read) keeps each task's quirks."""
    for task in GLUE_TASKS:
        spec = get_task(task)
        for split in spec.splits:
            src = reading.read_split(task, split, fixture_glue_dir)
            assert len(src.examples) == (96 if split == "train" else 48), (task, split)
            labels = [ex.label for ex in src.examples]
            if spec.is_regression:
                assert all(isinstance(y, float) for y in labels) and len(set(labels)) > 10
            else:
                assert set(labels) == set(range(spec.num_labels)), (task, split)
    raw = {task: (fixture_glue_dir / task / "train.tsv").read_bytes() for task in GLUE_TASKS}
    assert raw["MRPC"].startswith(b"\xef\xbb\xbfQuality\t") and not raw["RTE"].startswith(b"\xef")
    assert raw["CoLA"].startswith(b"src0\t1\t\t")  # no header line
    assert not (fixture_glue_dir / "CoLA" / "dev.tsv").read_bytes().endswith(b"\n")
    assert reading.read_split("QQP", "train", fixture_glue_dir).rows_skipped_malformed == 2
    assert reading.read_examples("SST-2", "train", fixture_glue_dir)[0].text_a.endswith(" ")
    for task in GLUE_TASKS:  # unbalanced quotes stay inside their field (quoting off)
        texts = [t for ex in reading.read_examples(task, "train", fixture_glue_dir) for t in (ex.text_a, ex.text_b) if t]
        assert sum(t.count('"') for t in texts) >= 5, task


# ----------------------------------------------------------------------------------------------------
# Reading errors


def _read_error(glue_dir: Path, task: str, name: str, text: str, split: str = "train") -> str:
    write_task(glue_dir, task, {name: text})
    with pytest.raises(BertLotteryError) as info:
        reading.read_examples(task, split, glue_dir)
    return str(info.value)


def test_malformed_row_names_file_and_line(tmp_path):
    text = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tentailment\n"
    message = _read_error(tmp_path, "RTE", "train.tsv", text)
    assert message == f"{tmp_path / 'RTE' / 'train.tsv'}:3: expected 4 tab-separated columns, found 3"


def test_blank_line_is_malformed(tmp_path):
    text = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n\n"
    assert "train.tsv:3: expected 4 tab-separated columns, found 0" in _read_error(tmp_path, "RTE", "train.tsv", text)


def test_bad_label_names_file_line_and_value(tmp_path):
    text = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n"
    message = _read_error(tmp_path, "RTE", "train.tsv", text)
    assert "train.tsv:3: label 'maybe' is not one of entailment, not_entailment" in message


@pytest.mark.parametrize("score", ["5.5", "-0.1", "high", "nan", ""])
def test_bad_stsb_score(tmp_path, score):
    header = FIXTURES["STS-B"]["dev.tsv"].splitlines()[0]
    text = f"{header}\n0\tg\tf\t2012\t0\tnone\tnone\ta\tb\t{score}\n"
    message = _read_error(tmp_path, "STS-B", "dev.tsv", text, split="dev")
    assert f"dev.tsv:2: label '{score}' is not a similarity score in [0.0, 5.0]" in message


def test_cola_with_header_fails_on_its_label(tmp_path):
    text = "source\tlabel\tmark\tsentence\ngj04\t1\t\tA sentence.\n"
    assert "train.tsv:1: label 'label' is not one of 0, 1" in _read_error(tmp_path, "CoLA", "train.tsv", text)


def test_wrong_header(tmp_path):
    text = "idx\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n"
    message = _read_error(tmp_path, "RTE", "train.tsv", text)
    assert "train.tsv:1: expected the GLUE header ['index', 'sentence1', 'sentence2', 'label']" in message
    assert "'idx'" in message


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_utf8_bom_is_accepted_for_every_task(tmp_path, task):
    """A byte-order mark (Excel and Windows editors save one) reads as the same examples."""
    files = {name: "\ufeff" + text.removeprefix("\ufeff") for name, text in FIXTURES[task].items()}
    write_task(tmp_path, task, files)
    for split, text_a, text_b, label, line, n in EXPECTED_FIRST[task]:
        examples = reading.read_examples(task, split, tmp_path)
        assert len(examples) == n
        assert (examples[0].text_a, examples[0].text_b, examples[0].label) == (text_a, text_b, label)


@pytest.mark.parametrize("text", ["", "index\tsentence1\tsentence2\tlabel\n"])
def test_empty_file(tmp_path, text):
    assert "train.tsv: no data rows" in _read_error(tmp_path, "RTE", "train.tsv", text)


def test_qqp_with_only_malformed_rows(tmp_path):
    text = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t1\t2\tbroken\n"
    assert "train.tsv: no well-formed rows" in _read_error(tmp_path, "QQP", "train.tsv", text)


def test_missing_file_names_path_and_layout(tmp_path):
    with pytest.raises(BertLotteryError) as info:
        reading.read_examples("MNLI", "dev_mm", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNLI" / "dev_mismatched.tsv") in message
    assert "download_glue_data.py layout" in message and "16 tab-separated columns" in message


def test_invalid_utf8(tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    (folder / "train.tsv").write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\ta\xff\tb\tentailment\n")
    with pytest.raises(BertLotteryError, match=r"train.tsv:2: not valid utf-8 text"):
        reading.read_examples("RTE", "train", tmp_path)


def test_unknown_task_and_split(glue_dir):
    with pytest.raises(BertLotteryError, match="unknown task"):
        reading.read_examples("SST2", "train", glue_dir)
    with pytest.raises(BertLotteryError, match="unknown split 'dev_mm'"):
        reading.read_examples("RTE", "dev_mm", glue_dir)


# ----------------------------------------------------------------------------------------------------
# Hub label mapping (an in-memory datasets.Dataset with nyu-mll/glue's features)

HUB_NAMES = {  # the ClassLabel names of nyu-mll/glue's dataset card
    "CoLA": ["unacceptable", "acceptable"], "SST-2": ["negative", "positive"],
    "MRPC": ["not_equivalent", "equivalent"], "QQP": ["not_duplicate", "duplicate"],
    "MNLI": ["entailment", "neutral", "contradiction"], "QNLI": ["entailment", "not_entailment"],
    "RTE": ["entailment", "not_entailment"], "WNLI": ["not_entailment", "entailment"],
}


def hub_dataset(spec, rows: list[tuple], names: list[str] | None = None):
    from datasets import ClassLabel, Dataset, Features, Value

    columns = [spec.hub.text_a] + ([spec.hub.text_b] if spec.hub.text_b else [])
    label = Value("float32") if spec.is_regression else ClassLabel(names=names or HUB_NAMES[spec.name])
    features = Features({**{c: Value("string") for c in columns}, "label": label})
    table = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
    table["label"] = [row[-1] for row in rows]
    return Dataset.from_dict(table, features=features)


@pytest.mark.parametrize("task", [t for t in GLUE_TASKS if t != "STS-B"])
def test_hub_label_mapping_by_name(task):
    spec = get_task(task)
    mapping = reading.hub_label_mapping(spec, _class_label(HUB_NAMES[task]))
    expected = {0: 1, 1: 2, 2: 0} if task == "MNLI" else {0: 0, 1: 1}  # only MNLI's orders differ
    assert mapping == expected


def _class_label(names):
    from datasets import ClassLabel

    return ClassLabel(names=names)


def test_hub_and_tsv_give_the_same_labels(glue_dir):
    spec = get_task("MNLI")
    tsv = reading.read_examples("MNLI", "dev", glue_dir)
    hub_ids = {"entailment": 0, "neutral": 1, "contradiction": 2}
    rows = [(ex.text_a, ex.text_b, hub_ids[spec.labels[ex.label]]) for ex in tsv]
    hub = reading.examples_from_dataset(spec, "dev", hub_dataset(spec, rows))
    assert [(ex.text_a, ex.text_b, ex.label) for ex in hub.examples] == \
        [(ex.text_a, ex.text_b, ex.label) for ex in tsv]
    assert hub.source == "hub:nyu-mll/glue/mnli:validation_matched"
    assert [ex.line for ex in hub.examples] == [1, 2]


def test_hub_single_sentence_and_regression():
    cola = reading.examples_from_dataset(get_task("CoLA"), "train",
                                      hub_dataset(get_task("CoLA"), [("Good.", 1), ("Bad this.", 0)]))
    assert [(ex.text_a, ex.text_b, ex.label) for ex in cola.examples] == [("Good.", None, 1), ("Bad this.", None, 0)]
    stsb = reading.examples_from_dataset(get_task("STS-B"), "dev",
                                      hub_dataset(get_task("STS-B"), [("a", "b", 3.8), ("c", "d", 0.0)]))
    assert [ex.label for ex in stsb.examples] == pytest.approx([3.8, 0.0])


def test_hub_missing_label_and_foreign_class_names():
    spec = get_task("RTE")
    with pytest.raises(BertLotteryError, match="row 2: label -1 \\(missing\\)"):
        reading.examples_from_dataset(spec, "dev", hub_dataset(spec, [("a", "b", 0), ("c", "d", -1)]))
    with pytest.raises(BertLotteryError, match="hub class 'maybe' has no counterpart"):
        reading.hub_label_mapping(spec, _class_label(["entailment", "maybe"]))
    with pytest.raises(BertLotteryError, match="expected a ClassLabel"):
        reading.hub_label_mapping(spec, None)


def test_hub_missing_column():
    from datasets import Dataset

    with pytest.raises(BertLotteryError, match="missing columns \\['sentence2'\\]"):
        reading.examples_from_dataset(get_task("RTE"), "dev", Dataset.from_dict({"sentence1": ["a"], "label": [0]}))


# ----------------------------------------------------------------------------------------------------
# Subsampling


def test_subsample_indices_seeded_sorted_without_replacement():
    first = prepare.subsample_indices(1000, 50, seed=3)
    assert np.array_equal(first, prepare.subsample_indices(1000, 50, seed=3))
    assert not np.array_equal(first, prepare.subsample_indices(1000, 50, seed=4))
    assert len(np.unique(first)) == 50 and np.all(np.diff(first) > 0) and first.max() < 1000
    assert np.array_equal(prepare.subsample_indices(7, None, 0), np.arange(7))
    assert np.array_equal(prepare.subsample_indices(7, 7, 0), np.arange(7))
    assert np.array_equal(first, np.sort(np.random.default_rng(3).choice(1000, 50, replace=False)))


# ----------------------------------------------------------------------------------------------------
# Tokenization


def _tokens(tokenizer, ids, types):
    return list(zip(tokenizer.convert_ids_to_tokens(list(ids)), list(types)))


def test_pair_tokenization_round_trip(tokenizer):
    examples = [reading.Example("Hello world", "Second part", 0, 1), reading.Example("A b", "c", 1, 2)]
    arrays = prepare.tokenize_examples(tokenizer, examples, max_seq_length=128)
    assert arrays.input_ids.dtype == np.int32 and arrays.token_type_ids.dtype == np.uint8
    assert arrays.offsets.tolist() == [0, 7, 13] and arrays.n_truncated == 0
    assert _tokens(tokenizer, arrays.input_ids[:7], arrays.token_type_ids[:7]) == [
        ("[CLS]", 0), ("hello", 0), ("world", 0), ("[SEP]", 0), ("second", 1), ("part", 1), ("[SEP]", 1)]
    assert _tokens(tokenizer, arrays.input_ids[7:], arrays.token_type_ids[7:]) == [
        ("[CLS]", 0), ("a", 0), ("b", 0), ("[SEP]", 0), ("c", 1), ("[SEP]", 1)]


def test_single_sentence_tokenization(tokenizer):
    arrays = prepare.tokenize_examples(tokenizer, [reading.Example("The cat sat.", None, 1, 1)], 128)
    tokens = _tokens(tokenizer, arrays.input_ids, arrays.token_type_ids)
    assert tokens == [("[CLS]", 0), ("the", 0), ("cat", 0), ("sat", 0), (".", 0), ("[SEP]", 0)]


def test_longest_first_truncation(tokenizer):
    long_a = " ".join(["word"] * 200)
    examples = [reading.Example(long_a, "short hypothesis", 0, 1), reading.Example("tiny", "pair", 1, 2),
                reading.Example(long_a, long_a, 1, 3)]
    arrays = prepare.tokenize_examples(tokenizer, examples, max_seq_length=32, batch_size=2)
    lengths = arrays.lengths.tolist()
    assert lengths == [32, 5, 32]
    assert arrays.n_truncated == 2 and arrays.max_tokens_untruncated == 403
    first = _tokens(tokenizer, arrays.input_ids[:32], arrays.token_type_ids[:32])
    # longest-first cuts the long premise and keeps the whole short hypothesis
    assert first[-4:] == [("[SEP]", 0), ("short", 1), ("hypothesis", 1), ("[SEP]", 1)]
    assert first[0] == ("[CLS]", 0) and sum(t for _, t in first) == 3
    third = arrays.token_type_ids[37:69].tolist()
    assert third.count(0) - third.count(1) in (0, 1, 2)  # two long texts: each cut to about half
    expected = tokenizer([ex.text_a for ex in examples], [ex.text_b for ex in examples],
                         truncation="longest_first", max_length=32)["input_ids"]
    assert arrays.input_ids.tolist() == [t for row in expected for t in row]


# ----------------------------------------------------------------------------------------------------
# Batching


def _split_from_rows(rows: list[list[int]], labels) -> splits.TokenizedSplit:
    lengths = [len(r) for r in rows]
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.int32)
    types = torch.tensor([int(i >= 2) for r in rows for i in range(len(r))], dtype=torch.uint8)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)
    return splits.TokenizedSplit(flat, types, offsets, torch.as_tensor(labels), {"max_seq_length": "8"})


def test_collate_pads_to_batch_longest():
    split = _split_from_rows([[101, 5, 102], [101, 6, 7, 8, 102], [101, 102]], [0, 1, 0])
    assert len(split) == 3 and split.lengths.tolist() == [3, 5, 2] and not split.is_regression
    batch = split.collate([2, 0])
    assert batch["input_ids"].tolist() == [[101, 102, 0], [101, 5, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 1]]
    assert batch["labels"].tolist() == [0, 0]
    assert all(batch[k].dtype == torch.long for k in ("input_ids", "token_type_ids", "attention_mask"))


def test_collate_pad_to_fixed_length():
    split = _split_from_rows([[101, 5, 102], [101, 6, 7, 8, 102]], [0.5, 4.0])
    assert split.is_regression
    batch = split.collate(torch.tensor([1, 0]), pad_to=8)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [101, 6, 7, 8, 102, 0, 0, 0]
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 3]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [4.0, 0.5]
    with pytest.raises(BertLotteryError, match="pad_to=4 is shorter than a row of 5 tokens"):
        split.collate([1], pad_to=4)


def test_load_split_missing(tmp_path):
    with pytest.raises(BertLotteryError, match="prepared split not found; run .*prepare-data"):
        splits.load_split(tmp_path, "train")


# ----------------------------------------------------------------------------------------------------
# prepare_data: files, card, CLI


def test_prepare_data_writes_splits_card_and_jsonl(tiny_model_dir, glue_dir, tmp_path, tokenizer):
    out = tmp_path / "out" / "MNLI"
    card = prepare.prepare_data("MNLI", str(tiny_model_dir), out, glue_dir=glue_dir, max_seq_length=12)
    assert card["source"] == f"tsv:{glue_dir / 'MNLI'}" and card["labels"] == ["contradiction", "entailment", "neutral"]
    assert list(card["splits"]) == ["train", "dev", "dev_mm"]
    dev = card["splits"]["dev"]
    assert dev["rows_in_source"] == dev["rows_kept"] == 2 and dev["label_counts"] == \
        {"contradiction": 1, "entailment": 0, "neutral": 1}
    assert dev["majority_baseline"] == {"metric": "accuracy", "score": 0.5, "prediction": "contradiction"}
    assert card["splits"]["train"]["majority_baseline"] is None
    assert dev["max_tokens"] == 12 and dev["n_truncated"] >= 1
    assert json.loads((out / "data_card.json").read_text()) == card

    split = splits.load_split(out, "dev")
    assert split.metadata["task"] == "MNLI" and split.metadata["max_seq_length"] == "12"
    assert split.labels.tolist() == [2, 0] and split.labels.dtype == torch.int64
    batch = split.collate([0, 1])
    direct = tokenizer(["The new rights are nice enough", "This site includes a list."],
                       ["Everyone really likes the newest benefits", "The site has no list."],
                       truncation="longest_first", max_length=12, padding=True)
    assert batch["input_ids"].tolist() == direct["input_ids"]
    assert batch["attention_mask"].tolist() == direct["attention_mask"]
    assert batch["token_type_ids"].tolist() == direct["token_type_ids"]

    rows = [json.loads(line) for line in (out / "splits" / "dev.jsonl").read_text().splitlines()]
    assert rows[1] == {"line": 3, "text_a": "This site includes a list.", "text_b": "The site has no list.",
                       "label": "contradiction", "label_id": 0}


def test_prepare_data_stsb_regression_labels(tiny_model_dir, glue_dir, tmp_path, tokenizer):
    out = tmp_path / "stsb"
    card = prepare.prepare_data("STS-B", str(tiny_model_dir), out, glue_dir=glue_dir)
    train = card["splits"]["train"]
    assert train["label_counts"] is None and train["label_stats"]["max"] == 5.0
    split = splits.load_split(out, "train")
    assert split.is_regression and split.labels.dtype == torch.float32
    assert split.labels.tolist() == pytest.approx([5.0, 0.5, 3.8])


def test_prepare_data_subsampling_is_seeded(tiny_model_dir, tmp_path, tokenizer):
    rows = "".join(f"{i}\tpremise number {i}\thypothesis {i}\t{'entailment' if i % 3 else 'not_entailment'}\n"
                   for i in range(40))
    glue = write_task(tmp_path / "glue", "RTE", {"train.tsv": "index\tsentence1\tsentence2\tlabel\n" + rows,
                                                 "dev.tsv": "index\tsentence1\tsentence2\tlabel\n" + rows})
    kwargs = dict(glue_dir=glue, max_train_examples=10, max_dev_examples=25, subsample_seed=7)
    card_a = prepare.prepare_data("RTE", str(tiny_model_dir), tmp_path / "a", **kwargs)
    card_b = prepare.prepare_data("RTE", str(tiny_model_dir), tmp_path / "b", **kwargs)
    text_a = (tmp_path / "a" / "splits" / "train.jsonl").read_text()
    assert text_a == (tmp_path / "b" / "splits" / "train.jsonl").read_text()
    lines = [json.loads(x)["line"] for x in text_a.splitlines()]
    assert lines == sorted(lines) and len(lines) == 10
    assert np.array_equal(np.array(lines) - 2, prepare.subsample_indices(40, 10, 7))
    assert card_a["splits"] == card_b["splits"]
    assert card_a["splits"]["train"]["rows_kept"] == 10 and card_a["splits"]["train"]["rows_in_source"] == 40
    assert card_a["splits"]["dev"]["rows_kept"] == 25 and card_a["splits"]["dev"]["subsampled"]
    assert card_a["subsampling"]["subsample_seed"] == 7 and card_a["subsampling"]["max_dev_examples"] == 25
    card_c = prepare.prepare_data("RTE", str(tiny_model_dir), tmp_path / "c", **{**kwargs, "subsample_seed": 8})
    assert (tmp_path / "c" / "splits" / "train.jsonl").read_text() != text_a
    assert card_c["splits"]["train"]["rows_kept"] == 10


def test_prepare_data_rejects_bad_settings(tiny_model_dir, glue_dir, tmp_path):
    with pytest.raises(BertLotteryError, match="data.max_train_examples: 0"):
        prepare.prepare_data("RTE", str(tiny_model_dir), tmp_path, glue_dir=glue_dir, max_train_examples=0)
    with pytest.raises(BertLotteryError, match="data.subsample_seed"):
        prepare.prepare_data("RTE", str(tiny_model_dir), tmp_path, glue_dir=glue_dir, subsample_seed=-1)


def test_cli_prepare_data(tiny_model_dir, glue_dir, tmp_path, tokenizer, capsys):
    out = tmp_path / "cli"
    prepare.main_prepare_data(["--task", "SST-2", "--model", str(tiny_model_dir), "--glue-dir", str(glue_dir),
                            "--data", '{"max_train_examples": 1, "max_dev_examples": null, "subsample_seed": 0}',
                            "--max-seq-length", "64", "--out-dir", str(out)])
    printed = capsys.readouterr().out
    assert "SST-2 from tsv:" in printed and "train: 1 kept of 2 rows" in printed
    assert "majority baseline accuracy 1.000" in printed
    card = read_json(out / "data_card.json")
    assert card["max_seq_length"] == 64 and card["splits"]["train"]["rows_kept"] == 1


def test_cli_reports_errors(tiny_model_dir, glue_dir, tmp_path):
    from bertlottery.cli import main

    with pytest.raises(SystemExit, match="--data: unknown keys \\['max_examples'\\]"):
        main(["prepare-data", "--task", "RTE", "--model", str(tiny_model_dir), "--glue-dir", str(glue_dir),
              "--data", '{"max_examples": 3}', "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="--data: not valid JSON"):
        main(["prepare-data", "--task", "RTE", "--model", str(tiny_model_dir), "--data", "{", "--out-dir", str(tmp_path)])


def test_prepare_data_validates_every_split_before_writing(tiny_model_dir, glue_dir, tmp_path):
    write_task(glue_dir, "RTE", {"dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tyes\n"})
    with pytest.raises(BertLotteryError, match="dev.tsv:2: label 'yes'"):
        prepare.prepare_data("RTE", str(tiny_model_dir), tmp_path / "out", glue_dir=glue_dir)
    assert not (tmp_path / "out").exists()
