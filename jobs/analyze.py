"""Ray job: tables and plots of a Tune experiment (``python jobs/analyze.py runs/smoke/tune/smoke-sweep``)."""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
