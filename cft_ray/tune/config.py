"""Config of Ray Tune sweeps: a grid over any config field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cft_ray.config_base import StrictModel


class TuneConfig(StrictModel):
    param_space: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="dotted config key -> values, e.g. {'train.method': ['cft', 'sft']}",
    )
    metric: str = Field("avg", description="result metric to rank trials by")
    mode: Literal["max", "min"] = "max"
    max_concurrent_trials: int | None = Field(None, ge=1)
