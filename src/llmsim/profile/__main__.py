"""`python -m llmsim.profile --out DIR`: the profiler without the llmsim CLI, for torchrun::

    torchrun --nproc-per-node 8 -m llmsim.profile --out ./my-node --budget-minutes 15
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LlmsimError
from .runner import run_profile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmsim.profile",
                                 description="Measure GEMM, attention, bandwidth (and NCCL under torchrun) on this GPU "
                                             "into a kernel-table directory for `llmsim ... --kernels DIR`.")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--budget-minutes", type=float, default=15.0, help="time budget (default 15)")
    ap.add_argument("--device", default=None, help="CUDA device (default: current / LOCAL_RANK); "
                                                   "with --dry-run a GPU to plan for, e.g. h100-sxm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=None,
                    help="comma list: gemm, context_attention, generation_attention, elementwise, collective")
    ap.add_argument("--framework", default="torch", help="framework column of the tables (default torch)")
    ap.add_argument("--dry-run", action="store_true", help="print and save the plan; no GPU needed")
    a = ap.parse_args(argv)
    device = a.device
    if device is not None and device.isdigit():
        device = int(device)
    try:
        path = run_profile(a.out, budget_minutes=a.budget_minutes, device=device, seed=a.seed, dry_run=a.dry_run,
                           kinds=a.kinds, framework=a.framework)
    except LlmsimError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
