"""The one Markdown table writer (GitHub tables, no ``tabulate`` dependency)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def fmt(value: Any) -> str:
    """A cell: floats to 4 significant digits, NaN as ``-``, anything else as ``str``."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], cell=str) -> list[str]:
    """The lines of a table; ``cell`` turns each value into its text (``|`` is escaped)."""
    def line(values: Iterable[Any], to_text) -> str:
        return "| " + " | ".join(to_text(v).replace("|", "\\|") for v in values) + " |"

    return [line(header, str), "|" + "---|" * len(header), *(line(row, cell) for row in rows)]


def frame_table(frame, index: bool = False) -> str:
    """A pandas DataFrame as a table (cells by :func:`fmt`), ending with a newline."""
    frame = frame.reset_index() if index else frame
    return "\n".join(markdown_table(list(frame.columns), frame.itertuples(index=False), cell=fmt)) + "\n"
