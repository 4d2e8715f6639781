"""The resumable state of a mask search: one file per search, kept while it runs, removed when it is done.

The state is one safetensors file: the search's tensors (none for the m-search, which replays its
deterministic steps) and, as JSON in the metadata key "state", its record together with the store's
version and the fingerprint of the settings, model and data it was made with. A state is resumed only
when both match; anything else (another version or fingerprint, a damaged file) is ignored with a
message and the search starts over. Writes are atomic (see `bertlottery.io`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from bertlottery.glue.splits import TokenizedSplit
from bertlottery.io import remove_temporaries, save_tensors

STATE_VERSION = 1


def split_fingerprint(split: TokenizedSplit) -> str:
    """Cheap identity of a tokenized split (size, label sum, token-id sum)."""
    return f"{len(split)}|{float(split.labels.double().sum()):.6e}|{int(split.input_ids.long().sum())}"


def model_fingerprint(model: torch.nn.Module, split: TokenizedSplit) -> str:
    """Cheap identity of the (model, dev data) pair, so a state from another model is never resumed."""
    with torch.no_grad():
        weights = sum(float(p.double().abs().sum()) for p in model.parameters())
    return f"{weights:.10e}|{split_fingerprint(split)}"


@dataclass(frozen=True)
class StateStore:
    """Save / load-if-matching / clear of one search's state file `<directory>/<filename>`.

    `directory` None: nothing is saved or loaded. `search` names the search in messages."""

    directory: Path | None
    filename: str
    fingerprint: str  # hash of the settings, model and data (stored as "settings_hash")
    search: str

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else Path(self.directory) / self.filename

    def save(self, record: dict, tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Replace the saved state by `record` (JSON-able) and `tensors`."""
        if self.path is None:
            return
        meta = {"version": STATE_VERSION, "settings_hash": self.fingerprint, **record}
        save_tensors(self.path, tensors or {}, {"state": json.dumps(meta)})

    def load(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """The saved record and tensors if there is a state of this version and fingerprint; else None."""
        from safetensors import safe_open

        path = self.path
        if path is None or not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = json.loads((handle.metadata() or {})["state"])
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as exc:  # a damaged state is not worth failing the job for: start over
            print(f"{self.search}: ignoring unreadable state {path} ({exc})")
            return None
        if meta.get("version") != STATE_VERSION or meta.get("settings_hash") != self.fingerprint:
            print(f"{self.search}: ignoring state {path} made with other settings, model or data")
            return None
        return {k: v for k, v in meta.items() if k not in ("version", "settings_hash")}, tensors


def clear_state(state_dir: str | Path | None, filename: str) -> None:
    """Remove a finished search's state file (and its folder once empty)."""
    if state_dir is None:
        return
    path = Path(state_dir) / filename
    path.unlink(missing_ok=True)
    remove_temporaries(path)
    if Path(state_dir).is_dir() and not any(Path(state_dir).iterdir()):
        Path(state_dir).rmdir()
