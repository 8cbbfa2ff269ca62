"""``cft-ray train``: fine-tune on a built dataset (CFT, SFT, ... differ only in the data)."""

from __future__ import annotations

import argparse

from cft_ray.cli.common import add_config_args, connected_config


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune with DeepSpeed ZeRO on Ray Train (resumable)")
    add_config_args(p)
    p.add_argument("--data", help="Parquet file or folder of alpaca rows; default <run>/data/<train.method>")
    p.add_argument("--output", help="output folder (checkpoints, metrics); default <run>/train/<train.method>")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from cft_ray.stages import run_stage
    from cft_ray.train import TrainDataError

    config = connected_config(args)
    method = config.train.method
    data = args.data or config.run_dir / "data" / method
    output = args.output or config.run_dir / "train" / method
    try:
        result = run_stage("train", config, output, dataset=data)
    except TrainDataError as exc:
        print(f"cft-ray train: {exc}")
        return 2
    print(result.model_dump_json(indent=1))
    return 0
