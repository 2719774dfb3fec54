"""`python -m bench [NAME ...]`: run the benchmarks (all by default) and print where results went."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

BENCHMARKS = ["bench_http", "bench_pki", "bench_dss", "bench_directory", "bench_pades", "bench_csc", "bench_workflows", "bench_archive",
              "bench_load"]


def main(names: list[str]) -> int:
    chosen = [n if n.startswith("bench_") else f"bench_{n}" for n in names] or BENCHMARKS  # `load` = bench_load
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="siegel-bench-") as tmp:
        for name in chosen:
            module = importlib.import_module(f"bench.{name}")
            path = module.run(Path(tmp))
            print(f"{name}: {path}")
            print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
