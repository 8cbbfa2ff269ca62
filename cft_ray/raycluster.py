"""Connecting to Ray: the cluster in ``RAY_ADDRESS`` (or ``ray.address``) when set, so
``ray job submit`` works unchanged, else a local cluster sized for small machines.

Ray 2.60 turns on token authentication for new local clusters. A driver started by
``ray job submit`` inherits the token; a driver connecting by address reads it from
``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` (Ray's own order).
"""

from __future__ import annotations

import logging
import os

from cft_ray.config import RayConfig

log = logging.getLogger(__name__)

# Environment every Ray worker of a local CPU cluster needs: DeepSpeed must not probe for
# CUDA, and vLLM's CPU backend takes its KV cache size from here (GiB), not from
# gpu_memory_utilization (which means a fraction of system RAM on CPU).
CPU_WORKER_ENV = {"DS_ACCELERATOR": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}


def local_num_cpus(config: RayConfig) -> int:
    """Logical CPUs for a local cluster: each Ray Data stage actor and each Train worker
    holds one, so a 2-core machine needs more logical CPUs than cores to run a pipeline."""
    return config.num_cpus or max(8, 2 * (os.cpu_count() or 1))


def connect(config: RayConfig | None = None) -> dict:
    """Initialise Ray once per process; returns the cluster's resources."""
    import ray

    config = config or RayConfig()
    if ray.is_initialized():
        return ray.cluster_resources()
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except Exception as exc:  # auth failures surface as generic connection errors
            raise RuntimeError(
                f"could not connect to the Ray cluster at {address}: {exc}. If the cluster uses "
                "token authentication (the default since Ray 2.59 for local clusters), export "
                "RAY_AUTH_TOKEN, or copy the head node's token (`ray get-auth-token`) to "
                "~/.ray/auth_token."
            ) from exc
    else:
        for key, value in CPU_WORKER_ENV.items():
            os.environ.setdefault(key, value)
        ray.init(
            num_cpus=local_num_cpus(config),
            include_dashboard=False,
            runtime_env={"env_vars": {k: os.environ[k] for k in CPU_WORKER_ENV}},
        )
    resources = ray.cluster_resources()
    log.info("Ray connected: %s", {k: v for k, v in resources.items() if k in ("CPU", "GPU", "memory")})
    return resources


def require_gpus(needed: int, what: str) -> None:
    """Fail early, with the fix, when the connected cluster cannot ever place ``needed`` GPUs."""
    import ray

    have = int(ray.cluster_resources().get("GPU", 0))
    if needed > have:
        raise RuntimeError(
            f"{what} needs {needed} GPU(s) but the Ray cluster has {have}. Add GPU nodes "
            "(cluster/*.yaml), lower the worker/engine count, or use the CPU smoke preset."
        )
