"""How a training checkpoint is named and referred to: one spelling, ``checkpoint-<step>``."""

from __future__ import annotations

from pydantic import BaseModel


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"


class Checkpoint(BaseModel):
    """A model folder to evaluate. ``step`` is the optimizer step for a training checkpoint and
    None for any other model (a base model, a folder given on the command line)."""

    name: str
    path: str
    step: int | None = None

    @classmethod
    def at_step(cls, step: int, path: str) -> "Checkpoint":
        return cls(name=checkpoint_name(step), path=str(path), step=step)
