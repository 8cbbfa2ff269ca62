"""``cft-ray run``: the full pipeline (what ``jobs/full_pipeline.py`` and ``make demo`` run)."""

from __future__ import annotations

import argparse

from cft_ray.cli.common import add_config_args, config_from_args


def _cmd_run(args: argparse.Namespace) -> int:
    from cft_ray.pipeline import print_summary, run_pipeline

    print_summary(run_pipeline(config_from_args(args)))  # the pipeline connects to Ray itself
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="the full pipeline: data -> critiques -> train -> select -> evaluate -> report"
    )
    add_config_args(p)
    p.set_defaults(func=_cmd_run)
