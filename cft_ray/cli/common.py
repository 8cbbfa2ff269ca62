"""What every subcommand shares: the config options, and connecting to Ray for the ones that run work."""

from __future__ import annotations

import argparse

from cft_ray.config import PipelineConfig, list_presets, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--preset / --config / --set, the same on every subcommand that reads a config."""
    parser.add_argument("--preset", help=f"preset name ({', '.join(list_presets())}); default smoke")
    parser.add_argument("--config", help="YAML file (may name its own `base:` preset)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one field, e.g. --set train.learning_rate=1e-5 (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    return load_config(preset=args.preset, path=args.config, overrides=args.overrides)


def connected_config(args: argparse.Namespace) -> PipelineConfig:
    """The config, with Ray connected as it says: the entry point of every single-stage command."""
    from cft_ray.raycluster import connect

    config = config_from_args(args).with_teacher_cache()  # a single stage pays once per run, too
    connect(config.ray)
    return config
