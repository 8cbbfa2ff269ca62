"""``run_teacher``: critiques (or answers) for every row, on a Ray Data actor pool.

Order of work: resolve the key (env or file) and check it with one ``GET /models`` so a bad key
is one clear error; stream the rows through :class:`TeacherWorker` actors sharing one
:class:`SharedLimiter`; write Parquet; summarise from what was written. The estimate of tokens and
dollars (and of what the cache already holds) is printed before any call in dry-run and Batch
mode, and beside the sending otherwise (the limiter holds the budget either way).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.dataset import MaterializedDataset

from cft_ray.config import ConfigError, TeacherConfig
from cft_ray.stages import BatchSummary, Estimate, TeacherSummary
from cft_ray.storage import as_uri
from cft_ray.teacher.cache import ResponseCache, request_key, url_family
from cft_ray.teacher.batch import run_batches
from cft_ray.teacher.client import (Endpoint, Secret, TeacherAuthError, TeacherWorker, check_row, estimate_tokens,
                                    scrub)
from cft_ray.teacher.limiter import SharedLimiter
from cft_ray.teacher.messages import build_messages, get_template

log = logging.getLogger("cft_ray.teacher")
ROWS_PER_FILE = 20_000


def resolve_api_key(config: TeacherConfig, base_url: str) -> Secret:
    """The key from ``api_key_file`` or ``$api_key_env``; loopback servers may need none."""
    if config.api_key_file:
        path = Path(config.api_key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"teacher.api_key_file {path} does not exist")
        return Secret(path.read_text().strip())
    if os.environ.get(config.api_key_env):
        return Secret(os.environ[config.api_key_env])
    if url_family(base_url) == "loopback":
        return Secret("EMPTY")
    raise ConfigError(f"no API key for {base_url}: export {config.api_key_env}, or set teacher.api_key_file")


def check_endpoint(base_url: str, key: Secret, timeout_s: float = 30.0) -> None:
    """One ``GET /models``: a refused key stops here, with one message and nothing sent."""
    client = openai.OpenAI(base_url=base_url, api_key=key.reveal(), max_retries=2, timeout=timeout_s)
    try:
        client.models.list()
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise TeacherAuthError(
            f"the teacher at {base_url} refused the API key (HTTP {exc.status_code}); nothing was sent. "
            f"Check the key's value and its access to the model."
        ) from None
    except openai.APIConnectionError as exc:
        raise ConfigError(f"cannot reach the teacher at {base_url}: {scrub(str(exc), key)}") from None
    except openai.APIStatusError as exc:  # some gateways have no /models; the calls will tell
        log.warning("teacher: GET /models answered %s; going on", exc.status_code)
    finally:
        client.close()


def read_rows(rows: ray.data.Dataset | str | Path) -> ray.data.Dataset:
    if isinstance(rows, ray.data.Dataset):
        return rows
    path = str(rows)
    if path.endswith((".jsonl", ".json")):
        return ray.data.read_json(path)
    # Ray's DataSourceV2 Parquet read (its default since 2.60) adds a ListFiles task stage to each
    # of the run's two passes; on 2 cores its workers' start-up delayed the first request from
    # 6.2 s to 10.6 s (benchmarks/teacher_throughput.py, 3,000 rows). The V1 read has none.
    context = ray.data.DataContext.get_current()
    use_v2, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        return ray.data.read_parquet(path)
    finally:
        context.use_datasource_v2 = use_v2


def _estimate_batch(batch: pd.DataFrame, config: TeacherConfig, endpoint: Endpoint, as_of: float) -> pd.DataFrame:
    template, cache = get_template(endpoint.template), ResponseCache(endpoint.cache_uri)
    est = {"rows": len(batch), "bad": 0, "cached": 0, "to_send": 0, "prompt_tokens": 0}
    for row in batch.to_dict("records"):
        if check_row(row, template, config):
            est["bad"] += 1
            continue
        messages = build_messages(template, row)
        stored = cache.stored_at(request_key(endpoint.base_url, config.model, messages, config.sampling))
        if stored is not None and stored < as_of:
            est["cached"] += 1
        else:
            est["to_send"] += 1
            est["prompt_tokens"] += estimate_tokens(messages)
    return pd.DataFrame([est])


def estimate(ds: ray.data.Dataset, config: TeacherConfig, endpoint: Endpoint, as_of: float) -> Estimate:
    """Tokens and dollars of what the cache did not hold at ``as_of`` (wall clock; one pass, no
    calls): a pass that runs beside the sending still describes the run as it started."""
    parts = ds.map_batches(_estimate_batch, fn_kwargs={"config": config, "endpoint": endpoint, "as_of": as_of},
                           batch_format="pandas", batch_size=1024).to_pandas()
    totals = {k: int(parts[k].sum()) for k in ("rows", "bad", "cached", "to_send", "prompt_tokens")}
    completion = totals["to_send"] * config.est_completion_tokens
    p_price, c_price = config.price_per_token
    return Estimate(**totals, completion_tokens=completion,
                    dollars=totals["prompt_tokens"] * p_price + completion * c_price)


def _references(ds: ray.data.Dataset) -> dict[str, str]:
    """question -> reference_answer, for the offline teacher (smoke-sized data only)."""
    if "reference_answer" not in ds.columns() or "question" not in ds.columns():
        return {}
    rows = ds.select_columns(["question", "reference_answer"]).take_all()
    return {str(r["question"]).strip(): str(r["reference_answer"]) for r in rows
            if isinstance(r["question"], str) and r["reference_answer"] is not None}


def run_teacher(
    output_dir: str | Path,
    *,
    rows: ray.data.Dataset | str | Path,
    teacher: TeacherConfig,
    template: str | None = None,
    dry_run: bool = False,
) -> TeacherSummary:
    """Critique every row (``template`` defaults to ``teacher.prompt``); see the module doc.
    With no ``teacher.base_url`` the offline teacher answers, on loopback."""
    template = template or teacher.prompt
    get_template(template)  # unknown names fail before any work
    ds = read_rows(rows)
    output_dir = str(output_dir)
    cache_uri = teacher.cache_dir or f"{output_dir.rstrip('/')}/teacher-cache"
    if teacher.prices_per_million.get(teacher.model) is None:
        log.warning("teacher: no price for %s in teacher.prices_per_million; costs count as $0", teacher.model)
    if teacher.base_url is not None:
        return _run(ds, teacher, output_dir, Endpoint(teacher.base_url, template, cache_uri), dry_run)
    from cft_ray.testing.teacher_server import OfflineTeacherServer  # the smoke run's stand-in for a paid API

    with OfflineTeacherServer(model=teacher.model, references=_references(ds)) as server:
        return _run(ds, teacher, output_dir, Endpoint(server.base_url, template, cache_uri), dry_run)


def _run(ds, config: TeacherConfig, output_dir: str, endpoint: Endpoint, dry_run: bool) -> TeacherSummary:
    key = resolve_api_key(config, endpoint.base_url)
    where = f"teacher {config.model} at {url_family(endpoint.base_url)} ({endpoint.template})"

    started, started_wall = time.monotonic(), time.time()

    def estimate_and_print() -> Estimate:
        est = estimate(ds, config, endpoint, as_of=started_wall)
        print(f"{where}: {est.line()}", flush=True)
        return est

    if dry_run:
        est = estimate_and_print()
        return TeacherSummary(rows=est.rows, estimate=est)
    est: Estimate | None = None
    try:
        check_endpoint(endpoint.base_url, key)
    except TeacherAuthError:
        raise
    except ConfigError:
        est = estimate_and_print()
        if est.to_send:
            raise
        log.warning("teacher: the endpoint is unreachable, but the cache holds every answer")
    batch = None
    if config.mode == "batch":
        est = est or estimate_and_print()
        if est.to_send:
            # The batches' answers land in the cache; the online pass below then writes every
            # row and sends only what the batches failed.
            batch = run_batches(ds, config, endpoint, key)
    limiter = SharedLimiter.remote(config.requests_per_minute, config.tokens_per_minute, config.budget_usd)
    sending_done = threading.Event()
    with ThreadPoolExecutor(1) as background:
        # The estimate is a pass over every row that nothing above needed first: it waits for the
        # first request, so that its tasks do not compete with the actors' start-up (seconds on a
        # small machine); the limiter holds the budget either way.
        pending = None if est else background.submit(
            lambda: _after_first_request(limiter, sending_done) or estimate_and_print())
        try:
            out = _send(ds, config, output_dir, endpoint, key, limiter)
        finally:
            sending_done.set()
        est = est or pending.result()
    seconds = time.monotonic() - started
    pacing = ray.get(limiter.snapshot.remote())
    ray.kill(limiter)
    fs, path = pafs.FileSystem.from_uri(as_uri(out))
    stop_reason = pacing["stop_reason"]

    summary = summarize(out, seconds, est, batch)
    first = pacing["first_send_at"]
    summary = summary.model_copy(update={"requests": pacing["sent"], "refused_429": pacing["rejected"],
                                         "first_request_s": None if first is None else first - started_wall})
    print(summary.table(), flush=True)
    if stop_reason:
        log.error("teacher: stopped early: %s", stop_reason)
    with fs.open_output_stream(f"{path.rsplit('/', 1)[0]}/teacher-summary.json") as f:
        f.write(summary.model_dump_json(indent=2).encode())
    return summary


def _after_first_request(limiter: ray.actor.ActorHandle, sending_done: threading.Event) -> None:
    """Returns once the limiter let the first request go, or the sending ended without one."""
    while not sending_done.wait(0.2):
        if ray.get(limiter.snapshot.remote())["first_send_at"] is not None:
            return


def _send(ds, config: TeacherConfig, output_dir: str, endpoint: Endpoint, key: Secret,
          limiter: ray.actor.ActorHandle) -> str:
    """Every row through the actor pool into ``<output_dir>/critiques``; returns that path."""
    # A batch finishes with its slowest row (a retry can take seconds), so each actor works on
    # several batches at once: at least 4, so that while some wait out a Retry-After or a timeout
    # in their last rows the others keep the actor's share of the rate in use.
    batches_per_actor = max(4, math.ceil(4 * config.max_concurrency / config.batch_size))
    results = _blocks_of_at_most(ds, config.batch_size).map_batches(
        TeacherWorker,
        fn_constructor_kwargs={"config": config, "endpoint": endpoint, "api_key": key, "limiter": limiter},
        compute=ray.data.ActorPoolStrategy(size=config.num_actors, max_concurrent_calls_per_actor=batches_per_actor,
                                           max_tasks_in_flight_per_actor=2 * batches_per_actor),
        batch_size=config.batch_size, batch_format="pandas", num_cpus=config.actor_num_cpus,
    )
    out = f"{output_dir.rstrip('/')}/critiques"
    fs, path = pafs.FileSystem.from_uri(as_uri(out))
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)  # a rerun replaces the output; the cache keeps the answers
    # Files of many batches each: a write task per batch costs more than the batch's requests.
    results.write_parquet(out, min_rows_per_file=ROWS_PER_FILE)
    return out


def _blocks_of_at_most(ds: ray.data.Dataset, rows: int) -> ray.data.Dataset:
    """Blocks of at most one batch, so that every actor of the pool gets work from the first rows
    on (one big block would go to one actor). Rows already in memory in blocks that small (the
    object store knows their sizes) skip the repartition: its tasks would only compete with the
    actors' start-up."""
    if isinstance(ds, MaterializedDataset):
        sizes = [bundle.num_rows() for bundle in ds.iter_internal_ref_bundles()]
        if all(n is not None and n <= rows for n in sizes):
            return ds
    return ds.repartition(target_num_rows_per_block=rows)


