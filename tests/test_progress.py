"""Progress a user can follow with `tail -f`: in a log file every redraw is a line of its own."""

from __future__ import annotations

import io
import subprocess
import sys

from bertlottery.progress import LOG_INTERVAL_S, tqdm


def test_progress_in_a_log_file_is_one_line_per_update():
    log = io.StringIO()  # not a terminal, as a rule's log
    bar = tqdm(total=4, desc="train", file=log, mininterval=0)
    assert bar.mininterval == LOG_INTERVAL_S  # at most one line per interval in a log
    for _ in range(4):
        bar.update(1)
        bar.refresh()
    bar.set_postfix(loss=0.5)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) >= 5 and all(line.startswith("train:") for line in lines)
    assert "4/4" in lines[-1] and "loss=0.5" in lines[-1]


def test_a_job_log_has_progress_lines_not_one_carriage_return_line(tmp_path):
    code = ("from bertlottery.progress import tqdm\n"
            "for _ in tqdm(range(3), desc='eval'): pass\n")
    log = tmp_path / "job.log"
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-c", code], stderr=handle, check=True, timeout=60)
    text = log.read_text()
    assert "\r" not in text and text.splitlines()[-1].startswith("eval: 100%")
