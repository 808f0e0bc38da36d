"""Checkpoints of a replica pool: one file, ``<checkpoint_dir>/state.pkl``, of one actor's ``get_state()``.

It is written to a temp file in the same directory and renamed over the old
one, so a pool restoring from it reads the old file or the new one, never a
part of either.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from typing import Any, Tuple

CHECKPOINT_FILE = "state.pkl"
# The step the checkpoint in the same directory was taken after: a driver
# started again (after a head handover) goes on from it.
STEP_FILE = "step.json"


def write_checkpoint(checkpoint_dir: str, state: Any) -> str:
    """Pickle ``state`` to ``<checkpoint_dir>/state.pkl`` atomically (temp file + fsync + rename); return the path."""
    path = os.path.join(checkpoint_dir, CHECKPOINT_FILE)
    os.makedirs(checkpoint_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=checkpoint_dir, prefix=".state-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except Exception:
            pass
        raise
    return path


def read_checkpoint(path: str) -> Tuple[Any, int]:
    """The state in the checkpoint at ``path``, and its size in bytes."""
    with open(path, "rb") as f:
        state = pickle.load(f)
        return state, f.tell()


def write_step(checkpoint_dir: str, step: int) -> None:
    """Record, atomically, that the checkpoint in ``checkpoint_dir`` is the state after ``step``."""
    path = os.path.join(checkpoint_dir, STEP_FILE)
    fd, tmp = tempfile.mkstemp(dir=checkpoint_dir, prefix=".step-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write('{"step": %d}\n' % step)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_step(checkpoint_dir: str) -> int:
    """The step ``write_step`` last recorded in ``checkpoint_dir``; 0 when none."""
    try:
        with open(os.path.join(checkpoint_dir, STEP_FILE)) as f:
            return int(json.load(f)["step"])
    except FileNotFoundError:
        return 0
