"""The per-request response cache: one small JSON file per answered request, on any pyarrow filesystem.

The key is a content hash of everything that decides the reply (base URL family, model, messages,
sampling), so a rerun, a crash restart or a superset run re-sends nothing already answered, and a
changed setting re-sends only the requests it changes. Files are written to a temporary name and
moved into place, so a killed writer never leaves a half-written entry; every node of a cluster
sees the same entries when the root is shared storage (NFS path, ``s3://``, ``gs://``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from urllib.parse import urlparse

import pyarrow.fs as pafs

from cft_ray.storage import as_uri

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def url_family(base_url: str) -> str:
    """What of the base URL decides the reply: the host and path, not a loopback server's port.

    Local servers (the offline teacher, a vLLM on this machine) come up on changing ports; the model
    name in the key tells them apart. Remote endpoints keep host and path (Azure deployments differ
    by path).
    """
    parsed = urlparse(base_url)
    host = parsed.hostname or ""
    if host in _LOOPBACK or host.startswith("127."):
        return "loopback"
    return f"{host}{parsed.path.rstrip('/')}"


def request_key(base_url: str, model: str, messages: list[dict], sampling: dict) -> str:
    payload = {"family": url_family(base_url), "model": model, "messages": messages, "sampling": sampling}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """``get(key)`` / ``put(key, record)`` of JSON records under a filesystem URI or local path."""

    def __init__(self, uri: str):
        self.fs, self.root = pafs.FileSystem.from_uri(as_uri(uri))
        self.uri = uri
        self._made: set[str] = set()

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            with self.fs.open_input_stream(self._path(key)) as f:
                return json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None

    def stored_at(self, key: str) -> float | None:
        """When the entry was written (seconds since the epoch, the filesystem's clock), or None."""
        info = self.fs.get_file_info(self._path(key))
        return None if info.type == pafs.FileType.NotFound else info.mtime.timestamp()

    def put(self, key: str, record: dict) -> None:
        folder = f"{self.root}/{key[:2]}"
        if folder not in self._made:
            self.fs.create_dir(folder, recursive=True)
            self._made.add(folder)
        tmp = f"{folder}/.tmp-{key}-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(json.dumps(record, ensure_ascii=False).encode())
        self.fs.move(tmp, self._path(key))

    def keys(self) -> list[str]:
        """Every stored key (one listing of the whole cache). Only entries in their two-character
        shard folder count: other files under the root (the Batch API's manifests) are not answers."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True))
        except FileNotFoundError:
            return []
        return [i.base_name[:-5] for i in infos if i.base_name.endswith(".json") and not i.base_name.startswith(".")
                and i.path.rsplit("/", 2)[-2] == i.base_name[:2]]
