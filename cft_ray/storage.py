"""Where a run lives: a local folder, or object storage (``s3://``, ``gs://``, ``abfs://``, ...)
through pyarrow's filesystems.

Stages read and write plain local files (vLLM, DeepSpeed and transformers want local paths), so a
run on object storage keeps a local working copy: a stage writes into it, and when the stage has
finished its folder is uploaded and its ``_SUCCESS`` marker written last. The marker on the remote
side is therefore the proof that a stage's whole output is there. A rerun on any machine asks the
remote side which stages are done and downloads those it needs that its working copy lacks.
Credentials and endpoints come from pyarrow's usual sources (``AWS_*`` variables, instance roles,
``GOOGLE_APPLICATION_CREDENTIALS``), never from the config.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs as pafs

from cft_ray.config.pipeline import is_remote

__all__ = ["RunStore", "as_uri", "is_remote"]

log = logging.getLogger(__name__)


def as_uri(path_or_uri: str) -> str:
    """A URI pyarrow understands, for a local path (made absolute) or a URI (kept)."""
    return path_or_uri if "://" in path_or_uri else Path(path_or_uri).expanduser().resolve().as_uri()


class RunStore:
    """A run folder on object storage (``uri``) mirrored by a local working copy (``local``)."""

    def __init__(self, uri: str, local: str | Path):
        if not is_remote(uri):
            raise ValueError(f"{uri!r} is not an object-storage URI")
        self.uri, self.local = uri.rstrip("/"), Path(local)
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"cannot open {self.uri}: {exc}") from None

    def _remote(self, relative: str) -> str:
        return f"{self.root}/{relative}".rstrip("/")

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self._remote(relative)).type != pafs.FileType.NotFound

    def write_text(self, relative: str, text: str) -> None:
        with self.fs.open_output_stream(self._remote(relative)) as f:
            f.write(text.encode())

    def upload(self, relative: str) -> None:
        """Copy the working copy's file or folder ``relative`` to the remote side."""
        source = self.local / relative
        if source.is_dir() and not any(source.iterdir()):
            return  # object stores have no empty folders
        log.info("uploading %s -> %s/%s", source, self.uri, relative)
        pafs.copy_files(str(source), self._remote(relative), destination_filesystem=self.fs, use_threads=True)

    def download(self, relative: str) -> None:
        """Copy the remote file or folder ``relative`` into the working copy."""
        target = self.local / relative
        if self.fs.get_file_info(self._remote(relative)).type == pafs.FileType.Directory:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s/%s -> %s", self.uri, relative, target)
        pafs.copy_files(self._remote(relative), str(target), source_filesystem=self.fs, use_threads=True)
