"""Wall time of each stage of the smoke pipeline, and where it goes.

Runs ``jobs/full_pipeline.py --preset smoke`` twice in a fresh run directory, as a newcomer's
``make demo`` would: a cold run, then a rerun in which every stage should be skipped (the
baseline it is compared with). Splits the cold run's time into Ray start-up (measured by the
pipeline around ``ray.init``), vLLM engine start-up (each engine prints its start-up time)
and the rest (real work, including Ray Data / Train scheduling). Goal: a cold smoke run under
10 minutes on 2 cores.

    python benchmarks/pipeline_smoke.py [--out benchmarks/results/pipeline_smoke.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cft_ray.models.generation import ENGINE_READY

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 600


def run_smoke(output_dir: Path) -> tuple[float, dict, list[float]]:
    """One pipeline run in a subprocess: (wall seconds, pipeline.json, engine start-ups)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "jobs/full_pipeline.py", "--preset", "smoke", "--set", f"output_dir={output_dir}"],
        cwd=REPO, capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"smoke pipeline failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    engines = [float(m) for m in re.findall(re.escape(ENGINE_READY) + r" ([0-9.]+) s", proc.stdout + proc.stderr)]
    return wall, json.loads((output_dir / "smoke" / "pipeline.json").read_text()), engines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline_smoke.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cft-ray-bench-") as tmp:
        cold_wall, cold, engines = run_smoke(Path(tmp))
        warm_wall, warm, _ = run_smoke(Path(tmp))

    engine_s = sum(engines)
    ray_s = cold["ray_startup_seconds"]
    result = {
        "cold_wall_seconds": round(cold_wall, 1),
        "warm_wall_seconds": round(warm_wall, 1),
        "warm_over_cold": round(warm_wall / cold_wall, 3),
        "cold_over_goal": round(cold_wall / GOAL_SECONDS, 3),
        "stages_cold": cold["stages"],
        "stages_warm_all_skipped": all(s["skipped"] for s in warm["stages"].values()),
        "share": {
            "ray_startup": round(ray_s / cold_wall, 3),
            "engine_startup": round(engine_s / cold_wall, 3),
            "work_and_overhead": round(1 - (ray_s + engine_s) / cold_wall, 3),
        },
        "engine_starts": len(engines),
        "engine_startup_seconds": [round(e, 1) for e in engines],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    print(f"{'stage':10s} {'cold s':>8s}")
    for stage, timing in cold["stages"].items():
        print(f"{stage:10s} {timing['seconds']:8.1f}")
    print(f"{'total':10s} {cold_wall:8.1f}   (goal {GOAL_SECONDS} s: ratio {result['cold_over_goal']})")
    print(f"rerun with every stage skipped: {warm_wall:.1f} s (ratio to cold {result['warm_over_cold']})")
    print("share of the cold run: " + ", ".join(f"{k} {v:.1%}" for k, v in result["share"].items())
          + f" ({len(engines)} engine starts)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
