"""Ray job: score checkpoints on the benchmarks (`cft-ray eval`), e.g.

    ray job submit -- python jobs/evaluate.py --preset paper-qwen2.5-math-7b \
        --checkpoint step-40=/ckpt/checkpoint-40 --select --output runs/eval
"""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
