"""cft-ray eval stage: the vLLM actor pool that scores checkpoints, the grader, checkpoint selection."""

from cft_ray.eval.evaluate import evaluate, select_checkpoint
from cft_ray.stages import EvalResult, SelectionResult

__all__ = ["EvalResult", "SelectionResult", "evaluate", "select_checkpoint"]
