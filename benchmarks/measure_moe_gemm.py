"""Grouped (MoE) GEMMs vs dense GEMMs of the same FLOPs, measured on a GPU, vs llmsim's roofline.

Why: on every GPU llmsim times the routed-expert GEMMs of a MoE layer (`moe_experts_up` /
`moe_experts_down`, op kind `moe_gemm`) with the dense-GEMM roofline -- one GEMM of m = tokens per
active expert rows and n x active-experts columns, at the dense GEMM's efficiency -- because no
shared kernel table measures a MoE kernel. This script measures how far a real grouped GEMM is
from that, on the MoE shapes of the catalog's models:

* `grouped`: `torch._grouped_mm` (CUTLASS grouped GEMM, bf16; Hopper or newer) over the
  token-expert pairs of T tokens routed top-k uniformly at random (seeded), sorted by expert;
* `dense`: one `torch.matmul` with the same rows (T x k), n and k -- the same FLOPs, one weight
  matrix: the efficiency the dense roofline stands for;
* `fp8_grouped` (where `torch._scaled_grouped_mm` runs): the same with fp8 e4m3 operands and
  row-wise scales.

It measures PyTorch's kernels, not an inference engine's (vLLM's Triton fused_moe / Marlin,
TRT-LLM's CUTLASS MoE, DeepGEMM): the ratios are evidence of what grouping costs, nothing in
llmsim is fitted to them (llmsim calibrates on ../shared/data only).

    # on a machine with a CUDA GPU (writes DIR/moe_gemm.csv and DIR/metadata.json)
    python benchmarks/measure_moe_gemm.py measure --out DIR [--budget-s 240]
    # anywhere: add llmsim's roofline prediction for each row and print the comparison
    python benchmarks/measure_moe_gemm.py compare [DIR/moe_gemm.csv] [--gpu h100-sxm]

`benchmarks/data/moe_gemm_h100/` holds one run (H100 80GB HBM3, torch 2.11.0+cu130, 2026-11-22,
14 s; the default of `compare`). At >= 256 rows per expert the grouped GEMM ran at 0.66 of the
dense GEMM's TFLOP/s (median of 64 shapes, range 0.50-0.82; about 450 vs 740 TFLOP/s), and
llmsim's dense roofline predicted 0.71 of the grouped time. Below about 64 rows per expert both
stream all the experts' weights and llmsim is within 2% of the grouped time. The fp8 grouped GEMM
is not in it: torch refused the first shape whose rows are not 16-byte aligned (gpt-oss at TP 8),
and where it ran it was slower than bf16 at large T, not a kernel an engine would use.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# catalog ids; their experts, top-k, hidden and expert intermediate sizes are read in `shapes`
MODELS = ("gpt-oss-120b", "deepseek-v3", "qwen3-235b-a22b", "minimax-m2.5")
TPS = (1, 2, 4, 8)
TOKENS = (128, 512, 2048, 8192, 16384)
FIELDS = ("model", "tp", "tokens", "op", "m_rows", "n", "k", "experts", "active_experts", "max_rows_per_expert",
          "kernel", "median_s", "p10_s", "p90_s", "tflops")


def shapes(models=MODELS, tps=TPS, tokens=TOKENS):
    """(model, tp, T, op, n, k, E, top-k) for the up (gate+up fused) and down expert GEMMs, the
    expert intermediate split over tp GPUs as the engines do with tp > 1 and ep = 1."""
    from llmsim.models import get_model

    out = []
    for name in models:
        m = get_model(name)
        E, k, h, inter = m.num_experts, m.experts_per_token, m.hidden_size, m.moe_intermediate_size
        for tp in tps:
            if inter % tp:
                continue
            w = inter // tp
            up = 2 * w if m.gated_mlp else w
            for T in tokens:
                out.append((name, tp, T, "moe_experts_up", up, h, E, k))
                out.append((name, tp, T, "moe_experts_down", h, w, E, k))
    return out


def measure(out_dir: Path, budget_s: float, seed: int) -> Path:
    import torch

    from llmsim.profile.timing import CudaEventTimer, TimingConfig, auto_measure
    from llmsim.profile.kernels import torch_version_info

    dev = torch.device("cuda")
    timer = CudaEventTimer(dev)
    cfg = TimingConfig(target_s=0.03)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    rows: list[dict] = []
    t0 = time.monotonic()
    weights: dict = {}
    grouped_ok = hasattr(torch, "_grouped_mm")
    fp8_ok = hasattr(torch, "_scaled_grouped_mm")
    notes: list[str] = []
    for name, tp, T, op, n, k, E, topk in shapes():
        if time.monotonic() - t0 > budget_s:
            notes.append(f"budget reached before {name} tp{tp} T{T} {op}")
            break
        key = (name, tp, op)
        if key not in weights:
            weights.clear()
            torch.cuda.empty_cache()
            # (E, k, n) row-major: _grouped_mm's 3-D operand is (groups, K, N)
            weights[key] = (torch.randn(E, k, n, device=dev, dtype=torch.bfloat16) * 0.02)
        W = weights[key]
        # uniform top-k routing: per token, k distinct experts
        experts = torch.rand(T, E, generator=gen).topk(topk, dim=1).indices.flatten()
        counts = torch.bincount(experts, minlength=E)
        offs = torch.cumsum(counts, 0).to(torch.int32).to(dev)
        M = T * topk
        A = torch.randn(M, k, device=dev, dtype=torch.bfloat16)
        base = dict(model=name, tp=tp, tokens=T, op=op, m_rows=M, n=n, k=k, experts=E,
                    active_experts=int((counts > 0).sum()), max_rows_per_expert=int(counts.max()))
        runs = {"dense": (lambda A=A, W=W: torch.matmul(A, W[0]))}
        if grouped_ok:
            runs["grouped"] = lambda A=A, W=W, offs=offs: torch._grouped_mm(A, W, offs=offs)
        if fp8_ok:
            try:
                A8 = A.to(torch.float8_e4m3fn)
                # second operand column-major per group: (E, k, n) with strides of an (E, n, k) tensor
                W8 = W.transpose(1, 2).contiguous().to(torch.float8_e4m3fn).transpose(1, 2)
                sa = torch.ones(M, device=dev, dtype=torch.float32)
                sb = torch.ones(E, n, device=dev, dtype=torch.float32)
                f = (lambda A8=A8, W8=W8, sa=sa, sb=sb, offs=offs:
                     torch._scaled_grouped_mm(A8, W8, sa, sb, offs=offs, out_dtype=torch.bfloat16))
                f()
                runs["fp8_grouped"] = f
            except Exception as e:  # noqa: BLE001 - record why, keep measuring bf16
                fp8_ok = False
                notes.append(f"fp8 grouped GEMM not run: {type(e).__name__}: {str(e)[:200]}")
        for kernel, fn in runs.items():
            try:
                r = auto_measure(fn, timer, cfg)
            except Exception as e:  # noqa: BLE001
                notes.append(f"{kernel} {name} tp{tp} T{T} {op}: {type(e).__name__}: {str(e)[:200]}")
                if kernel == "grouped":
                    grouped_ok = False
                continue
            rows.append(dict(base, kernel=kernel, median_s=r.median_s, p10_s=r.p10_s, p90_s=r.p90_s,
                             tflops=2.0 * M * n * k / r.median_s / 1e12))
        del A
        print(f"{name:16s} tp{tp} T{T:6d} {op:17s} " + " ".join(
            f"{r['kernel']}={r['median_s'] * 1e6:8.1f}us" for r in rows if (r['model'], r['tp'], r['tokens'], r['op']) == (name, tp, T, op)),
            flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "moe_gemm.csv"
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    props = torch.cuda.get_device_properties(dev)
    meta = dict(device=props.name, sms=props.multi_processor_count, date=time.strftime("%Y-%m-%d"), seed=seed,
                routing="uniform top-k, torch.rand(T, E).topk(k) per token", timing="llmsim.profile.timing.auto_measure, "
                "CUDA events, device hold before each sample, no L2 flush", wall_s=round(time.monotonic() - t0, 1),
                notes=notes, **torch_version_info())
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=1, default=str))
    return path


def predict_s(model: str, tp: int, tokens: int, op: str, gpu: str, dtype: str = "bf16") -> float:
    """llmsim's roofline time of one routed-expert GEMM for a prefill of `tokens` tokens."""
    from llmsim.cost.model import CostModel
    from llmsim.cost.ops import build_ops, uniform_batch
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models import get_model

    ops = build_ops(get_model(model), Parallel(tp=tp), Precision.make(dtype, dtype, "bf16"), uniform_batch([tokens]))
    op_ = next(o for o in ops if o.name == op)
    return CostModel(get_gpu(gpu)).cost(op_).time_s


