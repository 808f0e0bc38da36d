"""Test-only: widens Ray Train's snapshot write so a stop can land inside it.

On ``PYTHONPATH`` with ``SRB_SLOW_SNAPSHOT=<marker file>`` set, every Ray
process patches ``CheckpointManager._write_state_to_storage`` (Ray 2.60,
``ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py``) once
that module is imported: from the second write on, it writes half of the
snapshot, marks ``start`` in the marker file, sleeps
``SRB_SLOW_SNAPSHOT_S`` seconds, writes the rest and marks ``end``. The
write is Ray's own otherwise: the same stream, opened in place, no rename.
"""

import importlib.abc
import importlib.util
import os
import sys
import time

_TARGET = "ray.train.v2._internal.execution.checkpoint.checkpoint_manager"
_MARK = os.environ.get("SRB_SLOW_SNAPSHOT")


def _mark(what):
    with open(_MARK, "a") as f:
        f.write(f"{time.time():.3f} {os.getpid()} {what}\n")


def _patch(module):
    writes = 0

    def slow_write(self):
        nonlocal writes
        writes += 1
        data = self._save_state().encode("utf-8")
        path = self._storage_context.checkpoint_manager_snapshot_path
        with self._storage_context.storage_filesystem.open_output_stream(path) as f:
            if writes == 1:
                f.write(data)
                return
            f.write(data[: len(data) // 2])
            f.flush()
            _mark("start")
            time.sleep(float(os.environ.get("SRB_SLOW_SNAPSHOT_S", "5")))
            f.write(data[len(data) // 2 :])
        _mark("end")

    module.CheckpointManager._write_state_to_storage = slow_write


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if _MARK:
    sys.meta_path.insert(0, _PatchOnImport())
