"""cft-ray tune stage: Ray Tune sweeps over the pipeline (:mod:`.sweep`) and their analysis (:mod:`.analysis`)."""

from cft_ray.stages import SweepResult
from cft_ray.tune.sweep import sweep

__all__ = ["SweepResult", "sweep"]