def compare(path: Path, gpu: str) -> None:
    import pandas as pd

    d = pd.read_csv(path)
    piv = d.pivot_table(index=["model", "tp", "tokens", "op", "m_rows", "n", "k", "experts"], columns="kernel",
                        values="median_s").reset_index()
    piv["llmsim_s"] = [predict_s(r.model, int(r.tp), int(r.tokens), r.op, gpu) for r in piv.itertuples()]
    piv["rows_per_expert"] = piv.m_rows / piv.experts
    piv["grouped/dense"] = piv["grouped"] / piv["dense"]
    piv["llmsim/grouped"] = piv["llmsim_s"] / piv["grouped"]
    piv["llmsim/dense"] = piv["llmsim_s"] / piv["dense"]
    if "fp8_grouped" in piv:
        piv["fp8/bf16 grouped"] = piv["fp8_grouped"] / piv["grouped"]
    pd.set_option("display.width", 200)
    cols = ["model", "tp", "tokens", "op", "rows_per_expert", "dense", "grouped", "llmsim_s", "grouped/dense",
            "llmsim/grouped", "llmsim/dense"] + (["fp8/bf16 grouped"] if "fp8_grouped" in piv else [])
    show = piv[cols].copy()
    for c in ("dense", "grouped", "llmsim_s"):
        show[c] = (show[c] * 1e6).round(1)
    print(f"times in us; llmsim = roofline on {gpu} (bf16, no kernel tables)")
    print(show.round(2).to_string(index=False))
    piv["bucket"] = pd.cut(piv.rows_per_expert, [0, 16, 64, 256, 1024, math.inf])
    print("\nmedian ratios by rows per expert (T x k / E):")
    print(piv.groupby("bucket", observed=True)[["grouped/dense", "llmsim/grouped"]].median().round(2).to_string())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="time the kernels on this machine's CUDA GPU")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--budget-s", type=float, default=240.0)
    m.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("compare", help="add llmsim's prediction and print the comparison")
    c.add_argument("csv", type=Path, nargs="?", default=Path(__file__).parent / "data" / "moe_gemm_h100" / "moe_gemm.csv")
    c.add_argument("--gpu", default="h100-sxm")
    a = ap.parse_args(argv)
    if a.cmd == "measure":
        print(measure(a.out, a.budget_s, a.seed))
    else:
        compare(a.csv, a.gpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
