"""benchmarks/study_cost.py: the per-rule CPU-seconds of Snakemake's benchmark files, and the side-by-side
table. (The script's runs of the real workflow are measurements, not tests.)"""

import importlib.util

from conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def load_script():
    spec = importlib.util.spec_from_file_location("study_cost", REPO / "benchmarks" / "study_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_file(path, wall, cpu):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:01\t930.79\t1636.60\t823.26\t870.65\t0.23\t1671.02\t87.97\t{cpu}\n")


def test_cpu_seconds_are_summed_per_rule(tmp_path):
    bench = load_script()
    root = tmp_path / "results" / "benchmarks"
    benchmark_file(root / "retrain" / "s" / "good" / "SST-2" / "seed1337.tsv", 280.0, 246.5)
    benchmark_file(root / "retrain" / "m" / "bad" / "SST-2" / "seed1337.tsv", 100.0, 90.0)
    benchmark_file(root / "finetune" / "SST-2" / "seed1337.tsv", 50.0, 40.25)
    rules = bench.cpu_seconds_per_rule(tmp_path / "results")
    assert rules == {"retrain": {"cpu_s": 336.5, "wall_s": 380.0, "jobs": 2},
                     "finetune": {"cpu_s": 40.25, "wall_s": 50.0, "jobs": 1}}


def test_the_table_puts_the_commits_side_by_side_with_their_ratio():
    bench = load_script()
    base = {"commit": "a" * 40, "wall_s": 600.0, "cpu_s": 300.0, "jobs": 3,
            "rules": {"retrain": {"cpu_s": 200.0, "jobs": 2}, "finetune": {"cpu_s": 100.0, "jobs": 1}}}
    new = {"commit": "b" * 40, "wall_s": 300.0, "cpu_s": 150.0, "jobs": 3, "same_results": True,
           "rules": {"retrain": {"cpu_s": 80.0, "jobs": 2}, "finetune": {"cpu_s": 70.0, "jobs": 1}}}
    table = bench.markdown([base, new]).splitlines()
    assert table[2] == "| finetune | 100 (1) | 70 (1) | 0.70 |"
    assert table[3] == "| retrain | 200 (2) | 80 (2) | 0.40 |"
    assert table[4] == "| total | 300 (3) | 150 (3) | 0.50 |"
    assert "results equal to aaaaaaaa's: True" in table[-1]


def test_the_chunk_target_is_the_workflows():
    assert load_script().chunk_target("SST-2") == "task_SST2"
