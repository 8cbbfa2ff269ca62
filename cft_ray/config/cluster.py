"""How to reach Ray (see :mod:`cft_ray.raycluster`, which connects)."""

from __future__ import annotations

from pydantic import Field

from cft_ray.config.base import StrictModel


class RayConfig(StrictModel):
    """How to reach Ray: ``RAY_ADDRESS`` (or ``address``) for a cluster, else a local one."""

    address: str | None = None
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="logical CPUs of a local cluster; default 8 or 2x cores, whichever is more "
        "(each Ray Data stage actor takes one, so a 2-core box needs more than 2)",
    )
    storage_path: str | None = Field(
        None, description="Ray Train/Tune storage (shared FS or s3://, gs://); default <run>/ray"
    )
