"""Data-stage throughput: load, validate, dedup, decontaminate and build on N synthetic rows,
Ray Data against a single-process pandas baseline running the same batch functions.

    python benchmarks/data_pipeline.py --rows 100000 [--benchdata ../shared/benchdata]

Prints rows/s per step for both, the Ray/pandas ratio and the peak resident memory of each
(the Ray figure is the whole local cluster: driver, raylet, GCS and workers), and writes
benchmarks/results/data_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

from cft_ray.data import decontam
from cft_ray.data.builders import build_rows
from cft_ray.config import SourceConfig
from cft_ray.data.sources import normalise
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.data.validate import validate_batch

RESULTS = Path(__file__).parent / "results" / "data_pipeline.json"
SOURCE = SourceConfig(kind="local", name="synthetic")
LIMITS = {"max_question_chars": 20_000, "max_response_chars": 40_000}


class PeakRSS:
    """Peak resident memory of this process and all its descendants, sampled every 50 ms."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def make_input(rows: int, directory: Path, planted: list[str]) -> Path:
    """``rows`` synthetic rows as a Parquet file: 1% near-duplicates (upper-cased), 0.1% broken
    and the given benchmark questions planted, plus a critique per row (what the teacher step
    adds) so the build step has its input."""
    df = pd.DataFrame(arithmetic_problems(rows, seed=0))
    dups = df.iloc[::100].assign(question=lambda d: d["question"].str.upper())
    df = pd.concat([df.iloc[: rows - len(dups) - len(planted)], dups], ignore_index=True)
    df = pd.concat([df, pd.DataFrame({"question": planted, "response": "42", "reference_answer": "42",
                                      "response_is_correct": False})], ignore_index=True)
    df.loc[df.index[::997], "response"] = ""  # quarantined
    df["row_index"] = range(len(df))  # the pipeline numbers rows at load the same way
    df["critique"] = ["Checked.\nConclusion: " + ("right" if ok else "wrong") + " [END]" for ok in df["response_is_correct"]]
    path = directory / "input.parquet"
    df.to_parquet(path, index=False)
    return path


