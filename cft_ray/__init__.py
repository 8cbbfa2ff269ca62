"""cft-ray: Critique Fine-Tuning (arXiv 2501.17703) as one Ray program.

Stages, one package each: ``data`` (sources, noisy responses, builders), ``teacher``
(critiques from any OpenAI-compatible API), ``train`` (DeepSpeed on Ray Train), ``eval``
(vLLM actor pool and grader), ``tune`` (sweeps and analysis). ``config`` holds the typed
configuration every stage reads; ``pipeline`` chains the stages.
"""

__version__ = "0.1.0"
