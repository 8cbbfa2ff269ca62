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
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per symbolic comparison")
    p.add_argument("--workers", type=int, default=2, help="sympy worker processes")
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
    from cft_ray.core.benchmarks import BENCHMARKS, LETTERS
    from cft_ray.eval.grader import Grader

    rows, bad = [], 0
    with open(args.input) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                str(row["completion"]), str(row["reference"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                # Kept as an error record, never dropped.
                row = {"line": line_no, "raw": line.rstrip("\n"), "error": f"bad row: {exc!r}"}
                bad += 1
            rows.append(row)
    good = [r for r in rows if "error" not in r]
    letters = []
    for r in good:
        bench = BENCHMARKS.get(r.get("benchmark", ""))
        letters.append(LETTERS[: bench.num_options] if bench is not None and bench.num_options else None)
    with Grader(modes=(args.mode,), timeout_s=args.timeout, num_workers=args.workers) as grader:
        grades = grader.grade([str(r["completion"]) for r in good], [str(r["reference"]) for r in good], letters)
    for row, grade in zip(good, grades):
        row.update(extracted=grade.extracted, correct=grade.correct[args.mode], timed_out=grade.timed_out)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    correct = sum(r["correct"] for r in good)
    timed_out = sum(r["timed_out"] for r in good)
    accuracy = 100 * correct / len(good) if good else 0.0
    print(f"graded {len(good)} rows ({args.mode}): {correct} correct ({accuracy:.1f}%), "
          f"{timed_out} timed out, {bad} bad rows -> {args.output}", file=sys.stderr)
    return 0 if not bad else 1
