"""python -m metricpipe_demo up|down — see demo.py."""

import sys

from .demo import main

sys.exit(main())
