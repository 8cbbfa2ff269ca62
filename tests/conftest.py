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


@pytest.fixture(scope="session")
def benchdata_dir() -> Path:
    """The public benchmark test files (``shared/benchdata``), beside the checkout."""
    path = SHARED / "benchdata"
    if not (path / "math-500" / "test.jsonl").exists():
        pytest.fail(f"benchmark files not found at {path}; CI lays shared/ beside the clone")
    return path
