"""How long `distill validate` takes on each example, against a bare Python start in the same run.

    .venv/bin/python benchmarks/validate_startup.py

Prints wall time per example (median of 5 runs) and its ratio to `python -c pass`; the issue asks
for under 1 s. Each run is a fresh process, as a user's would be.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the examples list the tests use
from tests.conftest import EXAMPLES  # noqa: E402 - after the sys.path line

RUNS = 5


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    baseline = median_seconds([sys.executable, "-c", "pass"])
    print(f"{'command':<48} {'median s':>9} {'x python -c pass':>17}")
    print(f"{'python -c pass':<48} {baseline:>9.3f} {1.0:>17.1f}")
    for example in EXAMPLES:
        shown = example.relative_to(REPO)
        seconds = median_seconds([sys.executable, "-m", "distill.compiler.cli", "validate", str(shown)])
        print(f"{'distill validate ' + str(shown):<48} {seconds:>9.3f} {seconds / baseline:>17.1f}")


if __name__ == "__main__":
    main()