def with_verdict(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(verdict=["right" if c.endswith("right [END]") else "wrong" for c in df["critique"]])


def run_pandas(path: Path, index: decontam.BenchmarkIndex, out: Path) -> dict[str, float]:
    seconds = {}
    t = time.perf_counter()
    df = normalise(pd.read_parquet(path), SOURCE)
    seconds["load"] = time.perf_counter() - t
    t = time.perf_counter()
    df = _where_null(validate_batch(df, **LIMITS), "quarantine_reason")
    seconds["validate"] = time.perf_counter() - t
    t = time.perf_counter()
    df = decontam.dedup_key_batch(df)
    df = df[~df["row_index"].isin(decontam.duplicate_rows(df))]
    seconds["dedup"] = time.perf_counter() - t
    t = time.perf_counter()
    df = decontam.Decontaminate(index)(df)
    df = _where_null(df, decontam.CONTAMINATED)
    seconds["decontaminate"] = time.perf_counter() - t
    t = time.perf_counter()
    _build_cft(with_verdict(df)).to_parquet(out / "pandas-cft.parquet", index=False)
    seconds["build"] = time.perf_counter() - t
    return seconds


def run_ray(path: Path, index: decontam.BenchmarkIndex, out: Path, batch_size: int) -> dict[str, float]:
    import ray

    def timed(name, ds):
        t = time.perf_counter()
        ds = ds.materialize()
        seconds[name] = time.perf_counter() - t
        return ds

    seconds: dict[str, float] = {}
    ds = timed("load", ray.data.read_parquet(str(path)).map_batches(
        normalise, fn_kwargs={"cfg": SOURCE}, batch_format="pandas", batch_size=batch_size))
    ds = timed("validate", ds.map_batches(validate_batch, fn_kwargs=LIMITS, batch_format="pandas", batch_size=batch_size)
               .map_batches(_where_null, fn_args=("quarantine_reason",), batch_format="pandas"))
    t = time.perf_counter()
    keyed = ds.map_batches(decontam.dedup_key_batch, batch_format="pandas", batch_size=batch_size).materialize()
    drop = decontam.duplicate_rows(keyed.select_columns(["row_index", decontam.DUP_KEY]).to_pandas())
    ds = keyed.map_batches(_drop_rows, fn_kwargs={"drop": drop}, batch_format="pandas").materialize()
    seconds["dedup"] = time.perf_counter() - t
    ds = timed("decontaminate", ds.map_batches(
        decontam.Decontaminate, fn_constructor_kwargs={"index": index}, compute=ray.data.ActorPoolStrategy(size=2),
        batch_format="pandas", batch_size=batch_size).map_batches(
        _where_null, fn_args=(decontam.CONTAMINATED,), batch_format="pandas"))
    t = time.perf_counter()
    ds.map_batches(with_verdict, batch_format="pandas", batch_size=batch_size).map_batches(
        _build_cft, batch_format="pandas", batch_size=batch_size).write_parquet(str(out / "ray-cft"))
    seconds["build"] = time.perf_counter() - t
    return seconds


def _where_null(df: pd.DataFrame, column: str) -> pd.DataFrame:
    return df[df[column].isna()].drop(columns=[column])


def _build_cft(df: pd.DataFrame) -> pd.DataFrame:
    return build_rows("cft", df, {})


def _drop_rows(df: pd.DataFrame, drop: set[int]) -> pd.DataFrame:
    return df[~df["row_index"].isin(drop)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--benchdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "benchdata"))
    parser.add_argument("--work", default="/tmp/cft-ray-data-bench")
    args = parser.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    names = ["math", "math-500", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23", "theoremqa", "gpqa"]
    questions, skipped = decontam.load_benchmark_questions(names, args.benchdata)
    index = decontam.BenchmarkIndex(questions, n=13)
    index_s = time.perf_counter() - t
    print(f"benchmark index: {sum(map(len, questions.values()))} questions, {len(index.owner)} 13-grams, "
          f"{index_s:.1f} s (skipped: {list(skipped)})")
    path = make_input(args.rows, work, [qs[0] for qs in questions.values()])

    with PeakRSS() as pandas_mem:
        pandas_s = run_pandas(path, index, work)
    import ray

    from cft_ray.raycluster import connect

    connect()
    # Start the worker processes first: their start-up is a one-off per cluster, not per row.
    ray.data.range(10_000).map_batches(lambda b: b, batch_size=1000).materialize()
    with PeakRSS() as ray_mem:
        ray_s = run_ray(path, index, work, args.batch_size)

    result = {"rows": args.rows, "cpus": os.cpu_count(), "batch_size": args.batch_size, "index_seconds": round(index_s, 2),
              "steps": {}, "peak_rss_mib": {"pandas": round(pandas_mem.peak / 2**20), "ray": round(ray_mem.peak / 2**20)}}
    print(f"\n{'step':14s} {'pandas rows/s':>14s} {'ray rows/s':>12s} {'ray/pandas':>11s}")
    for step in pandas_s:
        p, r = args.rows / pandas_s[step], args.rows / ray_s[step]
        result["steps"][step] = {"pandas_rows_per_s": round(p), "ray_rows_per_s": round(r), "ratio": round(r / p, 3)}
        print(f"{step:14s} {p:14,.0f} {r:12,.0f} {r / p:10.2f}x")
    total_p, total_r = sum(pandas_s.values()), sum(ray_s.values())
    result["total"] = {"pandas_s": round(total_p, 2), "ray_s": round(total_r, 2), "ratio": round(total_p / total_r, 3)}
    print(f"{'total':14s} {args.rows / total_p:14,.0f} {args.rows / total_r:12,.0f} {total_p / total_r:10.2f}x")
    print(f"peak RSS: pandas {result['peak_rss_mib']['pandas']} MiB, ray (whole local cluster) {result['peak_rss_mib']['ray']} MiB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
