"""What the search tests share: killing a search mid-way and resuming it from its saved state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


class Killed(Exception):
    """Stands for a kill: raised from the search's on_iteration callback."""


def run_killed_then_resumed(search: Callable[..., Any], state_dir: Path, state_file: str, kill_after: int):
    """Run `search(state_dir=..., on_iteration=...)` killed right after iteration `kill_after` was saved,
    check it left its state file, then run it again on the same state.

    Returns the resumed run's result and the iterations it reported (those it did not take from the state)."""
    def kill(i: int) -> None:
        if i == kill_after:
            raise Killed

    with pytest.raises(Killed):
        search(state_dir=state_dir, on_iteration=kill)
    assert (state_dir / state_file).is_file()
    reported: list[int] = []
    return search(state_dir=state_dir, on_iteration=reported.append), reported


@pytest.fixture
def killed_then_resumed():
    """`run_killed_then_resumed` for the kill-and-resume tests of both searches."""
    return run_killed_then_resumed
