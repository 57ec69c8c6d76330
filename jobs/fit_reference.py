"""spark-submit entry point: `spark-submit jobs/fit_reference.py ...` is `driftline fit ...`."""

import sys

from monitoring.cli import main

if __name__ == "__main__":
    sys.exit(main(["fit", *sys.argv[1:]]))
