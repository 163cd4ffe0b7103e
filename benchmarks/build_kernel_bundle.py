"""Regenerate the bundled H100 kernel tables (src/llmsim/kernels_data/h100/kernel_tables.npz).

Reads the AIConfigurator-format parquet files in ../shared/data/kernels/h100 (or the
directory given as the first argument), reduces them to dense float32 grids of
latency in milliseconds (repeated measurements -> median), and writes the bundle
that `KernelTables.load()` reads with numpy only. The LICENSE and NOTICE files next
to it carry the Apache-2.0 attribution to ai-dynamo/aiconfigurator.

    python benchmarks/build_kernel_bundle.py [SOURCE_DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmsim.cost.measured import KernelTables  # noqa: E402

DEFAULT_SRC = ROOT.parent / "shared" / "data" / "kernels" / "h100"
DEFAULT_OUT = ROOT / "src" / "llmsim" / "kernels_data" / "h100"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default=str(DEFAULT_SRC), help="directory of AIConfigurator *_perf.parquet")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="bundle directory")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    src = KernelTables.load(args.source)
    out = src.save(args.out)
    t1 = time.perf_counter()
    print(f"read {len(src.sources)} tables from {args.source} ({t1 - t0:.1f} s)")
    for s in src.sources:
        print(f"  {s['table']:<22} {s['framework']:<8} {s['version']:<12} {s['rows']:>7} rows  {s['file']}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")

    # Check: the bundle answers exactly like the source tables (up to float32 rounding).
    bun = KernelTables._load_bundle(out)
    worst = 0.0
    for table in ("gemm", "context_attention", "generation_attention", "collective"):
        a, b = src.records(table), bun.records(table)
        if len(a["latency_s"]) != len(b["latency_s"]):
            raise SystemExit(f"{table}: {len(a['latency_s'])} points in the source, {len(b['latency_s'])} in the bundle")
        worst = max(worst, float(np.max(np.abs(b["latency_s"] / a["latency_s"] - 1))))
        print(f"  {table:<22} {len(a['latency_s']):>7} measured points")
    print(f"max relative difference bundle vs source: {worst:.2e}")
    for f in ("LICENSE", "NOTICE"):
        if not (Path(args.out) / f).is_file():
            print(f"warning: {Path(args.out) / f} is missing (Apache-2.0 attribution must ship with the data)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
