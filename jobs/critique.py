"""Ray job: teacher critiques (``ray job submit -- python jobs/critique.py rows.parquet --preset ...``)."""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["critique", *sys.argv[1:]]))
