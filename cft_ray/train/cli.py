"""``cft-ray train``: fine-tune on a built dataset (CFT, SFT, ... differ only in the data)."""

from __future__ import annotations

import argparse
import json

from cft_ray.train.dataset import TrainDataError


def register(subparsers) -> None:
    from cft_ray.cli import add_config_args

    p = subparsers.add_parser("train", help="fine-tune with DeepSpeed ZeRO on Ray Train (resumable)")
    add_config_args(p)
    p.add_argument("--data", help="Parquet file or folder of alpaca rows; default <run>/data/<train.method>")
    p.add_argument("--output", help="output folder (checkpoints, metrics); default <run>/train/<train.method>")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from cft_ray.cli import config_from_args
    from cft_ray.train import train

    config = config_from_args(args)
    method = config.train.method
    data = args.data or config.run_dir / "data" / method
    output = args.output or config.run_dir / "train" / method
    try:
        result = train(config, data, output)
    except TrainDataError as exc:
        print(f"cft-ray train: {exc}")
        return 2
    print(json.dumps(result.to_json(), indent=1))
    return 0
