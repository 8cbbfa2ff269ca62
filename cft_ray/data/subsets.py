"""Subsets for data-size sweeps: seeded random or longest critiques, with nested sizes.

Sizes are nested (the 4K rows are inside the 10K, inside the 50K) so a sweep compares like with
like. ``longest`` takes the longest critiques for the largest size and seeded random cuts of
that for the smaller ones, as the released 50K (longest of an 80K pool) and 4K (random cut of
the 50K) were made.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cft_ray.config import SubsetConfig

log = logging.getLogger(__name__)


def subset_ids(rows: pd.DataFrame, config: SubsetConfig) -> dict[int, list[str]]:
    """size -> ids of that subset, each inside the next larger one."""
    if config.strategy == "all" or not config.sizes:
        return {}
    sizes = sorted(set(config.sizes))
    if sizes[-1] > len(rows):
        log.warning("subset sizes %s exceed the %d rows available; the larger ones are cut to %d",
                    sizes, len(rows), len(rows))
    rng = np.random.default_rng(config.seed)
    ids = rows.sort_values("id", kind="stable")  # a fixed order first, so the seed alone decides
    if config.strategy == "longest":
        length = ids["critique"].fillna("").str.len()
        pool = ids.assign(_len=length).sort_values(["_len", "id"], ascending=[False, True], kind="stable")
        pool = pool["id"].tolist()[: sizes[-1]]
    else:
        pool = ids["id"].tolist()
    order = [pool[i] for i in rng.permutation(len(pool))]
    return {size: order[: min(size, len(order))] for size in sizes}
