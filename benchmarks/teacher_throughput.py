"""Teacher throughput against servers that behave like real providers, beside a plain paced client.

Each server profile is the offline teacher in its own process (a real API is a separate service;
in the driver it would share the GIL with Ray Data's executor), with 50 ms latency and a limit of
``--rpm`` requests a minute. The profiles are what real providers do:

  small-burst   a token bucket with a burst of only 10 requests; 429 with Retry-After in whole seconds
  headers       a burst of one second's requests; no Retry-After, only OpenAI's x-ratelimit-* headers
  faults        small-burst, plus 10% 429 and 5% 500 injected (counting against the limit), 1% dropped
                connections, 1% malformed JSON, 0.2% hangs (cut by a 5 s client timeout)
  overstated    small-burst, with cft-ray told twice the server's real limit (the limiter must find it)

On every profile and row count two clients run over the same rows:

  cft-ray     run_teacher end to end as a user calls it (estimate, endpoint check, actor start-up,
              sending, Parquet), through a real Ray Data actor pool, told the limit (--rpm); its
              rows come from a Parquet file as the data pipeline and `cft-ray teacher` pass them
              (--input parquet), or as an in-memory Ray Dataset (--input memory)
  reference   a plain paced client (below, a few dozen lines): one asyncio loop sending at exactly
              the limit, each failure re-queued after its Retry-After (or 1 s)

Reported per run: rows ok/s over the server's limit end to end (start-up included) and while
sending (the server's first request to its last answer), requests per row, rows lost, error
bodies counted as results; and cft-ray over the reference. A last run repeats
the first cft-ray run on its cache: it must send nothing.

    python benchmarks/teacher_throughput.py [--rows 3000,20000] [--profiles small-burst,faults]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pandas as pd
import ray
import requests

from cft_ray.config import TeacherConfig
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.raycluster import connect
from cft_ray.teacher import run_teacher
from cft_ray.teacher.messages import build_messages, get_template

RESULTS = Path(__file__).parent / "results"
TIMEOUT_S = 5.0  # both clients' request timeout: what cuts a hung request
SMALL_BURST = {"burst": 10, "retry_after": "whole"}
PROFILES = {
    "small-burst": (SMALL_BURST, 1.0),
    "headers": ({"retry_after": "none", "ratelimit_headers": True}, 1.0),
    "faults": ({**SMALL_BURST, "rate_429": 0.10, "rate_500": 0.05, "rate_drop": 0.01, "rate_malformed": 0.01,
                "rate_hang": 0.002, "hang_s": 30}, 1.0),
    "overstated": (SMALL_BURST, 2.0),  # (server settings, configured limit / the server's)
}


def make_rows(n: int) -> list[dict]:
    return [{"id": f"b{i}", **r} for i, r in enumerate(arithmetic_problems(n, seed=7))]


@contextlib.contextmanager
def teacher_server(rpm: float, latency: float, settings: dict):
    """``python -m cft_ray.testing.teacher_server`` on a free loopback port; yields its /v1 base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = []
    for name, value in {"latency_s": latency, **settings}.items():
        flag = f"--{name.replace('_', '-')}"
        flags += [flag] if value is True else [f"{flag}={value}"]
    proc = subprocess.Popen([sys.executable, "-m", "cft_ray.testing.teacher_server", f"--port={port}", "--seed=1",
                             f"--requests-per-minute={rpm}", *flags])
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


# ---------------------------------------------------------------- the plain paced reference client


