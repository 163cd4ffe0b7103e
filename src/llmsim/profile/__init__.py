"""`llmsim profile`: measure the kernels that matter on your own GPU in minutes.

    from llmsim.profile import run_profile
    run_profile("./my-gpu", budget_minutes=15)        # needs torch + a CUDA GPU
    run_profile("./plan", dry_run=True)               # the plan only; no torch needed

The result is a directory of AIConfigurator-format parquet tables (GEMM, prefill and
decode attention, NCCL collectives) plus ``metadata.json``; llmsim uses it as a measured
backend with ``--kernels DIR`` (``KernelTables.load(DIR)``).

Modules: `plan` (which shapes, adaptively, within the budget; pure Python), `timing`
(the timing loop with an injectable clock), `kernels` (the torch kernels), `writer`
(the tables), `runner` (`run_profile`). Only `kernels` and the measuring part of
`runner` import torch, and only when called.
"""

from .plan import DeviceModel, Plan, PlanConfig, Planner, Point, make_plan, simulate
from .runner import measure_loop, run_profile
from .timing import (
    CudaEventTimer,
    FakeTimer,
    Measurement,
    PerfCounterTimer,
    Timer,
    TimingConfig,
    auto_measure,
    measure,
)
from .writer import Result, write_profile

__all__ = [
    "CudaEventTimer",
    "DeviceModel",
    "FakeTimer",
    "Measurement",
    "PerfCounterTimer",
    "Plan",
    "PlanConfig",
    "Planner",
    "Point",
    "Result",
    "Timer",
    "TimingConfig",
    "auto_measure",
    "make_plan",
    "measure",
    "measure_loop",
    "run_profile",
    "simulate",
    "write_profile",
]
