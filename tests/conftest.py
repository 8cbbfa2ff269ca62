"""Session-wide fixtures: one tiny model, one local Ray cluster, the shared benchmark files.

Expensive things (Ray start-up, vLLM engines) are built once per session and shared.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Local test clusters need no token; the job-submit test sets up its own.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray workers unpickle functions defined in test modules by module name, so they need the
# tests folder importable; the local cluster's workers inherit this environment.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The smoke preset's tiny model (built once, cached by settings)."""
    from cft_ray.config import ModelConfig
    from cft_ray.models.tiny import resolve_model

    return Path(resolve_model(ModelConfig()))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session."""
    import ray

    from cft_ray.config import RayConfig
    from cft_ray.raycluster import connect

    resources = connect(RayConfig())
    yield resources
    ray.shutdown()


@pytest.fixture
def kill_critique_job(ray_cluster):
    """Runs ``jobs/critique.py`` on ``n`` synthetic rows with ``--set`` overrides on the session's
    cluster, and SIGKILLs its process group (a real crash: no cleanup runs) once ``ready()`` holds."""
    import signal
    import subprocess
    import sys
    import time

    import ray

    def run(n: int, sets: list[str], output: Path, ready, timeout_s: float) -> None:
        command = [sys.executable, str(REPO / "jobs" / "critique.py"), "--synthetic", str(n), "--preset", "smoke",
                   "--output", str(output), *[a for s in sets for a in ("--set", s)]]
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
        job = subprocess.Popen(command, env=env, start_new_session=True, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout_s
            while not ready():
                assert job.poll() is None and time.monotonic() < deadline, "job ended before it could be killed"
                time.sleep(0.1)
        finally:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)

    return run


@pytest.fixture(scope="session")
def benchdata_dir() -> Path:
    """The public benchmark test files (``shared/benchdata``), beside the checkout."""
    path = SHARED / "benchdata"
    if not (path / "math-500" / "test.jsonl").exists():
        pytest.fail(f"benchmark files not found at {path}; CI lays shared/ beside the clone")
    return path


@pytest.fixture(scope="session")
def vllm_openai_server(tiny_model_dir):
    """A real vLLM OpenAI-compatible server (CPU) serving the tiny model as ``tiny``; yields its
    base URL (ends in /v1). One per session: start-up takes about 40 s."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-server-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
         "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
         "--max-model-len", "2048", "--dtype", "float32"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited ({proc.returncode}); see {log.name}")
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server not up after 300 s; see {log.name}")
                time.sleep(1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def s3_bucket():
    """Object storage for run directories: a moto S3 server on loopback (the real S3 protocol
    over a real socket; a cloud bucket cannot exist here). Sets the ``AWS_*`` variables that
    pyarrow reads, for this process and the subprocesses it starts; yields ``s3://<bucket>``."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="cft-ray-test", AWS_SECRET_ACCESS_KEY="cft-ray-test",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir("cft-runs")
    yield "s3://cft-runs"
    server.stop()
