"""Run directories on object storage: a real S3 protocol server (moto) on loopback, pyarrow's S3
filesystem, and the StepRunner that the pipeline and the data stage use."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from cft_ray.config import load_config
from cft_ray.steps import RUN_PLACEHOLDER, StepRunner
from cft_ray.storage import RunStore, is_remote
from cft_ray.teacher.cache import ResponseCache


def _remote_files(uri: str) -> dict[str, bytes]:
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    out = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(root) + 1:]] = f.read()
    return out


def _write_outputs(folder: Path) -> dict:
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(b"\x00\x01" * 5000)
    (folder / "rows.jsonl").write_text('{"id": 1}\n')
    return {"weights": str(folder / "model" / "weights.bin"), "rows": 1}


def test_locations():
    assert is_remote("s3://bucket/runs") and is_remote("gs://b/p")
    assert not is_remote("runs") and not is_remote("/abs/runs") and not is_remote("file:///tmp/runs")
    local = load_config("smoke", check_hardware=False)
    assert local.run_uri is None and local.run_dir == Path("runs").expanduser() / local.name
    remote = load_config("smoke", overrides=["output_dir=s3://bucket/team/", "work_dir=/scratch/cft"],
                         check_hardware=False)
    assert remote.run_uri == f"s3://bucket/team/{remote.name}"
    assert remote.run_dir == Path(f"/scratch/cft/s3/bucket/team/{remote.name}")


def test_steps_upload_then_mark_and_a_fresh_copy_downloads(s3_bucket, tmp_path):
    uri = f"{s3_bucket}/{uuid.uuid4().hex[:8]}"
    first = RunStore(uri, tmp_path / "machine-a")
    steps = StepRunner(first.local / "stages", "test", first)
    shared = first.local / "stages" / "eval-k1"

    def stage(out: Path) -> dict:
        shared.mkdir(parents=True)
        (shared / "samples.txt").write_text("graded")
        return _write_outputs(out)

    steps.run("train", "k1", stage, also=(shared,))
    remote = _remote_files(uri)
    assert remote["stages/train-k1/model/weights.bin"] == b"\x00\x01" * 5000
    assert remote["stages/eval-k1/samples.txt"] == b"graded"
    marker = json.loads(remote["stages/train-k1/_SUCCESS"])
    assert marker["weights"] == f"{RUN_PLACEHOLDER}/stages/train-k1/model/weights.bin"  # no machine path

    # A step that crashes leaves no marker on either side, so it runs again next time.
    def crash(out: Path) -> dict:
        (out / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        steps.run("evaluate", "k2", crash)
    assert not any(name.startswith("stages/evaluate-k2/_SUCCESS") for name in _remote_files(uri))

    # Another machine: an empty working copy sees the finished step, downloads it, and rebases its paths.
    second = RunStore(uri, tmp_path / "machine-b")
    again = StepRunner(second.local / "stages", "test", second)
    ran = []
    again.run("train", "k1", lambda out: ran.append(out) or {}, also=(second.local / "stages" / "eval-k1",))
    assert ran == [] and again.timings["train"]["skipped"]
    weights = Path(again.results["train"]["weights"])
    assert weights == second.local / "stages" / "train-k1" / "model" / "weights.bin"
    assert weights.read_bytes() == b"\x00\x01" * 5000
    assert (second.local / "stages" / "eval-k1" / "samples.txt").read_text() == "graded"
    again.run("evaluate", "k2", lambda out: {"scores": 1})
    assert not again.timings["evaluate"]["skipped"]
    assert json.loads(_remote_files(uri)["stages/evaluate-k2/_SUCCESS"]) == {"scores": 1}


def test_teacher_cache_on_s3(s3_bucket):
    cache = ResponseCache(f"{s3_bucket}/{uuid.uuid4().hex[:8]}/teacher-cache")
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, {"content": "Conclusion: right [END]", "cost_usd": 0.01})
    assert ResponseCache(cache.uri).get("ab" * 32)["content"] == "Conclusion: right [END]"


def test_unreachable_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot open"):
        RunStore("nosuchscheme://bucket/run", tmp_path)
