"""How much the shared silicon CSV disagrees with itself: configurations measured more than once.

A row's configuration is what `llmsim validate silicon` simulates for it -- system, backend,
mode, model architecture (DeepSeek-R1 and DeepSeek-V3 share one), precision, ISL / OSL, client
concurrency and parallel layout (`serving/validate.py: plan_row`). Rows that repeat a
configuration with identical numbers (the same measurement listed twice) count once. For every
configuration with two or more distinct measurements, each measurement's deviation from the
configuration's median is reported (for two measurements a and b: |a - b| / (a + b)).

No simulator prediction can beat this spread on these rows: it is the floor under the median
APE of any deterministic model that sees only the CSV's columns.

    python benchmarks/silicon_repeats.py [--csv FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmsim.serving.validate import plan_rows, read_silicon_csv  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "silicon" / "aiconfigurator_silicon_sample.csv"
SAME_ARCH = {"deepseek-r1": "deepseek-v3"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    a = ap.parse_args()
    rows = read_silicon_csv(a.csv)
    groups: dict[tuple, set] = defaultdict(set)
    for p in plan_rows(rows):
        if p.dep_kwargs is None:
            continue  # rows the simulator does not model
        b = p.base
        model = SAME_ARCH.get(b["model"], b["model"])
        key = (b["system"], b["backend"], b["mode"], model, b["precision"], b["isl"], b["osl"], b["concurrency"], b["layout"])
        ttft, tpot = b.get("measured_ttft_ms"), b.get("measured_tpot_ms")
        if ttft is None or tpot is None:
            continue
        groups[key].add((round(float(ttft), 1), round(float(tpot), 3)))
    dev: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    repeated = 0
    for key, meas in groups.items():
        if len(meas) < 2:
            continue
        repeated += 1
        m = np.array(sorted(meas))
        med = np.median(m, axis=0)
        for t, p in m:
            dev[(key[1], key[2])].append((abs(t / med[0] - 1) * 100, abs(p / med[1] - 1) * 100))
    print(f"{a.csv}: {len(groups)} modelled configurations, {repeated} measured more than once "
          f"({sum(len(v) for v in dev.values())} measurements)")
    print(f"{'backend/mode':16s} {'meas':>5s} {'TTFT dev med %':>15s} {'TTFT p90 %':>11s} {'TPOT dev med %':>15s} {'TPOT p90 %':>11s}")
    for (be, mode), v in sorted(dev.items()):
        x = np.array(v)
        print(f"{be + '/' + mode:16s} {len(x):5d} {np.median(x[:, 0]):15.1f} {np.percentile(x[:, 0], 90):11.1f} "
              f"{np.median(x[:, 1]):15.1f} {np.percentile(x[:, 1], 90):11.1f}")


if __name__ == "__main__":
    main()
