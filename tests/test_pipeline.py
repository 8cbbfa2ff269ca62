"""The smoke pipeline end to end (real Ray, vLLM CPU, DeepSpeed CPU, the offline teacher on
loopback): a run killed during training resumes and completes, its artifacts and report are
right, a second run skips every stage, and ``ray job submit`` to a token-authenticated local
cluster runs it as a job with its run directory on object storage.

The tests of this module share one run directory and run in file order (each builds on the
previous run's stages), which keeps the whole module at one full pipeline run plus reruns.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A few more steps than the preset so that a kill can land between two checkpoints.
OVERRIDES = ["--set", "train.max_steps=12", "--set", "train.save_steps=4"]
JOB_STEPS = ["--set", "train.max_steps=4"]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


def _pipeline_cmd(output_dir: Path | str, *extra: str) -> list[str]:
    return [sys.executable, "jobs/full_pipeline.py", "--preset", "smoke", "--set", f"output_dir={output_dir}",
            *OVERRIDES, *extra]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _summary(out_dir: Path) -> dict:
    return json.loads((out_dir / "smoke" / "pipeline.json").read_text())


def _weights_digest(checkpoint: Path) -> str:
    weights = sorted(checkpoint.glob("*.bin")) + sorted(checkpoint.glob("*.safetensors"))
    assert weights, f"no weights in {checkpoint}"
    return hashlib.sha256(b"".join(w.read_bytes() for w in weights)).hexdigest()


@pytest.mark.slow
def test_killed_in_training_resumes_and_completes(out_dir):
    stages = out_dir / "smoke" / "stages"
    log = (out_dir / "run1.log").open("w")
    # Run 1 in its own session, with its own local Ray cluster; killed (SIGKILL, the whole
    # process group: driver, Ray and its workers) as soon as the first checkpoint appears.
    proc = subprocess.Popen(_pipeline_cmd(out_dir), cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 1200
    while not list(stages.glob("train-*/checkpoint-4/trainer_state.json")):
        assert proc.poll() is None, f"run 1 ended before training reached step 4: {(out_dir / 'run1.log').read_text()[-3000:]}"
        assert time.time() < deadline, "training did not reach step 4 in time"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # let the killed Ray processes release their ports
    (train_dir,) = stages.glob("train-*")
    assert not (train_dir / "_SUCCESS").exists(), "run 1 finished training before the kill: nothing was tested"
    assert list(stages.glob("data-*/_SUCCESS")), "the data stage finished before training started"
    first_checkpoint = _weights_digest(train_dir / "checkpoint-4")

    # Run 2: resumes. The data stage is not redone, training continues from its checkpoint.
    done = subprocess.run(_pipeline_cmd(out_dir), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = _summary(out_dir)
    assert summary["stages"]["data"]["skipped"] is True
    assert summary["stages"]["train"]["skipped"] is False
    assert _weights_digest(train_dir / "checkpoint-4") == first_checkpoint, "training restarted from scratch"
    result = json.loads((train_dir / "_SUCCESS").read_text())
    assert result["total_steps"] == 12
    assert [c["step"] for c in result["checkpoints"]] == [4, 8, 12]
    assert "cft-ray pipeline:" in done.stdout and "report:" in done.stdout


@pytest.mark.slow
def test_artifacts_and_report(out_dir):
    run = out_dir / "smoke"
    summary = _summary(out_dir)
    assert list(summary["stages"]) == ["data", "train", "select", "evaluate"]
    assert (run / "config.sha256").read_text().strip() == summary["config_sha256"]
    data = json.loads(next((run / "stages").glob("data-*/_SUCCESS")).read_text())
    for builder in ("cft", "sft", "sft-verified"):
        card = json.loads((Path(data["datasets"][builder]) / "card.json").read_text())
        assert card["rows"] > 0
    select = json.loads(next((run / "stages").glob("select-*/_SUCCESS")).read_text())
    assert [p["name"] for p in select["curve"]] == ["checkpoint-4", "checkpoint-8", "checkpoint-12"]
    assert select["best"]["name"] in {"checkpoint-4", "checkpoint-8", "checkpoint-12"}
    best = max(select["curve"], key=lambda p: p["cft_compat"])  # the paper's numbers use cft_compat
    assert best["cft_compat"] == select["best"]["cft_compat"]
    evaluation = json.loads(next((run / "stages").glob("evaluate-*/_SUCCESS")).read_text())
    assert evaluation["checkpoint"] == select["best"]["name"]
    scores = evaluation["selected_scores"]
    assert 0 <= scores["strict"]["synthetic-arith"] <= scores["cft_compat"]["synthetic-arith"] <= 100

    report = (run / "report" / "report.md").read_text()
    for heading in ("## Stages", "## Data", "## Teacher", "## Training", "## Checkpoint selection", "## Final evaluation"):
        assert heading in report, heading
    assert f"Best: **{select['best']['name']}**" in report
    pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    assert len(pngs) >= 3, pngs  # loss curve, selection curve, final scores
    for png in (run / "report").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


@pytest.mark.slow
def test_second_run_skips_every_stage(out_dir):
    again = subprocess.run(_pipeline_cmd(out_dir), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(stage["skipped"] for stage in _summary(out_dir)["stages"].values())
    assert again.stdout.count("skipped (done before)") == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_job_submit_with_token_auth_to_object_storage(s3_bucket, tmp_path):
    """A head node started by the test with token authentication runs the smoke pipeline as a job,
    its run directory and Ray Train's storage on object storage (S3 protocol, moto on loopback). Then, as from another
    machine (an empty working copy), a plain rerun finds every stage done and downloads what the
    report reads."""
    from test_storage import _remote_files

    run_uri = f"{s3_bucket}/job-{secrets.token_hex(4)}"
    token = secrets.token_hex(16)
    env = {**_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    gcs, dashboard, agent_http, agent_grpc, runtime_env, metrics = (_free_port() for _ in range(6))
    # A short temp dir: Ray's Unix socket paths under it must stay within 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="cftjob-", dir="/tmp")
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={gcs}", "--num-cpus=8", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--temp-dir={ray_tmp}",
         # The session's own Ray cluster already holds the agents' default ports (52365 ...).
         f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}"],
        env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 180
        while subprocess.run(["ray", "job", "list", "--address", address], env=env, capture_output=True).returncode:
            assert head.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(2)
        # Ray Train's checkpoints on the object store too; evaluation gets local copies of them.
        # One checkpoint (4 steps) keeps this cold run short: selection starts one engine.
        job_cmd = _pipeline_cmd(run_uri, "--set", f"work_dir={tmp_path / 'job-node'}",
                                "--set", f"ray.storage_path={run_uri}/ray", *JOB_STEPS)
        submit = ["ray", "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                  *[a if a != sys.executable else "python" for a in job_cmd]]
        # The job API answers before the node's job agent is up ("No available agent"): retry that only.
        for _ in range(30):
            job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=1500)
            if "No available agent" not in job.stdout + job.stderr:
                break
            time.sleep(3)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout.lower()
        # With the agent up, a wrong token is refused (and not for any other reason).
        refused = subprocess.run(submit, env={**env, "RAY_AUTH_TOKEN": "not-the-token"}, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "No available agent" not in refused.stdout + refused.stderr
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    remote = _remote_files(f"{run_uri}/smoke")
    for stage in ("data", "train", "select", "evaluate"):
        assert any(f.startswith(f"stages/{stage}-") and f.endswith("/_SUCCESS") for f in remote), stage
    assert any(f.startswith("stages/train-") and f.endswith("checkpoint-4/config.json") for f in remote)
    ray_train = _remote_files(f"{run_uri}/ray")
    assert any("checkpoint-4/deepspeed/state/" in f and f.endswith(".pt") for f in ray_train), \
        sorted(ray_train)[:20]
    assert not any("/deepspeed/" in f for f in remote), "resume state stays with Ray Train, not in the run folder"
    assert any(f.startswith("teacher-cache/") for f in remote), "paid answers are cached on the object store"
    job_summary = json.loads(remote["pipeline.json"])
    assert not any(stage["skipped"] for stage in job_summary["stages"].values())
    assert b"## Final evaluation" in remote["report/report.md"]

    other = tmp_path / "other-machine"
    rerun = subprocess.run(_pipeline_cmd(run_uri, "--set", f"work_dir={other}", *JOB_STEPS), cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rerun.stdout.count("skipped (done before)") == 4
    (local,) = other.glob("s3/**/smoke")
    summary = json.loads((local / "pipeline.json").read_text())
    assert [stage["key"] for stage in summary["stages"].values()] == [
        stage["key"] for stage in job_summary["stages"].values()]
    best = json.loads(next((local / "stages").glob("select-*/_SUCCESS")).read_text())["best"]
    assert Path(best["path"]).is_relative_to(local) and (Path(best["path"]) / "config.json").exists()
    assert "## Final evaluation" in (local / "report" / "report.md").read_text()
