"""cft-ray: one command, a subcommand per stage.

Each module of this package registers one stage's subcommands (a ``register(subparsers)``
function); this one wires them together. The shared config options live in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import yaml

from cft_ray.cli.common import add_config_args, config_from_args
from cft_ray.config import ConfigError, list_presets, load_config

# Modules that add subcommands, in the order they appear in --help.
STAGE_CLIS = ["run", "data", "teacher", "train", "eval", "tune"]


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
        importlib.import_module(f"cft_ray.cli.{module}").register(sub)
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
