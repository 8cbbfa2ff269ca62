"""Teacher throughput against a rate-limited server: cft-ray's actor pool vs Ray Data's HTTP processor.

The offline teacher runs in its own process (as a real API is a separate service: in the driver it
would share the GIL with Ray Data's executor and stall), with 50 ms latency and its own limit
(default 6,000 requests/min, 429 with Retry-After above it). Four runs over the same rows, each
through a real Ray Data actor pool:

  clean      run_teacher, fresh cache: rows/s as a fraction of the limit (goal >= 0.97, no row lost)
  faults     10% 429 + 5% 500 injected (they count against the limit; ceiling ~0.85; goal >= 0.80)
  cached     the clean run again: zero requests may reach the server
  baseline   ray.data.llm.HttpRequestProcessorConfig, same server, rows and actor count

Two rates per run: end to end (run_teacher's pipeline incl. actor start-up, what a user waits
for) and the server's busy window (first request to last answer: the steady-state rate).

    python benchmarks/teacher_throughput.py [--rows 3000] [--actors 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import requests

from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.raycluster import connect
from cft_ray.teacher import run_teacher
from cft_ray.config import TeacherConfig
from cft_ray.teacher.messages import build_messages, get_template

RESULTS = Path(__file__).parent / "results"


def rows(n: int) -> ray.data.Dataset:
    return ray.data.from_items([{"id": f"b{i}", **r} for i, r in enumerate(arithmetic_problems(n, seed=7))])


@contextlib.contextmanager
def teacher_server(args, **faults: float):
    """``python -m cft_ray.testing.teacher_server`` on a free loopback port; yields its /v1 base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {"latency_s": args.latency, **faults}.items()]
    proc = subprocess.Popen([sys.executable, "-m", "cft_ray.testing.teacher_server", f"--port={port}", "--seed=1",
                             f"--requests-per-minute={args.rpm}", *flags])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/v1/models", timeout=5).ok:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the offline teacher did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def server_stats(base_url: str) -> dict:
    return requests.get(base_url.removesuffix("/v1") + "/stats", timeout=10).json()


def ours(name: str, args, work: Path, cache: Path, **faults) -> dict:
    limit = args.rpm / 60
    with teacher_server(args, **faults) as base_url:
        config = TeacherConfig(base_url=base_url, model="gpt-4o", requests_per_minute=args.rpm,
                               tokens_per_minute=1e9, num_actors=args.actors, batch_size=args.batch_size,
                               max_concurrency=64, max_attempts=10, cache_dir=str(cache))
        summary = run_teacher(work / name, rows=rows(args.rows), teacher=config)
        stats = server_stats(base_url)
    df = pd.read_parquet(summary.output_path)
    ok = df[df["status"] == "ok"]
    return {
        "run": name, "rows": summary.rows, "ok": summary.ok, "error": summary.error, "cached": summary.cached,
        "lost": args.rows - len(set(df["id"])),
        "error_bodies_as_results": int((~ok["critique"].str.endswith("[END]")).sum()),
        "seconds": summary.seconds, "rows_per_s": summary.rows_per_s,
        "ratio_end_to_end": summary.rows_per_s / limit,
        "server_busy_s": stats["busy_s"],
        "ratio_steady": (summary.ok - summary.cached) / stats["busy_s"] / limit if stats["busy_s"] else None,
        "server_requests": stats["request_count"], "server_429_over_limit": stats["rejected_count"],
    }


def baseline(args) -> dict:
    """Ray Data's own HTTP processor, paced per actor to the same limit."""
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    template, limit = get_template("cft-critique-v1"), args.rpm / 60
    with teacher_server(args) as base_url:
        processor = build_processor(
            HttpRequestProcessorConfig(
                url=f"{base_url}/chat/completions", headers={"Authorization": "Bearer EMPTY"},
                batch_size=args.batch_size, concurrency=args.actors, qps=int(limit / args.actors), max_retries=5,
            ),
            preprocess=lambda row: {"payload": {"model": "gpt-4o", "messages": build_messages(template, row),
                                                "temperature": 0.3, "top_p": 0.95, "max_tokens": 3200}},
            postprocess=lambda row: {"id": row["id"],
                                     "critique": row["http_response"]["choices"][0]["message"]["content"]},
        )
        started = time.monotonic()
        try:
            out = processor(rows(args.rows)).to_pandas()
            done, failure = len(out), None
        except Exception as exc:  # it fails the whole dataset when a row's retries run out
            done, failure = 0, f"{type(exc).__name__}: {str(exc)[:200]}"
        seconds = time.monotonic() - started
        stats = server_stats(base_url)
    return {"run": "baseline: ray.data.llm HttpRequestProcessorConfig", "rows": args.rows, "ok": done,
            "error": args.rows - done, "failure": failure, "seconds": seconds, "rows_per_s": done / seconds,
            "ratio_end_to_end": done / seconds / limit, "server_busy_s": stats["busy_s"],
            "ratio_steady": done / stats["busy_s"] / limit if stats["busy_s"] else None,
            "server_requests": stats["request_count"], "server_429_over_limit": stats["rejected_count"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--actors", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--rpm", type=float, default=6000)
    p.add_argument("--out", default=str(RESULTS / "teacher_throughput.json"))
    args = p.parse_args()
    connect()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clean = ours("clean", args, work, work / "cache-clean")
        faults = ours("faults (10% 429, 5% 500)", args, work, work / "cache-faults", rate_429=0.10, rate_500=0.05)
        cached = ours("cached rerun", args, work, work / "cache-clean")
        base = baseline(args)
    runs = [clean, faults, cached, base]
    ratios = {
        "faults_time_over_clean": faults["seconds"] / clean["seconds"],
        "cached_requests_to_server": cached["server_requests"],
        "clean_over_baseline_end_to_end": clean["rows_per_s"] / base["rows_per_s"] if base["rows_per_s"] else None,
        "clean_over_baseline_steady": (clean["ratio_steady"] / base["ratio_steady"]) if base["ratio_steady"] else None,
    }
    print(f"\n{'run':52s} {'rows':>6} {'ok':>6} {'err':>5} {'cached':>6} {'s':>7} {'rows/s':>7} "
          f"{'e2e/limit':>9} {'steady/limit':>12} {'requests':>8}")
    for r in runs:
        steady = f"{r['ratio_steady']:.3f}" if r.get("ratio_steady") is not None else "-"
        print(f"{r['run']:52s} {r['rows']:>6} {r['ok']:>6} {r['error']:>5} {r.get('cached', 0):>6} "
              f"{r['seconds']:>7.1f} {r['rows_per_s']:>7.1f} {r['ratio_end_to_end']:>9.3f} {steady:>12} "
              f"{r['server_requests']:>8}")
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # The box's load tells whether the numbers measure the code or a crowded machine.
    machine = {"cpus": os.cpu_count(), "load_average_1m_at_end": os.getloadavg()[0]}
    print(f"machine: {machine}")
    Path(args.out).write_text(json.dumps({"settings": vars(args), "machine": machine, "runs": runs,
                                          "ratios": ratios}, indent=2))
    _plot(runs, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in runs if not r["run"].startswith("cached")]
    labels = [r["run"].split(":")[0] for r in shown]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(len(shown))
    ax.bar([i - 0.2 for i in x], [r["ratio_end_to_end"] for r in shown], 0.4, label="end to end")
    ax.bar([i + 0.2 for i in x], [r["ratio_steady"] or 0 for r in shown], 0.4, label="steady (server window)")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("rows/s ÷ server limit")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
