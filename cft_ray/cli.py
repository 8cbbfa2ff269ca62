"""cft-ray: one command, a subcommand per stage.

Each stage package registers its subcommands in its own ``cli.py`` (a ``register(subparsers)``
function); this module only wires them together and owns the shared config options.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import yaml

from cft_ray.config import ConfigError, PipelineConfig, list_presets, load_config

# Stage modules that add subcommands, in the order they appear in --help.
STAGE_CLIS = [
    "cft_ray.pipeline_cli",
    "cft_ray.data.cli",
    "cft_ray.teacher.cli",
    "cft_ray.train.cli",
    "cft_ray.eval.cli",
    "cft_ray.tune.cli",
]


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


def _cmd_config(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# sha256: {config.sha256()}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    for name in list_presets():
        config = load_config(preset=name, check_hardware=False)
        t = config.train
        print(
            f"{name:24s} model={config.model.name_or_path:28s} workers={t.num_workers} "
            f"gpu={t.use_gpu} zero={t.zero_stage} global_batch={t.global_batch_size} lr={t.learning_rate}"
        )
    return 0


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from cft_ray.models.tiny import resolve_model

    config = config_from_args(args)
    print(resolve_model(config.model.model_copy(update={"name_or_path": "tiny"})))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cft-ray", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="print the resolved config and its hash")
    add_config_args(p)
    p.set_defaults(func=_cmd_config)
    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=_cmd_presets)
    p = sub.add_parser("tiny-model", help="build (or find cached) the offline tiny model; prints its folder")
    add_config_args(p)
    p.set_defaults(func=_cmd_tiny_model)

    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"cft-ray: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
