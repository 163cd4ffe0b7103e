"""End-to-end calibration on the shared silicon rows: held-out error before and after, per GPU.

For every GPU system of ../shared/data/silicon/aiconfigurator_silicon_sample.csv
(ai-dynamo/aiconfigurator `systems/silicon_sample.csv`, Apache-2.0) this runs what
`llmsim calibrate aiconfigurator_silicon_sample.csv --gpu G` runs (`llmsim.calibrate_serving`):
the four efficiency knobs (compute, memory, latency floors, network) are fitted on the rows of
that GPU with k-fold cross-validation by deployment configuration, and the mean TTFT / TPOT
median and p90 APE are printed for the shipped spec, for the calibrated spec on held-out
configurations (every row predicted by a fit that never saw its configuration), and in sample.

Nothing here changes the shipped specs: the fitted scales are printed, not written.

    python benchmarks/calibrate_serving.py [--gpus h100-sxm,b200-sxm] [--folds 5] [--metric tpot] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console
from rich.table import Table

from llmsim import calibrate_serving as cs
from llmsim.hardware import get_gpu

CSV = ROOT.parent / "shared" / "data" / "silicon" / "aiconfigurator_silicon_sample.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", default="h100-sxm,b200-sxm,b300-sxm,gb200,gb300")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--metric", default="tpot", choices=cs.METRICS)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    con = Console(width=170)
    t = Table(title=f"end-to-end calibration, {a.folds}-fold CV by configuration, fit on {a.metric}: median / p90 APE %")
    for c in ("GPU", "rows", "configs", "metric", "shipped", "held out", "in sample", "fitted scales"):
        t.add_column(c, justify="left" if c in ("GPU", "metric", "fitted scales") else "right")
    t0 = time.perf_counter()
    for name in a.gpus.split(","):
        g = get_gpu(name)
        rows, _ = cs.silicon_rows([CSV], g)
        n_conf = len({r.config for r in rows})
        if n_conf < a.folds:
            t.add_row(g.name, str(len(rows)), str(n_conf), "-", "-", "-", "-", f"too few configurations for {a.folds} folds")
            continue
        t1 = time.perf_counter()
        rep = cs.kfold_calibrate_serving(g, rows, k=a.folds, metric=a.metric, jobs=a.jobs)
        scales = ", ".join(f"{k} {v:.2f}" for k, v in rep.scales.items() if k not in rep.inactive)
        scales += f" (surrogate vs exact {rep.surrogate_median_ape['tpot']:.1f}%)"
        for m in ("tpot", "ttft"):
            e = rep.errors[m]
            cells = [f"{e[k].median_ape:.1f} / {e[k].p90_ape:.1f}" for k in ("shipped", "held_out", "in_sample")]
            t.add_row(g.name if m == "tpot" else "", str(rep.rows) if m == "tpot" else "", str(rep.configs) if m == "tpot" else "",
                      m.upper(), *cells, scales if m == "tpot" else f"({time.perf_counter() - t1:.0f} s)")
        for b, v in rep.by_backend.items():
            e = v["tpot"]
            t.add_row("", str(e["held_out"].n), "", f"TPOT {b}", *[f"{e[k].median_ape:.1f} / {e[k].p90_ape:.1f}" for k in ("shipped", "held_out", "in_sample")], "")
    con.print(t)
    con.print(f"total wall time {time.perf_counter() - t0:.0f} s ({a.jobs} jobs)")


if __name__ == "__main__":
    main()
