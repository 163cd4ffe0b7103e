"""Accuracy of llmsim's cost model against real measurements in ../shared/data.

Prints median and p90 absolute percentage error (APE) per category, for the roofline
alone (`--kernels none`) and with the measured H100 kernel tables, and says which
rows the model was fitted on:

- AIConfigurator H100 GEMM / context attention / generation attention tables: the
  roofline efficiency parameters (`Efficiency` defaults) were fitted on the *train*
  split (70% of shapes, grouped so that no held-out shape is seen; seed 0); the
  *held-out* split was never used. `--fit` refits and prints the parameters.
- AIConfigurator NCCL table: the roofline's collective_* parameters were fitted on the
  *train* groups (70% of (collective, GPUs, dtype) groups, seed 0; `--fit` refits them);
  the spec-sheet alpha-beta model they replaced is printed beside them.
- Measured-table interpolation on held-out shapes: see benchmarks/validate_measured.py
  (leave-one-slice-out), summarised here with --measured-holdout.
- Vidur per-operator CSVs (Llama-2-70B on H100, Llama-3-8B on A100), Vidur all-reduce
  and send/recv CSVs, Splitwise prompt/token times: never used for fitting anything.

    python benchmarks/validate_kernels.py [--fit] [--measured-holdout] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmsim import calibrate as cal  # noqa: E402
from llmsim.cost.measured import KernelTables  # noqa: E402
from llmsim.cost.model import CostModel  # noqa: E402
from llmsim.cost.ops import Batch, OpBuilder, comm  # noqa: E402
from llmsim.errors import LlmsimError  # noqa: E402
from llmsim.estimate import estimate  # noqa: E402
from llmsim.hardware import get_gpu  # noqa: E402
from llmsim.layout import Parallel, Precision  # noqa: E402
from llmsim.models import get_model  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
rows: list[dict] = []


def record(category: str, backend: str, split: str, pred, meas) -> None:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    ok = np.isfinite(pred) & np.isfinite(meas) & (meas > 0)
    s = cal.stats(pred[ok], meas[ok])
    rows.append({"category": category, "backend": backend, "split": split, **s.to_dict()})


def aiconfigurator(fit: bool) -> None:
    h100 = get_gpu("h100-sxm")
    tabs = cal.read_kernel_tables([SHARED / "kernels" / "h100"])
    held = {k: cal.holdout_mask(k, v) for k, v in tabs.items()}
    e = h100.efficiency
    if fit:
        t = time.time()
        e = cal.fit_efficiency(h100, tabs, {k: ~h for k, h in held.items()})
        print(f"# refitted on the train split in {time.time() - t:.1f} s:\n# {e!r}\n")
    for kind, st in cal.evaluate(h100, tabs, held, e).items():
        for split, s in st.items():
            rows.append({"category": f"aiconfigurator h100 {kind}", "backend": "roofline", "split": "fitted (train)" if split == "train" else "held out", **s.to_dict()})


def nccl(fit: bool) -> None:
    """NCCL collectives: the roofline's collective_* parameters were fitted on the train groups
    (70% of (collective, GPUs, dtype) groups, seed 0); the spec-sheet alpha-beta model they
    replaced (link bandwidth x 0.8, latency (1 + log2 g) x 3 us, 0.7 of it for all_gather /
    reduce_scatter / alltoall, no ramp) is reported beside them."""
    h100 = get_gpu("h100-sxm")
    tab = cal.read_collective_table(SHARED / "kernels" / "h100" / "h100_comm_nccl_2.27.3_nccl_perf.parquet")
    held = cal.collective_holdout_mask(tab)
    e = h100.efficiency
    prior = e.model_copy(update=cal.ALPHA_BETA_PRIOR)
    if fit:
        e = cal.fit_collectives(h100.model_copy(update={"efficiency": prior}), tab, ~held)
        print("# collectives refitted on the train groups:\n# " + ", ".join(f"{k}={getattr(e, k)!r}" for k in cal.COLLECTIVE_FIELDS) + "\n")
    for name, eff in (("roofline", e), ("alpha-beta prior (before 2026-11-23)", prior)):
        pred = cal.predict_collectives(h100, tab, eff)
        record("aiconfigurator h100 nccl collectives", name, "fitted (train)", pred[~held], tab.seconds[~held])
        record("aiconfigurator h100 nccl collectives", name, "held out", pred[held], tab.seconds[held])


VIDUR_OPS = {
    "attn_pre_proj": "qkv_proj",
    "attn_post_proj": "o_proj",
    "mlp_up_proj": "mlp_up",
    "mlp_down_proj": "mlp_down",
    "mlp_act": "mlp_act",
    "input_layernorm": "input_norm",
    "attn_rope": "rope",
}


def vidur_compute(kt: KernelTables) -> None:
    import pandas as pd

    for fname, model, gpu in (
        ("compute_h100_meta-llama_Llama-2-70b-hf_mlp.csv", "llama-2-70b", "h100-sxm"),
        ("compute_a100_meta-llama_Meta-Llama-3-8B_mlp.csv", "llama-3-8b", "a100-sxm-80gb"),
    ):
        df = pd.read_csv(SHARED / "vidur" / fname)
        spec, hw = get_model(model), get_gpu(gpu)
        backends = [("roofline", CostModel(hw, None))]
        if kt.matches_gpu(hw.name):
            backends.append(("measured tables", CostModel(hw, kt)))
        for bname, cm in backends:
            pred, meas = {}, {}
            for tokens, tp in zip(df.num_tokens, df.num_tensor_parallel_workers):
                ops = {o.name: o for o in OpBuilder(spec, Parallel(tp=int(tp)), Precision()).build(Batch([(int(tokens), 0)], []))}
                row = df[(df.num_tokens == tokens) & (df.num_tensor_parallel_workers == tp)].iloc[0]
                for vname, oname in VIDUR_OPS.items():
                    col = f"time_stats.{vname}.median"
                    if col in df and oname in ops and not math.isnan(row[col]):
                        pred.setdefault(vname, []).append(cm.cost(ops[oname]).time_s)
                        meas.setdefault(vname, []).append(row[col] * 1e-3)
            gemm_p = sum((pred[k] for k in ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")), [])
            gemm_m = sum((meas[k] for k in ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")), [])
            record(f"vidur {gpu} {model} GEMMs", bname, "never fitted", gemm_p, gemm_m)
            ew = [k for k in ("mlp_act", "input_layernorm", "attn_rope") if k in pred]
            record(f"vidur {gpu} {model} norms/activation/rope", bname, "never fitted", sum((pred[k] for k in ew), []), sum((meas[k] for k in ew), []))


def vidur_network() -> None:
    import pandas as pd

    for fname, gpu, coll in (
        ("network_h100_dgx_all_reduce.csv", "h100-sxm", "all_reduce"),
        ("network_a100_dgx_all_reduce.csv", "a100-sxm-80gb", "all_reduce"),
        ("network_h100_dgx_send_recv.csv", "h100-sxm", "send_recv"),
    ):
        df = pd.read_csv(SHARED / "vidur" / fname)
        hw = get_gpu(gpu)
        cm = CostModel(hw, None)
        # Vidur runs collectives of num_workers GPUs spread over nodes of devices_per_node
        sel = df[df.num_workers <= df.devices_per_node] if coll == "all_reduce" else df[df.devices_per_node >= 2]
        pred = [cm.cost(comm(coll, coll, float(s), int(g) if coll == "all_reduce" else 2, 1, "")).time_s for s, g in zip(sel["size"], sel.num_workers)]
        record(f"vidur {gpu} {coll} (intra-node)", "roofline", "never fitted", pred, sel[f"time_stats.{coll}.median"].to_numpy() * 1e-3)


def splitwise(kt: KernelTables) -> None:
    import pandas as pd

    df = pd.read_csv(SHARED / "splitwise" / "perf_model.csv")
    hw_map = {"a100-80gb": "a100-sxm-80gb", "h100-80gb": "h100-sxm"}
    df = df[(df.model == "llama2-70b") & df.hardware.isin(list(hw_map))]
    df = df.groupby(["hardware", "prompt_size", "batch_size", "token_size", "tensor_parallel"], as_index=False)[["prompt_time", "token_time"]].median()
    for kernels, bname in (("none", "roofline"), ("auto", "measured tables")):
        for hwname, gpu in hw_map.items():
            sub = df[df.hardware == hwname]
            pp, pm, tpred, tmeas = [], [], [], []
            for r in sub.itertuples():
                try:
                    e = estimate("llama-2-70b", gpu, tp=int(r.tensor_parallel), batch=int(r.batch_size), isl=int(r.prompt_size), osl=max(2, int(r.token_size)), kernels=kernels)
                except LlmsimError:
                    continue
                pp.append(e.prefill_ms)
                pm.append(r.prompt_time)
                tpred.append(e.tpot_ms)
                tmeas.append(r.token_time)
            if bname == "measured tables" and not kt.matches_gpu(gpu):
                continue
            record(f"splitwise {gpu} llama-2-70b prompt time", bname, "never fitted", pp, pm)
            record(f"splitwise {gpu} llama-2-70b token time", bname, "never fitted", tpred, tmeas)


def measured_holdout(kt: KernelTables) -> None:
    """Leave-one-slice-out interpolation error of the measured tables (every 3rd slice, see validate_measured.py)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import validate_measured as vm  # noqa: E402

    def add(name: str, parts: list) -> None:
        e = np.concatenate([p[0] for p in parts]) if parts else np.array([])
        rows.append({"category": f"aiconfigurator h100 {name}", "backend": "measured tables", "split": "held out", "n": int(len(e)),
                     "median_ape": float(np.median(e)) if len(e) else math.nan, "p90_ape": float(np.percentile(e, 90)) if len(e) else math.nan})

    g = kt.records("gemm")
    for fw in sorted(set(g["framework"].tolist())):
        sub = g["framework"] == fw
        add(f"gemm ({fw})", [vm.slice_holdout(kt, "gemm", ax, sub, 3) for ax in ("n", "k", "m")])
    add("context_attention", [vm.slice_holdout(kt, "context_attention", ax, None, 3) for ax in ("batch", "isl")])
    add("generation_attention", [vm.slice_holdout(kt, "generation_attention", ax, None, 3) for ax in ("batch", "kv_len")])
    c = kt.records("collective")
    add("nccl collectives", [vm.slice_holdout(kt, "collective", "message_bytes", c["implementation"] == "nccl", 1)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", action="store_true", help="refit the roofline on the train split first")
    ap.add_argument("--measured-holdout", action="store_true", help="also run the leave-one-slice-out interpolation check")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"shared data not found at {SHARED}")
    t0 = time.time()
    kt = KernelTables.load(None)
    aiconfigurator(a.fit)
    nccl(a.fit)
    if a.measured_holdout:
        measured_holdout(KernelTables.load(SHARED / "kernels" / "h100"))
    vidur_compute(kt)
    vidur_network()
    splitwise(kt)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    w = max(len(r["category"]) for r in rows)
    print(f"{'category':<{w}}  {'backend':<16} {'split':<15} {'n':>7} {'median APE':>10} {'p90 APE':>8}")
    for r in rows:
        print(f"{r['category']:<{w}}  {r['backend']:<16} {r['split']:<15} {r['n']:>7} {r['median_ape']:>9.1f}% {r['p90_ape']:>7.1f}%")
    print(f"\n({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