def summarize(output_path: str, seconds: float, est: Estimate | None = None,
              batch: BatchSummary | None = None) -> TeacherSummary:
    """Counts, tokens and dollars from the written Parquet (the record of what happened)."""
    fs, path = pafs.FileSystem.from_uri(as_uri(output_path))
    columns = ["status", "error", "cached", "prompt_tokens", "completion_tokens", "cost_usd"]
    df = pq.read_table(path, filesystem=fs, columns=columns).to_pandas()
    fresh = df[~df["cached"].astype(bool)]
    kinds = df.loc[df["status"] == "error", "error"].str.split(":", n=1).str[0].value_counts()
    return TeacherSummary(
        rows=len(df), ok=int((df["status"] == "ok").sum()), error=int((df["status"] == "error").sum()),
        cached=int(df["cached"].astype(bool).sum()), prompt_tokens=int(fresh["prompt_tokens"].sum()),
        completion_tokens=int(fresh["completion_tokens"].sum()), dollars=float(fresh["cost_usd"].sum()) + (batch.dollars if batch else 0.0),
        seconds=seconds, rows_per_s=len(df) / seconds if seconds else 0.0,
        errors_by_class={str(k): int(v) for k, v in kinds.items()}, estimate=est, batch=batch,
        output_path=output_path,
    )

