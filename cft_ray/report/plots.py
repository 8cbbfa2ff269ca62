"""The one matplotlib set-up: a headless backend, a figure saved as PNG and always closed."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def png_figure(path: str | Path, dpi: int = 120, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``with png_figure(path, figsize=(6, 4)) as (fig, ax): ...`` draws into ``plt.subplots(**subplots)``
    and, when the block ends without an error, lays it out and writes ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes or CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
