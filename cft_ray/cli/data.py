"""``cft-ray data ...``: build the training sets, or just load and validate the sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cft_ray.cli.common import add_config_args, config_from_args, connected_config


def _cmd_build(args: argparse.Namespace) -> int:
    from cft_ray.stages import run_stage

    config = connected_config(args)
    out = Path(args.out) if args.out else config.run_dir / "data"
    summary = run_stage("data", config, out)
    for name, path in summary.datasets.items():
        card = json.loads((Path(path) / "card.json").read_text())
        print(f"{name:28s} rows={card['rows']:<8d} right_ratio={card['right_ratio']}  {path}")
    print(f"summary: {out / 'summary.json'}")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from cft_ray.data.sources import load_source
    from cft_ray.data.validate import split_quarantine, validate_batch

    config = config_from_args(args)
    d = config.data
    for source in d.sources:
        df = validate_batch(load_source(source), d.max_question_chars, d.max_response_chars)
        good, bad = split_quarantine(df)
        print(f"{source.kind:16s} rows={len(good)} quarantined={len(bad)}")
        for reason, count in bad["quarantine_reason"].value_counts().items():
            print(f"    {count:6d}  {reason}")
        if len(good):
            print(good.head(args.show).to_string(max_colwidth=60))
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="datasets: sources, noisy responses, critiques, builders")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = sub.add_parser("build", help="load -> validate -> (generate) -> dedup/decontaminate -> critique -> build")
    add_config_args(p)
    p.add_argument("--out", help="output folder (default <output_dir>/<name>/data)")
    p.set_defaults(func=_cmd_build)
    p = sub.add_parser("load", help="load and validate the sources only; print counts and a preview")
    add_config_args(p)
    p.add_argument("--show", type=int, default=3, help="rows to preview per source")
    p.set_defaults(func=_cmd_load)
