"""`make bench`: every scenario of PERFORMANCE.md in one run, printed as one table
(see bench/harness.py and docs/performance.md)."""

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
