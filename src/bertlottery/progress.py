"""Progress bars a user can follow with `tail -f` on a job's log.

On a terminal, tqdm's bar as usual. Where stderr is a file (every rule's log, results/logs/<job>.log),
tqdm would write one ever-growing carriage-return line; there each update becomes its own line, at
most one every LOG_INTERVAL_S seconds (and the last), e.g.
`train:  40%|####      | 360/900 [02:10<03:15,  2.77step/s, loss=0.412]`.
"""

from __future__ import annotations

import sys

from tqdm import tqdm as _tqdm

LOG_INTERVAL_S = 30.0


class LineWriter:
    """A file for tqdm that turns each carriage-return redraw into a line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():  # tqdm clears a closed bar by writing spaces: nothing to show
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def tqdm(*args, **kwargs) -> _tqdm:
    """tqdm on a terminal; plain lines, one per LOG_INTERVAL_S, in a log file."""
    stream = kwargs.pop("file", None) or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        kwargs = {"mininterval": LOG_INTERVAL_S, "ascii": True, "dynamic_ncols": False, "ncols": 100} | kwargs
        kwargs["mininterval"] = max(kwargs["mininterval"], LOG_INTERVAL_S)
        kwargs["leave"] = True  # a log keeps the last line of every bar
        stream = LineWriter(stream)
    return _tqdm(*args, file=stream, **kwargs)
