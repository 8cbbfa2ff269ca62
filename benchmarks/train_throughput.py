"""Training throughput with sequence packing against without, on the same run.

CPU (default): the tiny model, 2 DeepSpeed workers, CFT rows of varied length; both runs see the
same samples per optimizer step. Prints tokens/s, the non-padding token fraction and the ratios.

GPU (``--gpu``, a Ray cluster with GPUs): a random-initialised 1.5B-parameter Qwen2 configuration
in bf16 with ZeRO-3, packing on, reporting the model FLOPs utilisation (paper reference: 8 x H100,
about 1 hour for 50K rows, about 12% MFU by our estimate).

    python benchmarks/train_throughput.py            # CPU, writes benchmarks/results/train_throughput.json
    python benchmarks/train_throughput.py --gpu --workers 8
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cft_ray.config import load_config
from cft_ray.raycluster import connect
from cft_ray.core.formats import cft_row
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.train import train

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


def varied_cft_rows(n: int, seed: int, max_sentences: int) -> list[dict]:
    """CFT rows whose critiques vary in length, as real critiques do (padding then matters)."""
    rng = random.Random(seed)
    rows = []
    for i, p in enumerate(arithmetic_problems(n, seed=seed)):
        verdict = "right" if p["response_is_correct"] else "wrong"
        body = " ".join(f"Step {k} checks out against {p['reference_answer']}." for k in range(rng.randint(1, max_sentences)))
        rows.append({"id": f"b{i}", **cft_row(p["question"], p["response"], f"{body}\nConclusion: {verdict} [END]")})
    return rows


def write_rows(rows: list[dict], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def summarise(metrics_path: Path) -> dict:
    """Mean over optimizer steps, the first (warm-up, allocations) left out."""
    records = [json.loads(line) for line in metrics_path.read_text().splitlines()][1:]
    out = {
        "steps": len(records) + 1,
        "tokens_per_s": statistics.mean(r["tokens_per_s"] for r in records),
        "non_padding_fraction": 1 - statistics.mean(r["padding_fraction"] for r in records),
        "seconds_per_step": statistics.mean(r["seconds"] for r in records),
        "final_loss": records[-1]["loss"],
    }
    if "mfu" in records[-1]:
        out["mfu"] = statistics.mean(r["mfu"] for r in records)
    return out


def random_qwen2_1p5b(folder: Path) -> Path:
    """Qwen2.5-1.5B's shape with random weights (no hub), and the tiny model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from cft_ray.config import ModelConfig
    from cft_ray.models.tiny import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ModelConfig()))
    config = Qwen2Config(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="1.5B random Qwen2, bf16, ZeRO-3, report MFU")
    parser.add_argument("--workers", type=int, default=None, help="GPUs (default 1) or CPU workers (default 2)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)

    connect(load_config("smoke").ray)
    work = Path(tempfile.mkdtemp(prefix="cft-ray-train-bench-"))
    if args.gpu:
        workers, rows, steps = args.workers or 1, args.rows or 4096, args.steps or 8
        model = random_qwen2_1p5b(work / "qwen2-1.5b-random")
        overrides = [f"model.name_or_path={model}", "train.use_gpu=true", "train.bf16=true", "train.zero_stage=3",
                     "train.cutoff_len=2048", "train.micro_batch_size=4", f"train.global_batch_size={64 * workers}",
                     "train.gradient_checkpointing=true", "train.learning_rate=5e-6"]
        variants = {"packed": True}
        data = write_rows(varied_cft_rows(rows, seed=3, max_sentences=120), work / "rows.parquet")
    else:
        workers, rows, steps = args.workers or 2, args.rows or 96, args.steps or 6
        overrides = ["train.zero_stage=2", "train.micro_batch_size=4", "train.global_batch_size=16",
                     "train.cutoff_len=1024", "train.learning_rate=1e-3"]
        variants = {"unpacked": False, "packed": True}
        data = write_rows(varied_cft_rows(rows, seed=3, max_sentences=20), work / "rows.parquet")
    overrides += [f"train.num_workers={workers}", f"train.max_steps={steps}", f"train.save_steps={steps}"]

    results: dict = {"device": "gpu" if args.gpu else "cpu", "workers": workers, "rows": rows, "steps": steps}
    for name, packing in variants.items():
        config = load_config("smoke", overrides=[*overrides, f"train.packing={packing}", f"name=bench-{name}"])
        began = time.perf_counter()
        result = train(work / name, dataset=data, model=config.model, train=config.train, ray=config.ray)
        results[name] = {**summarise(Path(result.metrics_path)), "wall_s": time.perf_counter() - began}
        print(f"{name:9s} " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in results[name].items()))
    if "unpacked" in results:
        results["packed_over_unpacked_tokens_per_s"] = results["packed"]["tokens_per_s"] / results["unpacked"]["tokens_per_s"]
        results["packed_over_unpacked_non_padding"] = (
            results["packed"]["non_padding_fraction"] / results["unpacked"]["non_padding_fraction"])
        print(f"packing: tokens/s x{results['packed_over_unpacked_tokens_per_s']:.2f}, "
              f"non-padding fraction x{results['packed_over_unpacked_non_padding']:.2f}")
    if "mfu" in results.get("packed", {}):
        print(f"MFU {100 * results['packed']['mfu']:.1f}% (paper estimate ~12%, goal > 40%)")
    out = RESULTS if not args.gpu else RESULTS.with_name("train_throughput_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
