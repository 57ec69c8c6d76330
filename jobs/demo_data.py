"""spark-submit entry point: `spark-submit jobs/demo_data.py ...` is `driftline demo-data ...`."""

import sys

from monitoring.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo-data", *sys.argv[1:]]))
