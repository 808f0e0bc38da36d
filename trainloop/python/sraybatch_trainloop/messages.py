"""The pool's words: numbers as its log lines print them, and Ray's errors cut to one line."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"[\w.]*(Error|Exception)\b.*:")


def _number(x: float):
    """An integral float as int, others rounded: ``2.0`` -> ``2``, ``0.30000000000000004`` -> ``0.3``."""
    return int(x) if float(x).is_integer() else round(x, 3)


def _count(x: float, noun: str) -> str:
    """``3 GPUs``, ``1 GPU``, ``0.5 GPU``, ``0 actors``."""
    return f"{_number(x)} {noun}" + ("" if 0 < x <= 1 + 1e-9 else "s")


def _short_error(e: BaseException) -> str:
    """The error's first line; for a traceback Ray carried over (e.g. a failed ``__init__``), its last too."""
    lines = [line.strip() for line in _ANSI.sub("", str(e)).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1 and _EXCEPTION_LINE.match(lines[-1]):
        text += " ... " + lines[-1]
    return f"{type(e).__name__}: {text}".strip()

