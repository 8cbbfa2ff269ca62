"""``teacher.mode: batch``: the requests the cache lacks go through OpenAI's Batch API (half price),
their answers land in the response cache, and the online pass that follows sends only what the
batches failed.

Flow: resume the batches an earlier run left open; stream the rows (template fields only), build
each valid row's request exactly as the online path would and skip those cached, in flight or
seen already (the request key is the ``custom_id``); cut the rest into batches of at most
``batch_max_requests`` lines and ``batch_max_bytes`` bytes, each uploaded and created as soon as
it is full (one batch's JSONL in memory at a time); poll every ``batch_poll_s`` seconds; collect
each batch as it ends. Collecting caches every 200 reply in the online path's record format,
priced at ``batch_price_factor`` of the online price; truncated (``finish_reason=length``) or
empty replies are paid for but not cached, like failed, expired and cancelled lines: the online
pass retries them under its own rules.

Paying once. A batch costs money from its ``create`` on, so a killed driver must find it again.
Each batch has a manifest, ``<cache_uri>/batches/<name>.json`` (any pyarrow filesystem, written
to a temporary name and moved into place like the cache's entries), holding the input file id,
the endpoint family, the ``custom_ids`` and, once known, the batch id::

    upload file -> manifest (pending: no batch_id) -> batches.create -> manifest (batch_id) -> poll
    -> cache every answer -> manifest marked collected -> moved to batches/collected/

A rerun reads the open manifests first. Their ``custom_ids`` are in flight: they are not sent
again, and the batches are polled and collected (``resumed``). A pending manifest means the
driver died around ``create``: the batch, if the create reached OpenAI, is the one whose
``input_file_id`` is the manifest's (looked up with ``batches.list``; its metadata names the
manifest too), else the manifest is dropped and its requests batched anew. A batch the endpoint
no longer knows (404: a restarted local server) is dropped the same way. A manifest marked
collected but not yet moved is just moved: collecting twice would only rewrite the same entries.
A kill between upload and the pending manifest leaves an unused file in the account, which costs
nothing; uploaded files are never deleted here.
"""

from __future__ import annotations

import collections
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pyarrow.fs as pafs
import pydantic
import ray
from openai.types import Batch
from openai.types.chat import ChatCompletion

from cft_ray.config import ConfigError, TeacherConfig
from cft_ray.stages import BatchSummary
from cft_ray.storage import as_uri
from cft_ray.teacher.cache import ResponseCache, request_key, url_family
from cft_ray.teacher.client import Endpoint, Secret, TeacherAuthError, check_row, classify, reply_record, scrub
from cft_ray.teacher.messages import build_messages, get_template

log = logging.getLogger("cft_ray.teacher")

CHAT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
# Look this far back in batches.list for a batch created before its manifest recorded it
# (clock skew between this machine and the API's).
LOOKBACK_S = 24 * 3600
PUT_THREADS = 16  # cache writes of a collected batch (object stores answer each in milliseconds)


