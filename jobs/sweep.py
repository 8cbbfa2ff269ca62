"""Ray job: a Tune sweep (``ray job submit -- python jobs/sweep.py --preset smoke --grid train.method=[cft,sft]``)."""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
