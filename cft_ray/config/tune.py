"""Config of Ray Tune sweeps: a grid over any config field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from cft_ray.config.base import StrictModel

SIZE_KEY = "data.subset.sizes"


class TuneConfig(StrictModel):
    param_space: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted config key -> values (a grid), e.g. {'train.method': ['cft', 'sft'], "
        "'data.subset.sizes': [4000, 50000]}; a data size n means the nested subset of n rows, null all rows",
    )
    metric: str = Field("avg", description="result metric to rank trials by")
    mode: Literal["max", "min"] = "max"
    name: str | None = Field(None, description="experiment name; default <name>-sweep")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="default: as many as the cluster's GPUs hold (1 on a CPU cluster)"
    )
    trial_cpus: float = Field(
        1.0, gt=0, description="CPUs reserved per trial for its driver; the trainer and eval engines request their own"
    )
    max_failures: int = Field(0, ge=0, description="retries of a failed trial (training resumes from its checkpoint)")

    @field_validator("param_space")
    @classmethod
    def _normalise(cls, space: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in space.items():
            if not values:
                raise ValueError(f"tune.param_space[{key!r}] is empty; give at least one value")
        if SIZE_KEY in space:
            # One trial trains on one nested subset: n -> [n]; null -> [] (every row).
            space[SIZE_KEY] = [[v] if isinstance(v, int) else [] if v is None else v for v in space[SIZE_KEY]]
            bad = [v for v in space[SIZE_KEY] if len(v) > 1]
            if bad:
                raise ValueError(f"tune.param_space[{SIZE_KEY!r}]: each value is one size, got {bad}")
        return space