async def paced_client(base_url: str, rows: list[dict], per_second: float) -> list[str | None]:
    """Send every row's request at exactly ``per_second``; re-queue each failure after its
    Retry-After (1 s when the server gives none). Returns each row's critique (None: never answered)."""
    template, queue, answers = get_template("cft-critique-v1"), asyncio.Queue(), [None] * len(rows)
    for i in range(len(rows)):
        queue.put_nowait(i)
    left = len(rows)

    async def send(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal left
        body = {"model": "gpt-4o", "messages": build_messages(template, rows[i]),
                "temperature": 0.3, "top_p": 0.95, "max_tokens": 3200}
        wait = 1.0
        try:
            async with session.post(f"{base_url}/chat/completions", json=body) as reply:
                if reply.status == 200:
                    answers[i] = (await reply.json())["choices"][0]["message"]["content"]
                    left -= 1
                    return
                wait = float(reply.headers.get("Retry-After", 1.0))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
            pass
        await asyncio.sleep(wait)
        queue.put_nowait(i)

    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks, next_at = set(), time.monotonic()
        while left:
            try:
                i = await asyncio.wait_for(queue.get(), timeout=0.05)
            except asyncio.TimeoutError:
                continue
            next_at = max(next_at + 1 / per_second, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
            task = asyncio.create_task(send(session, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return answers


def reference(profile: str, rows: list[dict], args) -> dict:
    settings, _ = PROFILES[profile]
    with teacher_server(args.rpm, args.latency, settings) as base_url:
        started = time.monotonic()
        answers = asyncio.run(paced_client(base_url, rows, args.rpm / 60))
        seconds = time.monotonic() - started
        stats = server_stats(base_url)
    ok = sum(a is not None for a in answers)
    return _record(profile, "reference", len(rows), ok, seconds, stats, args,
                   error_bodies=sum(a is not None and not a.endswith("[END]") for a in answers))


# ---------------------------------------------------------------- cft-ray


def cft_ray_run(profile: str, rows: list[dict], args, work: Path, cache: Path) -> dict:
    settings, told = PROFILES[profile]
    with teacher_server(args.rpm, args.latency, settings) as base_url:
        config = TeacherConfig(base_url=base_url, model="gpt-4o", requests_per_minute=args.rpm * told,
                               tokens_per_minute=1e9, request_timeout_s=TIMEOUT_S, cache_dir=str(cache))
        run_dir = work / f"{profile}-{len(rows)}-{random.random()}"
        if args.input == "parquet":
            run_dir.mkdir(parents=True)
            pd.DataFrame(rows).to_parquet(run_dir / "rows.parquet")
        started = time.monotonic()
        source = str(run_dir / "rows.parquet") if args.input == "parquet" else ray.data.from_items(rows)
        summary = run_teacher(run_dir, rows=source, teacher=config)
        seconds = time.monotonic() - started
        stats = server_stats(base_url)
    df = pd.read_parquet(summary.output_path)
    ok = df[df["status"] == "ok"]
    return _record(profile, "cft-ray", len(rows), len(ok), seconds, stats, args,
                   error_bodies=int((~ok["critique"].str.endswith("[END]")).sum()),
                   lost=len(rows) - len(set(df["id"])), errors=summary.error, cached=summary.cached,
                   first_request_s=summary.first_request_s,
                   errors_by_class=summary.errors_by_class)


def _record(profile: str, client: str, n: int, ok: int, seconds: float, stats: dict, args, **extra) -> dict:
    limit = args.rpm / 60
    return {"profile": profile, "client": client, "rows": n, "ok": ok, "seconds": round(seconds, 2),
            "ratio_end_to_end": ok / seconds / limit, "server_busy_s": round(stats["busy_s"], 2),
            "ratio_while_sending": ok / stats["busy_s"] / limit if stats["busy_s"] else 0.0,
            "requests": stats["request_count"],
            "requests_per_row": stats["request_count"] / n, "server_429_over_limit": stats["rejected_count"],
            **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="3000,20000", help="comma-separated row counts")
    p.add_argument("--profiles", default=",".join(PROFILES), help=f"comma-separated, of {', '.join(PROFILES)}")
    p.add_argument("--input", choices=("parquet", "memory"), default="parquet",
                   help="cft-ray's rows: a Parquet file (as the pipeline passes them) or ray.data.from_items")
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--rpm", type=float, default=6000, help="the server's limit")
    p.add_argument("--out", default=str(RESULTS / "teacher_throughput.json"))
    args = p.parse_args()
    connect()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in [int(x) for x in args.rows.split(",")]:
            rows = make_rows(n)
            for profile in args.profiles.split(","):
                for run in (reference(profile, rows, args),
                            cft_ray_run(profile, rows, args, work, work / f"cache-{profile}-{n}")):
                    runs.append(run)
                    _print(run)
        first = runs[1]
        cached = cft_ray_run(first["profile"], make_rows(first["rows"]), args, work,
                             work / f"cache-{first['profile']}-{first['rows']}")
        cached["client"] = "cft-ray, cached rerun"
        _print(cached)
    ratios = {f"{r['profile']} {r['rows']}: cft-ray / reference": r["ratio_end_to_end"] / ref["ratio_end_to_end"]
              for r, ref in zip(runs[1::2], runs[0::2])}
    ratios["cached rerun: requests to the server"] = cached["requests"]
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    # The box's load tells whether the numbers measure the code or a crowded machine.
    machine = {"cpus": os.cpu_count(), "load_average_1m_at_end": os.getloadavg()[0]}
    print(f"machine: {machine}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "profiles": {k: v[0] for k, v in PROFILES.items()},
                                          "machine": machine, "runs": [*runs, cached], "ratios": ratios}, indent=2))
    _plot(runs, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


def _print(r: dict) -> None:
    print(f"{r['profile']:12s} {r['rows']:>6} {r['client']:22s} ok {r['ok']:>6}  {r['seconds']:>7.1f} s  "
          f"ok/s / limit {r['ratio_end_to_end']:.3f} (while sending {r['ratio_while_sending']:.3f})  requests/row {r['requests_per_row']:.3f}  "
          f"429 over limit {r['server_429_over_limit']}  error bodies {r.get('error_bodies')}  "
          f"lost {r.get('lost', '-')}  errors {r.get('errors_by_class', '-')}  "
          f"first request after {r.get('first_request_s') or 0:.1f} s", flush=True)


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(zip(runs[0::2], runs[1::2]))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(pairs)), 3.8))
    x = range(len(pairs))
    ax.bar([i - 0.2 for i in x], [ref["ratio_end_to_end"] for ref, _ in pairs], 0.4, label="paced reference")
    ax.bar([i + 0.2 for i in x], [ours["ratio_end_to_end"] for _, ours in pairs], 0.4, label="cft-ray")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks(list(x), [f"{ref['profile']}\n{ref['rows']} rows" for ref, _ in pairs], fontsize=8)
    ax.set_ylabel("rows ok/s ÷ server limit (end to end)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
