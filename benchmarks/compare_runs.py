"""Compare two from-scratch runs of the pipeline (two checkouts after `make reproduce`).

Prints whether ``reports/metrics.json`` is byte-identical and, for every evaluation result,
which fields differ (numbers: per-seed members, aggregate metrics, curves, seeds). Exit status
1 if any number differs. Not a test: it needs two full runs (about 13 min each here).

    python benchmarks/compare_runs.py /tmp/clone-a /tmp/clone-b
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

NUMBERS = ("members", "metrics", "curves", "seeds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    same = True
    ma, mb = (p / "reports" / "metrics.json" for p in (args.a, args.b))
    for path in (ma, mb):
        print(f"{path}: sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    identical = ma.read_bytes() == mb.read_bytes()
    same &= identical
    print(f"metrics.json byte-identical: {identical}")
    for fa in sorted((args.a / "results" / "evaluate").glob("*.json")):
        ra = json.loads(fa.read_text())
        rb = json.loads((args.b / "results" / "evaluate" / fa.name).read_text())
        numbers = [k for k in NUMBERS if ra[k] != rb[k]]
        other = sorted(k for k in ra if k not in NUMBERS and ra[k] != rb.get(k))
        same &= not numbers
        print(f"{fa.name}: numbers {'DIFFER in ' + ', '.join(numbers) if numbers else 'identical'}"
              f"; other fields that differ: {', '.join(other) or 'none'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
