"""cft-ray eval stage: benchmarks, grader, and the vLLM actor pool that scores checkpoints."""

from cft_ray.eval.evaluate import EvalResult, evaluate, select_checkpoint

__all__ = ["EvalResult", "evaluate", "select_checkpoint"]
