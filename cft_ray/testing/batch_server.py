"""OpenAI's Files and Batches protocol for the offline teacher: real HTTP, real JSONL, real life cycle.

Registered on :class:`~cft_ray.testing.teacher_server.OfflineTeacherServer`'s app, so the batch
client talks to it exactly as to ``api.openai.com``:

- ``POST /v1/files`` (multipart ``file`` + ``purpose``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
- ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``,
  ``GET /v1/batches`` (newest first, ``after``/``limit`` cursor pages).

Every object is the one the official ``openai`` client parses (``FileObject``, ``Batch``). A batch
runs as one background task on the server's event loop: ``validating`` checks the input file as
OpenAI does (each line JSON with a unique ``custom_id``, ``method: POST``, the batch's ``url``, a
``body`` for one model; any fault fails the whole batch with ``errors``, nothing answered); then
``in_progress`` answers the lines spread evenly over ``seconds_to_complete`` (so a poll sees the
counts move) with the server's own ``complete(body)``; then ``finalizing`` writes the output file
(status 200 lines) and the error file (the lines that failed, in OpenAI's format), then
``completed``. ``fail_rate`` fails lines at random (seeded) with a 500 in the error file;
``expire_fraction`` lets a batch expire once that share of its lines is answered, the rest going
to the error file as ``batch_expired``, as OpenAI's expired batches do; a cancel does the same
with ``batch_cancelled``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Callable

from aiohttp import web

ENDPOINTS = ("/v1/chat/completions",)
COMPLETION_WINDOWS = ("24h",)


def _id(prefix: str) -> str:
    """OpenAI's id shapes: ``file-…``, ``batch_…``, ``batch_req_…``."""
    return f"{prefix}{'-' if prefix == 'file' else '_'}{uuid.uuid4().hex[:24]}"


def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                        "code": code}}, status=status)


