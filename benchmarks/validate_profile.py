"""How well a bundled `llmsim profile` run (PyTorch kernels, measured on a lent GPU) predicts
the engines' own kernel tables in ../shared/data/kernels/h100 (AIConfigurator: TRT-LLM and
vLLM kernels on an H100 SXM). Nothing here is fitted to the shared tables.

Three predictors, scored on every shared row they answer (median APE %, bias = median
signed error %):

* roofline (shipped): the H100 roofline whose efficiency parameters were fitted on the
  *train* split of these same shared tables; its held-out split is the fair column.
* profile lookup: the bundled H100 profile's tables, interpolated (`--kernels profile`).
* roofline fit on profile: the efficiency parameters fitted (`calibrate.fit_efficiency`)
  on the profile alone, then used as a roofline on the shared shapes.

    python benchmarks/validate_profile.py [--profile DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmsim import calibrate as cal  # noqa: E402
from llmsim.cost.measured import KernelTables, bundled_profiles  # noqa: E402
from llmsim.hardware import get_gpu  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "kernels" / "h100"


def lookup(kt: KernelTables, kind: str, r: dict, i: int) -> float | None:
    if kind == "gemm":
        return kt.gemm_s(r["m"][i], r["n"][i], r["k"][i], str(r["gemm_dtype"][i]))
    heads = (int(r["num_heads"][i]), int(r["num_key_value_heads"][i]), int(r["head_dim"][i]))
    if kind == "context_attention":
        return kt.context_attention_s(r["batch_size"][i], r["isl"][i], *heads, dtype=str(r["attn_dtype"][i]),
                                      kv_dtype=str(r["kv_cache_dtype"][i]), window=int(r["window_size"][i]))
    return kt.generation_attention_s(r["batch_size"][i], r["isl"][i] + r["step"][i], *heads,
                                     kv_dtype=str(r["kv_cache_dtype"][i]), window=int(r["window_size"][i]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", type=Path, default=bundled_profiles().get("h100-sxm"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    gpu = get_gpu("h100-sxm")
    shared = cal.read_kernel_tables([SHARED])
    kt = KernelTables.load(a.profile)
    e_prof = cal.fit_efficiency(gpu, cal.read_kernel_tables([a.profile]))
    print(f"profile {a.profile} ({kt.device}) vs shared engine tables {SHARED}")
    hdr = (f"{'table':22s} {'rows':>7s} | {'roofline (shipped)':>18s} {'held-out':>8s} | {'profile lookup':>14s} {'bias':>6s} "
           f"{'answered':>8s} {'roofline same rows':>18s} | {'roofline fit on profile':>23s}")
    print(hdr)
    print("-" * len(hdr))
    for kind, r in shared.items():
        meas = cal.measured_s(r)
        held = cal.holdout_mask(kind, r)
        rf = cal.predict(kind, r, gpu)
        rfp = cal.predict(kind, r, gpu, e_prof)
        lk = np.array([np.nan if (x := lookup(kt, kind, r, i)) is None else x for i in range(len(meas))])
        subsets = {kind: np.ones(len(meas), bool)}
        if kind == "gemm":
            subsets.update({f"  gemm {d}": r["gemm_dtype"] == d for d in np.unique(r["gemm_dtype"])})
        for name, s in subsets.items():
            ans = s & np.isfinite(lk)

            def med(p: np.ndarray, m: np.ndarray) -> str:
                return f"{np.median(cal.ape(p[m], meas[m])):.1f}" if m.any() else "-"

            bias = f"{np.median((lk[ans] - meas[ans]) / meas[ans]) * 100:+.1f}" if ans.any() else "-"
            print(f"{name:22s} {s.sum():7d} | {med(rf, s):>18s} {med(rf, s & held):>8s} | {med(lk, ans):>14s} {bias:>6s} "
                  f"{ans.sum():8d} {med(rf, ans):>18s} | {med(rfp, s):>23s}")
    print()
    print("shipped roofline vs each bundled profile on its own GPU (median APE %, bias %): how far the")
    print("roofline (fitted on H100 engine tables) is from PyTorch kernels on the H100 and on the H200")
    for name, path in bundled_profiles().items():
        g = get_gpu(name)
        for kind, r in cal.read_kernel_tables([path]).items():
            meas = cal.measured_s(r)
            p = cal.predict(kind, r, g)
            print(f"  {name:10s} {kind:22s} rows {len(meas):6d}  APE {np.median(cal.ape(p, meas)):5.1f}  "
                  f"bias {np.median((p - meas) / meas) * 100:+6.1f}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