class Manifests:
    """The batch manifests under ``<cache_uri>/batches``: open ones on top, collected ones below."""

    def __init__(self, cache_uri: str):
        self.fs, root = pafs.FileSystem.from_uri(as_uri(cache_uri))
        self.root = f"{root}/batches"
        self._made = False

    def _path(self, manifest: dict, folder: str = "") -> str:
        return f"{self.root}{folder}/{manifest['name']}.json"

    def _ensure_folders(self) -> None:
        if not self._made:
            self.fs.create_dir(f"{self.root}/collected", recursive=True)
            self._made = True

    def write(self, manifest: dict) -> None:
        self._ensure_folders()
        tmp = f"{self.root}/.tmp-{manifest['name']}-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(json.dumps(manifest).encode())
        self.fs.move(tmp, self._path(manifest))

    def open(self) -> list[dict]:
        """The manifests of batches not collected yet (finishing the move of collected ones)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root))
        except FileNotFoundError:
            return []
        found = []
        for info in infos:
            name = info.base_name
            if info.type != pafs.FileType.File or not name.endswith(".json") or name.startswith("."):
                continue
            with self.fs.open_input_stream(info.path) as f:
                manifest = json.loads(f.read())
            if manifest.get("collected"):
                self.close(manifest)
            else:
                found.append(manifest)
        return found

    def collected(self, manifest: dict, outcome: dict) -> None:
        """Mark collected (every answer is cached by now), then move it out of the open ones."""
        manifest["collected"] = outcome
        self.write(manifest)
        self.close(manifest)

    def close(self, manifest: dict) -> None:
        self._ensure_folders()
        self.fs.move(self._path(manifest), self._path(manifest, "/collected"))

    def drop(self, manifest: dict) -> None:
        self.fs.delete_file(self._path(manifest))


def run_batches(ds: ray.data.Dataset, config: TeacherConfig, endpoint: Endpoint, api_key: Secret) -> BatchSummary:
    """Send what the cache lacks as batches, wait for them, cache their answers; see the module doc."""
    client = openai.OpenAI(base_url=endpoint.base_url, api_key=api_key.reveal(), max_retries=5,
                           timeout=config.request_timeout_s)
    try:
        return _BatchRun(client, config, endpoint).run(ds)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise TeacherAuthError(
            f"the teacher at {endpoint.base_url} refused the API key for the Batch API (HTTP {exc.status_code}); "
            f"batches already created are recorded under {endpoint.cache_uri}/batches and resume on a rerun"
        ) from None
    except openai.NotFoundError as exc:
        if exc.request.url.path.endswith("/files"):
            raise ConfigError(f"the teacher at {endpoint.base_url} has no Batch API (POST /files answered 404); "
                              f"use teacher.mode: online") from None
        raise ConfigError(f"the Batch API at {endpoint.base_url}: {scrub(str(exc), api_key)}") from None
    finally:
        client.close()


class _BatchRun:
    """One ``run_batches`` call: the batches it waits for and what they brought."""

    def __init__(self, client: openai.OpenAI, config: TeacherConfig, endpoint: Endpoint):
        self.client, self.config, self.endpoint = client, config, endpoint
        self.family = url_family(endpoint.base_url)
        self.cache = ResponseCache(endpoint.cache_uri)
        self.manifests = Manifests(endpoint.cache_uri)
        self.waiting: dict[str, tuple[dict, Batch]] = {}  # batch id -> (manifest, latest state)
        self.summary = BatchSummary()

    def run(self, ds: ray.data.Dataset) -> BatchSummary:
        started = time.monotonic()
        in_flight = self.resume()
        self.submit_missing(ds, in_flight)
        self.wait()
        s = self.summary
        s.seconds = time.monotonic() - started
        print(f"batches: {len(s.batch_ids)} ({s.resumed} resumed), {s.requests} requests: {s.ok} ok, "
              f"{s.failed} left to the online pass, ${s.dollars:.4f}, {s.seconds:.0f} s", flush=True)
        return s

    # ---- resume ----------------------------------------------------------------------------
    def resume(self) -> set[str]:
        """Take up the batches earlier runs left open (this endpoint's); their custom_ids."""
        mine = [m for m in self.manifests.open() if m["endpoint"] == self.family]
        pending = {m["input_file_id"]: m for m in mine if not m.get("batch_id")}
        if pending:
            self._find_created(pending)
        in_flight: set[str] = set()
        for manifest in mine:
            if not manifest.get("batch_id"):
                continue
            try:
                batch = self.client.batches.retrieve(manifest["batch_id"])
            except openai.NotFoundError:
                log.warning("teacher: batch %s of %s is unknown to %s; its requests are sent anew",
                            manifest["batch_id"], manifest["name"], self.endpoint.base_url)
                self.manifests.drop(manifest)
                continue
            print(f"batch {batch.id}: resumed ({len(manifest['custom_ids'])} requests, {batch.status})", flush=True)
            self._track(manifest, batch)
            self.summary.resumed += 1
            in_flight.update(manifest["custom_ids"])
        return in_flight

    def _find_created(self, pending: dict[str, dict]) -> None:
        """Pending manifests' batches, created by a driver that died before recording them."""
        oldest = min(m["written_at"] for m in pending.values())
        for batch in self.client.batches.list(limit=100):  # newest first, every page
            if batch.input_file_id in pending:
                manifest = pending.pop(batch.input_file_id)
                manifest.update(batch_id=batch.id, created_at=batch.created_at)
                self.manifests.write(manifest)
            if not pending or batch.created_at < oldest - LOOKBACK_S:
                break
        for manifest in pending.values():  # the create never reached the API: nothing to pay for
            log.info("teacher: %s was never created as a batch; its requests are sent anew", manifest["name"])
            self.manifests.drop(manifest)

    # ---- submit ----------------------------------------------------------------------------
    def submit_missing(self, ds: ray.data.Dataset, in_flight: set[str]) -> None:
        """Batch every valid row's request that is neither cached, in flight, nor seen already."""
        c, template = self.config, get_template(self.endpoint.template)
        if not set(template.fields) <= set(ds.columns()):
            return  # every row is a BadRow, which the online pass records
        skip = set(self.cache.keys()) | in_flight  # one listing: far cheaper than a get per row
        lines: list[bytes] = []
        ids: list[str] = []
        size = 0
        for frame in ds.select_columns(list(template.fields)).iter_batches(batch_format="pandas", batch_size=1024):
            for row in frame.to_dict("records"):
                if check_row(row, template, c):
                    continue
                messages = build_messages(template, row)
                key = request_key(self.endpoint.base_url, c.model, messages, c.sampling)
                if key in skip:
                    continue
                skip.add(key)
                body = {"model": c.model, "messages": messages, **c.sampling}  # what the online path sends
                line = (json.dumps({"custom_id": key, "method": "POST", "url": CHAT, "body": body},
                                   ensure_ascii=False) + "\n").encode()
                if len(line) > c.batch_max_bytes:
                    log.warning("teacher: a %d-byte request exceeds teacher.batch_max_bytes; sent online", len(line))
                    continue
                if ids and (len(ids) >= c.batch_max_requests or size + len(line) > c.batch_max_bytes):
                    self._create(lines, ids)
                    lines, ids, size = [], [], 0
                lines.append(line)
                ids.append(key)
                size += len(line)
        if ids:
            self._create(lines, ids)

    def _create(self, lines: list[bytes], ids: list[str]) -> None:
        name = uuid.uuid4().hex
        data = b"".join(lines)
        file = self.client.files.create(file=(f"cft-ray-{name}.jsonl", data), purpose="batch")
        manifest = {"name": name, "endpoint": self.family, "model": self.config.model, "input_file_id": file.id,
                    "batch_id": None, "created_at": None, "written_at": int(time.time()), "custom_ids": ids}
        self.manifests.write(manifest)  # pending: a rerun finds the batch by its input file
        batch = self.client.batches.create(input_file_id=file.id, endpoint=CHAT,
                                           completion_window=self.config.batch_completion_window,
                                           metadata={"cft_ray_manifest": name})
        manifest.update(batch_id=batch.id, created_at=batch.created_at)
        self.manifests.write(manifest)
        print(f"batch {batch.id}: created, {len(ids)} requests, {len(data) / 1e6:.1f} MB", flush=True)
        self._track(manifest, batch)

    def _track(self, manifest: dict, batch: Batch) -> None:
        self.waiting[batch.id] = (manifest, batch)
        self.summary.batch_ids.append(batch.id)
        self.summary.requests += len(manifest["custom_ids"])

    # ---- wait and collect ------------------------------------------------------------------
    def wait(self) -> None:
        """Poll until every batch has ended, collecting each as soon as it has."""
        while True:
            for batch_id, (manifest, batch) in list(self.waiting.items()):
                if batch.status in TERMINAL:
                    self._collect(manifest, batch)
                    del self.waiting[batch_id]
                else:
                    counts = batch.request_counts
                    done = f"{counts.completed}/{counts.total} done, {counts.failed} failed" if counts else ""
                    print(f"batch {batch_id}: {batch.status} {done}", flush=True)
            if not self.waiting:
                return
            time.sleep(self.config.batch_poll_s)
            for batch_id, (manifest, batch) in self.waiting.items():
                self.waiting[batch_id] = (manifest, self._poll(batch))

    def _poll(self, batch: Batch) -> Batch:
        """The batch's state now; a transient failure keeps the last one (the next poll retries)."""
        try:
            return self.client.batches.retrieve(batch.id)
        except openai.APIError as exc:
            if not classify(exc)[1]:
                raise
            log.warning("teacher: polling batch %s failed (%s); trying again", batch.id, classify(exc)[0])
            return batch

    def _collect(self, manifest: dict, batch: Batch) -> None:
        expected = set(manifest["custom_ids"])
        records: dict[str, dict] = {}
        reasons: collections.Counter[str] = collections.Counter()
        dollars = 0.0
        for item in self._lines(batch.output_file_id):
            key, response = item.get("custom_id"), item.get("response") or {}
            if key not in expected or key in records or response.get("status_code") != 200:
                continue
            record = self._record(response.get("body"))
            if record is None:
                reasons["MalformedResponse"] += 1
                continue
            dollars += record["cost_usd"]  # a truncated reply is billed too
            if not record["content"]:
                reasons["EmptyReply"] += 1
            elif record["finish_reason"] == "length":
                reasons["LengthLimit"] += 1
            else:
                records[key] = record
        for item in self._lines(batch.error_file_id):
            error, response = item.get("error") or {}, item.get("response") or {}
            reasons[error.get("code") or f"HTTP {response.get('status_code')}"] += 1
        with ThreadPoolExecutor(PUT_THREADS) as pool:
            list(pool.map(lambda kv: self.cache.put(*kv), records.items()))
        failed = len(expected) - len(records)
        if batch.errors and batch.errors.data:
            reasons.update(e.code or "invalid_batch" for e in batch.errors.data)
            log.error("teacher: batch %s failed validation: %s", batch.id,
                      "; ".join(f"line {e.line}: {e.message}" for e in batch.errors.data[:5]))
        why = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        print(f"batch {batch.id}: {batch.status}, {len(records)} cached, {failed} failed"
              f"{f' ({why})' if why else ''}", flush=True)
        self.manifests.collected(manifest, {"status": batch.status, "ok": len(records), "failed": failed,
                                            "dollars": dollars, "at": int(time.time())})
        self.summary.ok += len(records)
        self.summary.failed += failed
        self.summary.dollars += dollars

    def _lines(self, file_id: str | None):
        """The JSON lines of an output or error file, streamed (a batch's output can be large)."""
        if not file_id:
            return
        with self.client.files.with_streaming_response.content(file_id) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def _record(self, body) -> dict | None:
        """A 200 reply as the online path caches it; None when it is no chat completion."""
        try:
            reply = ChatCompletion.model_validate(body)
        except pydantic.ValidationError:
            return None
        return reply_record(reply, self.config, attempts=1, price_factor=self.config.batch_price_factor)
