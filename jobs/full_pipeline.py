"""The full CFT pipeline as a Ray job.

    python jobs/full_pipeline.py --preset smoke                       # laptop, local Ray
    ray job submit --working-dir . -- python jobs/full_pipeline.py --config my.yaml
"""

import sys

from cft_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
