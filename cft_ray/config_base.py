"""The base class and error type shared by every config section (kept apart from
:mod:`cft_ray.config` so stage packages can define their sections without import cycles)."""

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration that cannot run, with the field that is wrong and how to fix it."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
