"""Row validation: a bad row is quarantined with its reason, never dropped or crashed on.

Loading records type problems (:func:`coerce_types`); :func:`validate_batch` (a Ray Data
``map_batches`` function) adds missing / empty / absurd-length reasons. :func:`split_quarantine`
separates the two, so every input row ends either in the output or in the quarantine file.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

REASON = "quarantine_reason"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _add_reason(df: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    """Record ``reason`` on rows in ``mask`` that have no reason yet (the first problem wins)."""
    target = mask & df[REASON].isna()
    df.loc[target, REASON] = reason


def coerce_types(df: pd.DataFrame, required: tuple[str, ...], optional: tuple[str, ...]) -> pd.DataFrame:
    """Text columns must hold strings. A wrong type is quarantined and the value kept as its
    repr (so the row still fits an Arrow string column); missing optional values become None."""
    df = df.copy()
    df[REASON] = df[REASON].astype(object).where(df[REASON].notna(), None)
    for column in (*required, *optional):
        if column not in df.columns:
            df[column] = None
        values = df[column].tolist()
        reasons = pd.Series(
            [None if _missing(v) or isinstance(v, str) else f"{column}: expected a string, got {type(v).__name__}"
             for v in values],
            index=df.index, dtype=object,
        )
        target = reasons.notna() & df[REASON].isna()
        df.loc[target, REASON] = reasons[target]
        df[column] = pd.Series(
            [None if _missing(v) else v if isinstance(v, str) else repr(v) for v in values], index=df.index, dtype=object
        )
    return df


def validate_batch(df: pd.DataFrame, max_question_chars: int, max_response_chars: int) -> pd.DataFrame:
    """Ray Data batch function: add quarantine reasons for missing, empty or absurdly long fields."""
    df = df.copy()
    if REASON not in df.columns:
        df[REASON] = None
    df[REASON] = df[REASON].astype(object).where(df[REASON].notna(), None)
    for column, limit in (("question", max_question_chars), ("response", max_response_chars)):
        text = df[column].astype(object)
        _add_reason(df, text.isna(), f"{column}: missing")
        stripped_len = text.fillna("").str.strip().str.len()
        _add_reason(df, text.notna() & (stripped_len == 0), f"{column}: empty")
        _add_reason(df, text.fillna("").str.len() > limit, f"{column}: longer than {limit} characters")
    return df


def split_quarantine(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(good rows without the reason column, quarantined rows with their reason)."""
    bad = df[REASON].notna()
    return df[~bad].drop(columns=[REASON]).reset_index(drop=True), df[bad].reset_index(drop=True)
