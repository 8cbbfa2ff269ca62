"""The CFT vocabulary every stage shares, with no heavy dependency and no import of any stage.

``formats`` (training rows and their ChatML rendering), ``verdict`` (a critique's conclusion),
``extract`` (the final answer of a completion), ``synthetic`` (the offline arithmetic problems),
``benchmarks`` (the benchmark registry and its reference parsing), ``scores`` (grading modes and
the paper's table layout), ``checkpoints`` (how a training checkpoint is named and referred to),
``hashing`` (stable content hashes) and ``errors`` (the configuration error type).
"""
