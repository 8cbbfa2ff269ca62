"""Ray job: build the training sets (``ray job submit -- python jobs/build_data.py --preset ...``)."""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "build", *sys.argv[1:]]))
