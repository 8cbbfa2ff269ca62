"""The base class of every config section, and the error raised for a config that cannot run."""

from pydantic import BaseModel, ConfigDict

from cft_ray.core.errors import ConfigError

__all__ = ["ConfigError", "StrictModel"]


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
