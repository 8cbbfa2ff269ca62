"""Decontamination against the evaluation benchmarks and duplicate removal inside the training set.

A training question is contaminated when it shares a word n-gram (13 by default) with a benchmark
question after normalisation (lower case, words only), or equals one outright when it is shorter
than n words. Duplicates: the same normalised question + response (case, whitespace and
punctuation ignored) is kept once, the first by row order. Both steps are Ray Data batch functions;
the n-gram index is a set of 64-bit hashes built once and shipped to the workers.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import pandas as pd

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
CONTAMINATED = "contaminated_by"
DUP_KEY = "dup_key"


def words(text: str) -> list[str]:
    """Normalised words: lower case, punctuation and whitespace dropped."""
    return _WORD.findall(text.lower())


def _h(text: str) -> int:
    # Stable across processes (Python's hash() is salted per process, and Ray runs many).
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int) -> set[int]:
    """Hashes of every word n-gram; a text shorter than n words is one 'n-gram' of itself."""
    w = words(text)
    if len(w) < n:
        return {_h(" ".join(w))} if w else set()
    return {_h(" ".join(w[i : i + n])) for i in range(len(w) - n + 1)}


class BenchmarkIndex:
    """n-gram hashes of every benchmark question, each pointing at its benchmark's name."""

    def __init__(self, questions: dict[str, Iterable[str]], n: int):
        self.n = n
        self.owner: dict[int, str] = {}
        self.sizes = {}
        for name, texts in questions.items():
            texts = list(texts)
            self.sizes[name] = len(texts)
            for text in texts:
                for h in ngram_hashes(text, n):
                    self.owner.setdefault(h, name)

    def match(self, text: str) -> str | None:
        """The benchmark ``text`` overlaps with, or None."""
        for h in ngram_hashes(text, self.n):
            if h in self.owner:
                return self.owner[h]
        return None


def load_benchmark_questions(names: list[str] | None, data_dir: str | Path | None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Questions of each benchmark through the eval stage's loaders; (questions, skipped -> why).

    A benchmark whose files are missing is reported as skipped rather than failing the build,
    so the report says exactly what was checked."""
    from cft_ray.core.benchmarks import BENCHMARKS, get_benchmark

    questions, skipped = {}, {}
    for name in names or sorted(BENCHMARKS):
        try:
            questions[name] = [s.question for s in get_benchmark(name).load(data_dir)]
        except Exception as exc:  # noqa: BLE001 - any loader failure is reported, not fatal
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning("decontamination: benchmark %s skipped (%s)", name, skipped[name])
    return questions, skipped


class Decontaminate:
    """Ray Data batch callable: adds ``contaminated_by`` (benchmark name or None)."""

    def __init__(self, index: BenchmarkIndex):
        self.index = index

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df[CONTAMINATED] = pd.Series([self.index.match(q) for q in df["question"]], index=df.index, dtype=object)
        return df


def dedup_key_batch(df: pd.DataFrame) -> pd.DataFrame:
    """Ray Data batch function: adds ``dup_key``, equal for rows that differ only in case,
    whitespace or punctuation of question and response."""
    df = df.copy()
    df[DUP_KEY] = [
        hashlib.blake2b((" ".join(words(q)) + "\x1f" + " ".join(words(r))).encode(), digest_size=10).hexdigest()
        for q, r in zip(df["question"], df["response"])
    ]
    return df


def duplicate_rows(keys: pd.DataFrame) -> set[int]:
    """``row_index`` of every row after the first (lowest index) with the same ``dup_key``."""
    ordered = keys.sort_values("row_index", kind="stable")
    return set(ordered.loc[ordered.duplicated(DUP_KEY, keep="first"), "row_index"].tolist())


def contamination_report(df: pd.DataFrame) -> dict[str, int]:
    return dict(Counter(df[CONTAMINATED].dropna()))
