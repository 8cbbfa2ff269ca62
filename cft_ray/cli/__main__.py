import sys

from cft_ray.cli import main

sys.exit(main())
