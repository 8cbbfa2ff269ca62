"""``cft-ray critique``: teacher critiques (or answers) for a Parquet/JSONL file of rows."""

from __future__ import annotations

import argparse

from cft_ray.cli.common import add_config_args, connected_config
from cft_ray.teacher.messages import TEACHER_TEMPLATES


def _cmd_critique(args: argparse.Namespace) -> int:
    import ray

    from cft_ray.teacher import run_teacher

    config = connected_config(args)
    if args.synthetic:
        from cft_ray.core.synthetic import arithmetic_problems

        rows = ray.data.from_items(
            [{"id": f"synthetic-{i}", **row} for i, row in enumerate(arithmetic_problems(args.synthetic, seed=0))]
        )
    else:
        rows = args.input
    output = args.output or str(config.run_dir / "teacher")
    summary = run_teacher(output, rows=rows, teacher=config.teacher, template=args.template, dry_run=args.dry_run)
    if summary.output_path:
        print(f"wrote {summary.output_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("critique", help="teacher critiques for rows with id/question/response (OpenAI-compatible API)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("input", nargs="?", help="Parquet file/folder or JSONL of rows")
    source.add_argument("--synthetic", type=int, metavar="N", help="N built-in arithmetic rows instead of a file")
    p.add_argument("--output", help="output folder (default <output_dir>/<name>/teacher)")
    p.add_argument("--template", choices=sorted(TEACHER_TEMPLATES), help="prompt template (default teacher.prompt)")
    p.add_argument("--dry-run", action="store_true", help="print the token and dollar estimate, send nothing")
    add_config_args(p)
    p.set_defaults(func=_cmd_critique)
