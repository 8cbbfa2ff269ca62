"""``cft-ray eval`` (score checkpoints) and ``cft-ray grade`` (re-grade saved completions)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cft_ray.cli.common import add_config_args, connected_config
from cft_ray.core.checkpoints import Checkpoint
from cft_ray.core.scores import SCORE_MODES


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score checkpoints on the configured benchmarks (vLLM actor pool)")
    add_config_args(p)
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="a model folder to score (repeatable); default: the config's model")
    p.add_argument("--select", action="store_true",
                   help="score every checkpoint on eval.select_on, then the full suite on the best")
    p.add_argument("--output", required=True, help="output folder (resumes what it already holds)")
    p.set_defaults(func=_cmd_eval)

    p = subparsers.add_parser("grade", help="re-grade saved completions without regenerating")
    p.add_argument("--input", required=True, help="JSONL rows with completion and reference (optional benchmark)")
    p.add_argument("--output", required=True, help="JSONL: each row plus extracted, correct, timed_out")
    p.add_argument("--mode", choices=SCORE_MODES, default="strict")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per row (a row past it counts wrong)")
    p.add_argument("--workers", type=int, default=2, help="grading worker processes")
    p.add_argument("--backend", choices=["math-verify", "ours"], default="math-verify",
                   help="equivalence backend after our extraction (see README, Grading)")
    p.set_defaults(func=_cmd_grade)


def _checkpoints(args, config) -> list[Checkpoint]:
    """--checkpoint NAME=PATH folders (a trailing ``checkpoint-<step>`` gives the step), else the base model."""
    if not args.checkpoint:
        from cft_ray.models.tiny import resolve_model

        return [Checkpoint(name="base", path=str(resolve_model(config.model)))]
    checkpoints = []
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).exists():
            raise SystemExit(f"cft-ray eval: --checkpoint {item!r} must be NAME=PATH of an existing model folder")
        checkpoints.append(Checkpoint(name=name, path=path, step=_trained_step(Path(path))))
    return checkpoints


def _trained_step(folder: Path) -> int | None:
    """The optimizer step a training checkpoint records in its ``trainer_state.json``."""
    state = folder / "trainer_state.json"
    return json.loads(state.read_text())["step"] if state.exists() else None


def _cmd_eval(args: argparse.Namespace) -> int:
    from cft_ray.stages import run_stage

    config = connected_config(args)
    checkpoints = _checkpoints(args, config)
    out = Path(args.output)
    if args.select:
        best = run_stage("select", config, out, checkpoints=checkpoints).best
        checkpoints = [c for c in checkpoints if c.name == best.name]
    result = run_stage("evaluate", config, out, checkpoints=checkpoints)
    print(Path(result.files["markdown"]).read_text())
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from cft_ray.eval.regrade import regrade

    s = regrade(args.input, args.output, args.mode, timeout_s=args.timeout, workers=args.workers, backend=args.backend)
    accuracy = 100 * s.correct / s.graded if s.graded else 0.0
    resumed = f", {s.resumed_from} written before" if s.resumed_from else ""
    print(f"graded {s.graded} rows ({args.mode}): {s.correct} correct ({accuracy:.1f}%), "
          f"{s.timed_out} timed out, {s.grade_errors} grading errors, {s.bad_lines} bad rows{resumed} -> {args.output}",
          file=sys.stderr)
    return 0 if not s.bad_lines else 1
