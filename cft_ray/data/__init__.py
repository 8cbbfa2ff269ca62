"""cft-ray data stage: sources, noisy responses, decontamination, critiques, training sets."""

from cft_ray.data.pipeline import build_datasets, training_set
from cft_ray.stages import DataResult

__all__ = ["DataResult", "build_datasets", "training_set"]
