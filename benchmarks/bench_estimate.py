"""Speed of one `llmsim.estimate` evaluation through the Python API, vs llm-analysis on the same workload.

Workload: Llama-2-7B on one A100-SXM-80GB, batch 1, 512 prompt tokens, 32 generated
tokens (a model both tools ship), plus llmsim-only rows for larger configurations.
Each call changes the prompt length so no result is reused from a cache.

llm-analysis (an analytical anchor) is timed in the same run when it is importable by
the interpreter given with --anchor-python (e.g. a venv with `pip install llm-analysis`);
otherwise its row says so.

    python benchmarks/bench_estimate.py [--n 2000] [--anchor-python /path/to/python]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmsim import estimate  # noqa: E402

ANCHOR = r"""
import logging, time, sys
logging.disable(logging.CRITICAL)
from llm_analysis.analysis import infer
n = int(sys.argv[1])
kw = dict(model_name="NousResearch_Llama-2-7b-hf", gpu_name="a100-sxm-80gb", dtype_name="w16a16e16", batch_size_per_gpu=1, num_tokens_to_generate=32, log_level="CRITICAL")
infer(seq_len=512, **kw)
t = time.perf_counter()
for i in range(n):
    infer(seq_len=512 + i, **kw)
print((time.perf_counter() - t) / n)
"""


def time_llmsim(n: int, **kw) -> float:
    isl = kw.pop("isl")
    estimate(isl=isl, **kw)  # warm caches of the catalogs and kernel tables
    t = time.perf_counter()
    for i in range(n):
        estimate(isl=isl + i, **kw)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--anchor-python", default=sys.executable)
    a = ap.parse_args()

    base = dict(model="llama-2-7b", gpu="a100-sxm-80gb", batch=1, isl=512, osl=32)
    rows = [
        ("llama-2-7b, a100, b=1, 512+32 (roofline)", time_llmsim(a.n, kernels="none", **dict(base))),
        ("llama-3.1-70b, h100 tp4, b=32, 1024+128 (roofline)", time_llmsim(a.n, model="llama-3.1-70b", gpu="h100-sxm", tp=4, batch=32, isl=1024, osl=128, kernels="none")),
        ("llama-3.1-70b, h100 tp4, b=32, 1024+128 (measured tables)", time_llmsim(a.n, model="llama-3.1-70b", gpu="h100-sxm", tp=4, batch=32, isl=1024, osl=128, kernels="auto")),
        ("deepseek-v3, h200 tp8 ep8, b=64, 2048+256, fp8", time_llmsim(a.n // 2, model="deepseek-v3", gpu="h200-sxm", tp=8, ep=8, batch=64, isl=2048, osl=256, weight_dtype="fp8", kernels="auto")),
    ]
    anchor_s = None
    try:
        res = subprocess.run([a.anchor_python, "-c", ANCHOR, str(min(a.n, 500))], capture_output=True, text=True, timeout=600)
        anchor_s = float(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        anchor_s = None

    print(f"{'workload':<62} {'ms/eval':>9} {'evals/s':>10}")
    for name, s in rows:
        print(f"{name:<62} {s * 1e3:>9.3f} {1 / s:>10,.0f}")
    if anchor_s:
        print(f"{'llm-analysis infer(): llama-2-7b, a100, b=1, 512+32':<62} {anchor_s * 1e3:>9.3f} {1 / anchor_s:>10,.0f}")
        print(f"\nllmsim is {anchor_s / rows[0][1]:.1f}x faster than llm-analysis on the same workload")
    else:
        print("llm-analysis not importable by --anchor-python; install it in a venv and pass its python to compare")


if __name__ == "__main__":
    main()