class BatchEndpoints:
    """The Files and Batches routes and their in-memory state (files, batches, counters).

    ``complete(body) -> chat.completion dict`` answers one line; ``unauthorized(request)`` returns
    the 401 response for a wrong key, else None (the chat endpoint's check, shared).
    """

    def __init__(self, complete: Callable[[dict], dict], unauthorized: Callable[[web.Request], web.Response | None],
                 *, seconds_to_complete: float = 0.0, fail_rate: float = 0.0, expire_fraction: float | None = None,
                 seed: int = 0):
        self.complete, self.unauthorized = complete, unauthorized
        self.seconds_to_complete, self.fail_rate, self.expire_fraction = seconds_to_complete, fail_rate, expire_fraction
        self._rng = random.Random(seed)
        self.files: dict[str, dict] = {}  # id -> FileObject
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}  # id -> Batch, in creation order
        self._tasks: dict[str, asyncio.Task] = {}
        self.files_uploaded = 0
        self.batches_created = 0
        self.batch_requests = 0  # lines answered (ok or failed), over all batches

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._file)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_delete("/v1/files/{id}", self._delete_file)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{id}", self._batch)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel)
        app.on_shutdown.append(self._shutdown)

    def stats(self) -> dict:
        return {"files_uploaded": self.files_uploaded, "batches_created": self.batches_created,
                "batch_requests": self.batch_requests}

    async def _shutdown(self, _app: web.Application) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # ---- files -----------------------------------------------------------------------------
    def _store(self, data: bytes, filename: str, purpose: str) -> dict:
        file = {"id": _id("file"), "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
                "status_details": None}
        self.files[file["id"]], self.contents[file["id"]] = file, data
        return file

    async def _upload(self, request: web.Request) -> web.Response:
        denied = self.unauthorized(request)
        if denied:
            return denied
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField):
            return _error(400, "'file' is a required multipart field", param="file")
        if purpose != "batch":
            return _error(400, f"this server stores files for purpose 'batch' only, not {purpose!r}", param="purpose")
        self.files_uploaded += 1
        return web.json_response(self._store(upload.file.read(), upload.filename or "upload.jsonl", purpose))

    def _lookup(self, request: web.Request, table: dict[str, dict], missing: str) -> dict | web.Response:
        """The object named by the path's id, or the error reply (unauthorized, 404 with ``missing``)."""
        denied = self.unauthorized(request)
        if denied:
            return denied
        found = table.get(request.match_info["id"])
        return found or _error(404, missing.format(id=request.match_info["id"]), param="id")

    def _lookup_file(self, request: web.Request) -> dict | web.Response:
        return self._lookup(request, self.files, "No such File object: {id}")

    async def _file(self, request: web.Request) -> web.Response:
        found = self._lookup_file(request)
        return found if isinstance(found, web.Response) else web.json_response(found)

    async def _content(self, request: web.Request) -> web.Response:
        found = self._lookup_file(request)
        if isinstance(found, web.Response):
            return found
        return web.Response(body=self.contents[found["id"]], content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.Response:
        found = self._lookup_file(request)
        if isinstance(found, web.Response):
            return found
        del self.files[found["id"]], self.contents[found["id"]]
        return web.json_response({"id": found["id"], "object": "file", "deleted": True})

    # ---- batches ---------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        denied = self.unauthorized(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON")
        file = self.files.get(body.get("input_file_id"))
        if file is None:
            return _error(400, f"No such File object: {body.get('input_file_id')}", param="input_file_id")
        if body.get("endpoint") not in ENDPOINTS:
            return _error(400, f"endpoint must be one of {ENDPOINTS}", param="endpoint")
        if body.get("completion_window") not in COMPLETION_WINDOWS:
            return _error(400, f"completion_window must be one of {COMPLETION_WINDOWS}", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and len(metadata) <= 16
            and all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                    for k, v in metadata.items())
        ):
            return _error(400, "metadata: at most 16 string pairs, keys of 64 and values of 512 characters",
                          param="metadata")
        now = int(time.time())
        batch = {
            "id": _id("batch"), "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": file["id"], "completion_window": body["completion_window"], "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + 24 * 3600, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": metadata,
        }
        self.batches[batch["id"]] = batch
        self.batches_created += 1
        self._tasks[batch["id"]] = asyncio.ensure_future(self._process(batch))
        return web.json_response(batch)

    def _lookup_batch(self, request: web.Request) -> dict | web.Response:
        return self._lookup(request, self.batches, "No batch found with id '{id}'")

    async def _batch(self, request: web.Request) -> web.Response:
        found = self._lookup_batch(request)
        return found if isinstance(found, web.Response) else web.json_response(found)

    async def _cancel(self, request: web.Request) -> web.Response:
        found = self._lookup_batch(request)
        if isinstance(found, web.Response):
            return found
        if found["status"] in ("validating", "in_progress"):
            found.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(found)

    async def _list(self, request: web.Request) -> web.Response:
        denied = self.unauthorized(request)
        if denied:
            return denied
        newest_first = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after in self.batches:
            newest_first = newest_first[[b["id"] for b in newest_first].index(after) + 1:]
        limit = max(1, min(100, int(request.query.get("limit", 20))))
        page = newest_first[:limit]
        return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None,
                                  "has_more": len(newest_first) > limit})

    # ---- the batch's life ------------------------------------------------------------------
    def _validate(self, batch: dict) -> tuple[list[dict], list[dict]]:
        """(requests, errors) of the input file, checked the way OpenAI's validation step does."""
        requests, errors, seen, models = [], [], set(), set()

        def fault(line: int, code: str, message: str, param: str | None = None) -> None:
            errors.append({"code": code, "line": line, "message": message, "param": param})

        for number, text in enumerate(self.contents[batch["input_file_id"]].decode().splitlines(), 1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except ValueError:
                fault(number, "invalid_json_line", f"line {number} is not valid JSON")
                continue
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
                fault(number, "missing_required_parameter", "every line needs a string custom_id", "custom_id")
            elif item["custom_id"] in seen:
                fault(number, "duplicate_custom_id", f"the custom_id {item['custom_id']!r} on line {number} is not "
                      "unique; every request in a batch needs a unique custom_id", "custom_id")
            elif item.get("method") != "POST":
                fault(number, "invalid_method", "method must be POST", "method")
            elif item.get("url") != batch["endpoint"]:
                fault(number, "mismatched_endpoint", f"url must be the batch's endpoint {batch['endpoint']}", "url")
            elif not isinstance(item.get("body"), dict):
                fault(number, "missing_required_parameter", "every line needs a body", "body")
            else:
                seen.add(item["custom_id"])
                models.add(item["body"].get("model"))
                requests.append(item)
        if len(models) > 1:
            fault(0, "mismatched_model", "a batch's requests must all use the same model", "body.model")
        if not requests and not errors:
            fault(0, "empty_file", "the input file has no requests")
        return requests, errors

    async def _process(self, batch: dict) -> None:
        await asyncio.sleep(0)  # the create response goes out while the batch is still validating
        requests, errors = self._validate(batch)
        if errors:
            batch.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": errors[:100]})
            return
        n = len(requests)
        if batch["status"] == "validating":  # not cancelled meanwhile
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        batch["request_counts"]["total"] = n
        counts = batch["request_counts"]
        outputs, failures = [], []
        expire_after = n if self.expire_fraction is None else int(n * self.expire_fraction)
        started, ending, answered = time.monotonic(), None, 0
        for item in requests:
            if batch["status"] == "cancelling":
                ending = "cancelled"
            elif answered >= expire_after:
                ending = "expired"
            if ending:
                break
            line = self._answer(item)
            ok = line["response"]["status_code"] == 200
            (outputs if ok else failures).append(line)
            counts["completed" if ok else "failed"] += 1
            answered += 1
            self.batch_requests += 1
            wait = started + self.seconds_to_complete * answered / n - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        for item in requests[answered:]:  # what a cancel or the end of the window cut off
            failures.append({"id": _id("batch_req"), "custom_id": item["custom_id"], "response": None,
                             "error": {"code": f"batch_{ending}", "message": "This request could not be executed "
                                       f"before the batch was {ending}."}})
            counts["failed"] += 1
        if ending is None:
            batch.update(status="finalizing", finalizing_at=int(time.time()))
            await asyncio.sleep(0)
        for key, lines, kind in (("output_file_id", outputs, "output"), ("error_file_id", failures, "error")):
            if lines:
                data = "".join(json.dumps(line) + "\n" for line in lines).encode()
                batch[key] = self._store(data, f"{batch['id']}_{kind}.jsonl", "batch_output")["id"]
        terminal = ending or "completed"
        batch.update(status=terminal, **{f"{terminal}_at": int(time.time())})

    def _answer(self, item: dict) -> dict:
        """One output or error line, as OpenAI writes them."""
        request_id = f"req_{uuid.uuid4().hex}"
        line = {"id": _id("batch_req"), "custom_id": item["custom_id"], "error": None}
        if self._rng.random() < self.fail_rate:
            body = {"error": {"message": "The server had an error while processing your request (injected).",
                              "type": "server_error", "param": None, "code": None}}
            return {**line, "response": {"status_code": 500, "request_id": request_id, "body": body}}
        try:
            body, status = self.complete(item["body"]), 200
        except (KeyError, TypeError, StopIteration):
            body = {"error": {"message": "the body needs messages with a user message",
                              "type": "invalid_request_error", "param": "messages", "code": None}}
            status = 400
        return {**line, "response": {"status_code": status, "request_id": request_id, "body": body}}
