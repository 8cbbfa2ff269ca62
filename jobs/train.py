"""Ray job entry point: ``ray job submit -- python jobs/train.py --preset ...`` (same flags as `cft-ray train`)."""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
