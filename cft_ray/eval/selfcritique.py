"""Two-stage self-critique inference (reference section 7, the paper's Table 8).

The model solves; then it critiques its own solution with the CFT prompt it was trained on;
while the critique concludes wrong, it solves again with sampling, up to ``attempts``
solutions in all. The first solution judged right is kept, else the last. The paper found
this hurts (its final numbers use direct inference); it is here to reproduce that ablation.

All rounds of a batch run in one engine (an actor of the shared vLLM pool), so the model is
loaded once however many rounds a batch needs.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from cft_ray.core.formats import CFT_INSTRUCTION, cft_input, render_prompt
from cft_ray.models.generation import EngineSpec, Sampling, VLLMGenerator
from cft_ray.core.verdict import parse_verdict


def critique_prompt(question: str, solution: str) -> str:
    """The CFT training prompt for critiquing ``solution`` (the model's chat rendering)."""
    return render_prompt(CFT_INSTRUCTION, cft_input(question, solution))


class TwoStageGenerator(VLLMGenerator):
    """Ray Data actor: solve, self-critique, re-solve while judged wrong. Needs ``prompt`` and
    ``question`` columns; adds ``completion``, ``finish_reason``, ``completion_tokens``,
    ``sample_index``, ``attempts`` (solutions generated) and ``self_verdict``."""

    def __init__(self, engine: EngineSpec, sampling: Sampling, attempts: int, temperature: float):
        super().__init__(engine, sampling)
        from vllm import SamplingParams

        self.attempts = attempts
        self.resample = [
            SamplingParams(**{**asdict(replace(sampling, temperature=temperature, seed=(sampling.seed or 0) + k)),
                              "stop": list(sampling.stop)})
            for k in range(1, attempts)
        ]
        self.critic = SamplingParams(temperature=0.0, max_tokens=sampling.max_tokens, stop=["<|im_end|>", "[END]"],
                                     include_stop_str_in_output=True)

    def _solve(self, prompts: list[str], params) -> list:
        return [out.outputs[0] for out in self.llm.generate(prompts, params, use_tqdm=False)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prompts, questions = list(batch["prompt"]), list(batch["question"])
        solutions = self._solve(prompts, self.params)
        attempts = [1] * len(prompts)
        verdicts = ["none"] * len(prompts)
        pending = list(range(len(prompts)))
        for round_ in range(self.attempts):
            critiques = self._solve([critique_prompt(questions[i], solutions[i].text) for i in pending], self.critic)
            for i, critique in zip(pending, critiques):
                verdicts[i] = parse_verdict(critique.text)
            pending = [i for i in pending if verdicts[i] != "right"]
            if not pending or round_ == self.attempts - 1:
                break
            for i, solution in zip(pending, self._solve([prompts[i] for i in pending], self.resample[round_])):
                solutions[i], attempts[i] = solution, round_ + 2
        result = dict(batch)
        result.update(
            completion=np.asarray([s.text for s in solutions], dtype=object),
            finish_reason=np.asarray([s.finish_reason or "" for s in solutions], dtype=object),
            completion_tokens=np.asarray([len(s.token_ids) for s in solutions], dtype=np.int64),
            sample_index=np.zeros(len(prompts), dtype=np.int64),
            attempts=np.asarray(attempts, dtype=np.int64),
            self_verdict=np.asarray(verdicts, dtype=object),
        )
        return result
