"""``cft-ray sweep`` (Ray Tune over any config fields) and ``cft-ray analyze`` (its tables and plots)."""

from __future__ import annotations

import argparse
import json

import yaml

from cft_ray.cli.common import add_config_args, config_from_args
from cft_ray.config import ConfigError, apply_overrides


def _grid_arg(text: str) -> tuple[str, list]:
    key, sep, raw = text.partition("=")
    values = yaml.safe_load(raw) if sep else None
    if not sep or not key.strip() or not isinstance(values, list):
        raise argparse.ArgumentTypeError(f"--grid {text!r}: write KEY=[v1,v2], e.g. train.method=[cft,sft]")
    return key.strip(), values


def _cmd_sweep(args: argparse.Namespace) -> int:
    from cft_ray.tune import sweep
    from cft_ray.tune.analysis import analyze

    config = config_from_args(args)
    if args.grid:
        space = {**config.tune.param_space, **dict(args.grid)}
        config = apply_overrides(config, {"tune.param_space": space}, "--grid")
    result = sweep(config)  # validates every grid point, then connects to Ray
    print(f"experiment: {result.experiment_dir}  trials: {result.num_trials}  errors: {result.num_errors}")
    if result.best_config is not None:
        print(f"best: {json.dumps(result.best_config)} -> {json.dumps(result.best_metrics, default=str)}")
    if not args.no_analyze and "://" not in result.experiment_dir:
        print(f"analysis: {analyze(result.experiment_dir, metric=config.tune.metric, mode=config.tune.mode).output_dir}")
    return 1 if result.num_errors else 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from cft_ray.tune.analysis import analyze

    try:
        result = analyze(args.experiment_dir, args.out, metric=args.metric, mode=args.mode)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    print((result.output_dir / "summary.md").read_text())
    print(f"written to {result.output_dir}: {', '.join(p.name for p in result.files)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="Ray Tune grid over data size x teacher x method x any config field")
    add_config_args(p)
    p.add_argument(
        "--grid", action="append", default=[], type=_grid_arg, metavar="KEY=[V1,V2]",
        help="add a grid axis to tune.param_space, e.g. --grid data.subset.sizes=[4000,50000] (repeatable)",
    )
    p.add_argument("--no-analyze", action="store_true", help="skip writing the analysis after the sweep")
    p.set_defaults(func=_cmd_sweep)

    p = subparsers.add_parser("analyze", help="tables and plots of a Tune experiment folder (also partial or failed)")
    p.add_argument("experiment_dir", help="the Tune experiment folder (<storage>/<name>)")
    p.add_argument("--out", help="output folder (default <experiment_dir>/analysis)")
    p.add_argument("--metric", default="avg", help="metric to rank trials by (default avg)")
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.set_defaults(func=_cmd_analyze)
