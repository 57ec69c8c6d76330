"""spark-submit entry point: `spark-submit jobs/monitor.py ...` is `driftline run ...`."""

import sys

from monitoring.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
