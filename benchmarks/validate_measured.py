"""Held-out accuracy of the measured-kernel interpolation (llmsim.cost.measured).

Leave-one-slice-out: for every interior grid value of one axis of a table (one n of
the GEMM table, one batch size of the attention tables, one message size of the
collectives ...), remove *all* measurements with that value with
``KernelTables.without``, then predict the removed points from the remaining ones
with the same lookup code the cost model uses, and compare with the measurement.
A point is scored only where the removed value lies strictly inside the range that
its own configuration measured (interpolation, not extrapolation). Points the
reduced tables cannot answer (the lookup returns None: the cell touches another
unmeasured point) are counted in the `answered` column, not in the errors.

Separate rows test the cross-configuration rules: a whole head count removed
(attention: interpolate across head counts of the same GQA ratio / KV heads, or
scale linearly above the largest) and 4 GPUs removed for the collectives
(interpolate between 2 and 8 GPUs).

Data: ../shared/data/kernels/h100 (AIConfigurator, Apache-2.0) by default, or the
bundled copy with --bundled. Nothing is fitted: the errors are pure interpolation
errors on points the interpolator did not see.

    python benchmarks/validate_measured.py [--bundled | --data DIR] [--quick]
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

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "kernels" / "h100"

KEY = {
    "gemm": ("framework", "dtype"),
    "context_attention": ("framework", "attn_dtype", "kv_dtype", "head_dim", "window", "num_heads", "num_kv_heads"),
    "generation_attention": ("framework", "kv_dtype", "head_dim", "window", "num_heads", "num_kv_heads"),
    "collective": ("implementation", "op", "dtype", "num_gpus"),
}


def predict(kt: KernelTables, table: str, r: dict, i: int) -> float | None:
    if table == "gemm":
        return kt.gemm_s(r["m"][i], r["n"][i], r["k"][i], dtype=r["dtype"][i], framework=r["framework"][i])
    if table == "context_attention":
        return kt.context_attention_s(r["batch"][i], r["isl"][i], int(r["num_heads"][i]), int(r["num_kv_heads"][i]),
                                      int(r["head_dim"][i]), dtype=r["attn_dtype"][i], kv_dtype=r["kv_dtype"][i],
                                      window=int(r["window"][i]), framework=r["framework"][i])
    if table == "generation_attention":
        return kt.generation_attention_s(r["batch"][i], r["kv_len"][i], int(r["num_heads"][i]),
                                         int(r["num_kv_heads"][i]), int(r["head_dim"][i]), kv_dtype=r["kv_dtype"][i],
                                         window=int(r["window"][i]), framework=r["framework"][i])
    return kt.collective_s(r["op"][i], int(r["num_gpus"][i]), r["message_bytes"][i],
                           implementation=r["implementation"][i], dtype=r["dtype"][i])


def _group_ids(r: dict, fields: tuple[str, ...]) -> np.ndarray:
    keys = list(zip(*(r[f].tolist() for f in fields)))
    index: dict = {}
    return np.array([index.setdefault(k, len(index)) for k in keys])


def slice_holdout(kt: KernelTables, table: str, axis: str, subset: np.ndarray | None = None,
                  stride: int = 1) -> tuple[np.ndarray, int]:
    """APE (%) of every interior point of `axis`, predicted with that axis value removed.

    Returns (errors of answered points, number of scored points).
    """
    r = kt.records(table)
    n = len(r["latency_s"])
    subset = np.ones(n, bool) if subset is None else subset
    gid = _group_ids(r, tuple(f for f in KEY[table] if f != axis))
    x = r[axis].astype(float)
    # per-configuration range of this axis -> interior points only
    lo = np.full(gid.max() + 1, np.inf)
    hi = np.full(gid.max() + 1, -np.inf)
    np.minimum.at(lo, gid, x)
    np.maximum.at(hi, gid, x)
    interior = (x > lo[gid]) & (x < hi[gid]) & subset
    errs: list[float] = []
    scored = 0
    for v in np.unique(x[interior])[::stride]:
        drop = (x == v) & subset
        kt2 = kt.without(table, drop)
        for i in np.nonzero(drop & interior)[0]:
            scored += 1
            p = predict(kt2, table, r, i)
            if p is not None:
                errs.append(abs(p / r["latency_s"][i] - 1.0) * 100.0)
    return np.array(errs), scored


def heads_holdout(kt: KernelTables, table: str, subset: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Remove each head count entirely (all KV-head variants), predict it from the others."""
    r = kt.records(table)
    subset = np.ones(len(r["latency_s"]), bool) if subset is None else subset
    h = r["num_heads"]
    hs = np.unique(h)
    errs: list[float] = []
    scored = 0
    for v in hs[1:-1]:
        drop = (h == v) & subset
        kt2 = kt.without(table, drop)
        for i in np.nonzero(drop)[0]:
            scored += 1
            p = predict(kt2, table, r, i)
            if p is not None:
                errs.append(abs(p / r["latency_s"][i] - 1.0) * 100.0)
    return np.array(errs), scored


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help=f"directory of AIConfigurator parquet (default {DEFAULT_DATA})")
    src.add_argument("--bundled", action="store_true", help="validate the bundled tables instead")
    ap.add_argument("--quick", action="store_true", help="hold out every 3rd slice only (faster)")
    args = ap.parse_args(argv)

    if args.bundled:
        kt = KernelTables.load()
        where = "bundled tables (llmsim/kernels_data/h100)"
    else:
        data = Path(args.data) if args.data else DEFAULT_DATA
        if not data.is_dir():
            print(f"{data} not found; validating the bundled tables instead")
            kt, where = KernelTables.load(), "bundled tables (llmsim/kernels_data/h100)"
        else:
            kt, where = KernelTables.load(data), str(data)
    stride = 3 if args.quick else 1
    print(f"Held-out interpolation accuracy, {kt.device}: {where}")
    print("Kernel latency tables from ai-dynamo/aiconfigurator (systems/data/h100_sxm), Apache-2.0")
    print("leave-one-slice-out: APE = |predicted/measured - 1|; nothing is fitted\n")

    rows: list[tuple] = []
    headline: list[tuple] = []

    def add(name: str, axis: str, res: tuple[np.ndarray, int], pool: list | None) -> None:
        e, scored = res
        rows.append((name, axis, scored, len(e), e))
        if pool is not None:
            pool.append(res)

    t0 = time.perf_counter()
    g = kt.records("gemm")
    for fw in sorted(set(g["framework"].tolist())):
        sub = g["framework"] == fw
        pool: list = []
        for axis in ("n", "k", "m"):
            add(f"GEMM {fw}", axis, slice_holdout(kt, "gemm", axis, sub, stride), pool)
        headline.append((f"GEMM {fw}", "n,k,m slices", pool))
    for table, seq, name in (("context_attention", "isl", "context attention"),
                             ("generation_attention", "kv_len", "generation attention")):
        pool = []
        for axis in ("batch", seq):
            add(name, axis, slice_holdout(kt, table, axis, None, stride), pool)
        headline.append((name, f"batch,{seq} slices", pool))
        add(name, "num_heads (cross-config)", heads_holdout(kt, table), None)
    c = kt.records("collective")
    for impl, name in (("nccl", "NCCL"), ("trtllm", "TRT-LLM custom all-reduce")):
        sub = c["implementation"] == impl
        if not sub.any():
            continue
        pool = []
        add(name, "message_bytes", slice_holdout(kt, "collective", "message_bytes", sub, 1), pool)
        headline.append((name, "message-size slices", pool))
        add(name, "num_gpus=4 (from 2 and 8)", slice_holdout(kt, "collective", "num_gpus", sub, 1), None)

    def fmt(e: np.ndarray) -> tuple[str, str]:
        if len(e) == 0:
            return "   -  ", "   -  "
        return f"{np.median(e):6.2f}", f"{np.percentile(e, 90):6.2f}"

    print("Summary (headline: interpolation inside each measured configuration)")
    print(f"{'table':<28} {'held out':<22} {'points':>8} {'answered':>9} {'median APE %':>13} {'p90 APE %':>10}")
    for name, what, pool in headline:
        e = np.concatenate([p[0] for p in pool]) if pool else np.array([])
        scored = sum(p[1] for p in pool)
        med, p90 = fmt(e)
        print(f"{name:<28} {what:<22} {scored:>8} {len(e) / max(scored, 1):>8.1%} {med:>13} {p90:>10}")
    print("\nBy held-out axis")
    print(f"{'table':<28} {'held-out axis':<28} {'points':>8} {'answered':>9} {'median APE %':>13} {'p90 APE %':>10}")
    for name, axis, scored, answered, e in rows:
        med, p90 = fmt(e)
        print(f"{name:<28} {axis:<28} {scored:>8} {answered / max(scored, 1):>8.1%} {med:>13} {p90:>10}")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
