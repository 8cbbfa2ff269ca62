"""cft-ray teacher stage: critiques from an OpenAI-compatible teacher on a Ray Data actor pool."""

from cft_ray.stages import Estimate, TeacherSummary
from cft_ray.teacher.client import TeacherAuthError
from cft_ray.teacher.run import run_teacher

__all__ = ["Estimate", "TeacherAuthError", "TeacherSummary", "run_teacher"]
