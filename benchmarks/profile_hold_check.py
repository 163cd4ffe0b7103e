"""How host launch gaps inflate small-kernel timings, and what `Timer.hold` removes (needs a CUDA GPU).

Times a few decode-sized bf16 GEMMs and batch-1 SDPA calls with llmsim's profiler loop
(`auto_measure`, L2 flush as for memory-bound shapes) with the device hold off and on,
and prints both, plus a CUDA-graph replay of the same call (one graph launch instead of
the Python and dispatcher path; hold on) as a cross-check.

    python benchmarks/profile_hold_check.py
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> int:
    import torch

    from llmsim.profile.timing import CudaEventTimer, TimingConfig, auto_measure

    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    timer = CudaEventTimer(dev)
    flush_buf = torch.empty(2 * torch.cuda.get_device_properties(dev).L2_cache_size // 4, dtype=torch.int32, device=dev)
    flush = flush_buf.zero_
    on = TimingConfig()
    off = replace(on, hold_factor=0.0, hold_min_s=0.0)
    cases = []
    for m, n, k in [(1, 4096, 4096), (8, 4096, 4096), (16, 8192, 8192), (64, 28672, 8192), (1, 1024, 4096)]:
        a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        b = torch.randn(k, n, device=dev, dtype=torch.bfloat16)
        cases.append((f"gemm bf16 m={m} n={n} k={k}", lambda a=a, b=b: torch.matmul(a, b)))
    for h, kvh, s in [(32, 8, 1), (32, 8, 128), (64, 8, 1024)]:
        q = torch.randn(1, h, s, 128, device=dev, dtype=torch.bfloat16)
        kv = torch.randn(1, kvh, s, 128, device=dev, dtype=torch.bfloat16)
        cases.append((f"sdpa prefill b=1 h={h}/{kvh} isl={s}",
                      lambda q=q, kv=kv: torch.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)))
    print(f"{'kernel':38s} {'no hold us':>11s} {'hold us':>9s} {'graph us':>9s}")
    for name, fn in cases:
        t_off = auto_measure(fn, timer, off, flush=flush).median_s
        t_on = auto_measure(fn, timer, on, flush=flush).median_s
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            fn()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            fn()
        t_g = auto_measure(g.replay, timer, on, flush=flush).median_s
        print(f"{name:38s} {t_off * 1e6:11.1f} {t_on * 1e6:9.1f} {t_g * 1e6:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
