"""`run_profile`: plan, measure and write a hardware profile of the local GPU.

Single GPU::

    llmsim profile --out ./my-gpu --budget-minutes 15
    llmsim estimate --kernels ./my-gpu ...

Several GPUs (adds the NCCL collective table; every rank measures the collectives, then
rank 0 alone measures the single-GPU kernels and writes the directory)::

    torchrun --nproc-per-node 8 -m llmsim.profile --out ./my-node --budget-minutes 15

The measuring loop (`measure_loop`) is independent of torch: it takes a planner and a
function that measures one shape, so it is tested with fake latencies.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import LlmsimError
from .plan import (
    KINDS,
    SHARES,
    DeviceModel,
    Plan,
    PlanConfig,
    Planner,
    Point,
    check_seed,
    make_plan,
)
from .timing import Timer, TimingConfig, auto_measure, measure
from .writer import Result, write_profile

__all__ = ["NEEDS_GPU", "measure_loop", "run_profile"]

NEEDS_GPU = ("llmsim profile needs PyTorch with a CUDA GPU",
             "pip install 'llmsim[profile]' on a GPU machine; or --dry-run to see the plan")
PLAN_FILE = "plan.json"


def _stderr(msg: str) -> None:
    print(f"[llmsim profile] {msg}", file=sys.stderr, flush=True)


def _env_world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the torchrun environment (1, 0, 0 without it)."""
    def _int(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    return _int("WORLD_SIZE", 1), _int("RANK", 0), _int("LOCAL_RANK", 0)


def _kinds(kinds: Iterable[str] | str | None) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        kinds = [k for k in kinds.replace(",", " ").split() if k]
    aliases = {"attention": ("context_attention", "generation_attention"), "nccl": ("collective",),
               "collectives": ("collective",), "prefill": ("context_attention",), "decode": ("generation_attention",)}
    out: list[str] = []
    for k in kinds:
        k = str(k).strip().lower().replace("-", "_")
        for x in aliases.get(k, (k,)):
            if x not in KINDS:
                raise LlmsimError(f"unknown kernel kind {k!r}", hint=f"use {', '.join(KINDS)} (or attention, nccl)")
            if x not in out:
                out.append(x)
    return tuple(out)


# ------------------------------------------------------------------------------------------ loop
def measure_loop(planner: Planner, measure_one: Callable[[Point], Result], *, clock: Callable[[], float] = time.monotonic,
                 deadline: float | None = None, log: Callable[[str], None] | None = None) -> list[Result]:
    """Probes -> calibration -> coarse grid -> refinement, until the planner or the deadline stops.

    `measure_one(point)` returns a `Result`; its wall time (by `clock`) is charged to the
    planner. Shapes left when `deadline` (a `clock` value) passes are skipped.
    """
    results: list[Result] = []
    skipped = 0

    def run(points: list[Point], phase: str) -> None:
        nonlocal skipped
        for p in points:
            if deadline is not None and clock() >= deadline:
                skipped += 1
                continue
            t0 = clock()
            r = measure_one(p)
            wall = clock() - t0
            r.wall_s = wall if r.wall_s is None else r.wall_s
            r.phase = phase
            planner.record(p, r.latency_s if r.ok else None, wall)
            results.append(r)

    probes = planner.probes()
    run(probes, "probe")
    planner.calibrate()
    if log:
        log(f"calibrated on {len(probes)} probes (per-shape overhead {planner.overhead_s * 1e3:.1f} ms); "
            f"budget left {planner.remaining_s:.0f} s")
    for kind in planner.kinds:  # one kind at a time, so that each coarse grid fits what is left
        coarse = planner.initial([kind])
        if log and coarse:
            est = sum(planner.cost_s(p) for p in coarse)
            log(f"{kind}: coarse grid of {len(coarse)} shapes, ~{est:.0f} s")
        run(coarse, "coarse")
    batches = 0
    while deadline is None or clock() < deadline:
        batch = planner.next_batch()
        if not batch:
            break
        run(batch, "refine")
        batches += 1
        if log and batches % 50 == 0:
            log(f"refined {batches} slices, {len(results)} shapes measured, budget left {planner.remaining_s:.0f} s")
    if log:
        failed = sum(1 for r in results if not r.ok)
        log(f"measured {len(results)} shapes ({failed} failed, {skipped} skipped at the deadline), "
            f"{len(planner.refinements)} refinement slices")
    return results


def _measure_with(factory: Any, timer: Timer, timing: TimingConfig, planner: Planner) -> Callable[[Point], Result]:
    """measure_one for `measure_loop`: build the kernel, time it, free it; errors become failed Results."""
    def measure_one(p: Point) -> Result:
        fn = None
        failed = False
        try:
            fn, source = factory.build(p)
            flush = factory.flush if planner.is_memory_bound(p) else None
            m = auto_measure(fn, timer, timing, expected_s=planner.predict_s(p), flush=flush)
            return Result(p, m.median_s, m.p10_s, m.p90_s, m.repeats, m.inner, m.flushed, source)
        except Exception as e:  # out of memory, a shape the library refuses: record it and go on
            failed = True
            msg = str(e).splitlines()[0][:200] if str(e) else ""
            return Result(p, None, error=f"{type(e).__name__}: {msg}")
        finally:
            del fn
            if failed or (p.kind == "gemm" and p.coords[1] * p.coords[2] >= 1 << 28):
                factory.empty_cache()  # give big or failed allocations back before the next shape

    return measure_one


# ------------------------------------------------------------------------------------------ collectives
def _collective_loop(planner: Planner, factory: Any, timer: Timer, timing: TimingConfig, rank: int,
                     deadline: float, log: Callable[[str], None] | None) -> list[Result]:
    """Every rank runs this in step: rank 0 picks each batch (with its timing schedule) and
    broadcasts it; members of each group size time their collective; the slowest rank's
    median is recorded (on every rank, so the planners stay identical)."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    sizes = sorted({g for s in planner.series.values() for g in s.axes[0]})
    for g in sizes:  # every rank creates every group, in the same order
        factory.groups[g] = dist.group.WORLD if g == world else dist.new_group(list(range(g)))
    results: list[Result] = []
    planner.probes()
    batch = planner.initial()
    phase = "coarse"
    while True:
        if rank == 0:
            if time.monotonic() >= deadline:
                batch = []
            sched = [(p.to_dict(), *timing.schedule(planner.predict_s(p))) for p in batch]
        else:
            sched = None
        obj = [sched]
        dist.broadcast_object_list(obj, src=0)
        sched = obj[0]
        if not sched:
            break
        for d, warm, reps, inner in sched:
            p = Point.from_dict(d)
            g = p.coords[0]
            t0 = time.monotonic()
            med, p10, p90, err, source = float("nan"), None, None, None, "NCCL"
            if rank < g:
                try:
                    fn, source = factory.build(p)
                    dist.barrier(group=factory.groups[g])
                    m = measure(fn, timer, warmup=warm, repeats=reps, inner=inner)
                    med, p10, p90 = m.median_s, m.p10_s, m.p90_s
                    del fn
                except Exception as e:  # pragma: no cover - needs GPUs
                    err = f"{type(e).__name__}: {e}"
                    med = float("inf")
            v = torch.tensor([med if math.isfinite(med) else (1e30 if rank < g else -1.0)], dtype=torch.float64,
                             device=factory.device)
            dist.all_reduce(v, op=dist.ReduceOp.MAX)
            worst = float(v.item())
            lat = worst if 0 < worst < 1e29 else None
            wall = time.monotonic() - t0
            planner.record(p, lat, wall)
            if rank == 0:
                results.append(Result(p, lat, p10, p90, reps, inner, False, source, err, wall, phase))
        batch = planner.next_batch() if rank == 0 else []
        phase = "refine"
    if log and rank == 0:
        log(f"collectives: {len(results)} shapes on group sizes {sizes}")
    return results


# ------------------------------------------------------------------------------------------ device facts
def _nvidia_smi(dev_index: int, uuid: str | None) -> dict[str, Any]:
    fields = ("name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem", "power.limit",
              "pstate", "vbios_version")
    try:
        cp = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits",
                             "-i", uuid or str(dev_index)], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    if cp.returncode != 0 or not cp.stdout.strip():
        return {}
    vals = [v.strip() for v in cp.stdout.strip().splitlines()[0].split(",")]
    out: dict[str, Any] = {}
    for f, v in zip(fields, vals):
        key = {"clocks.sm": "sm_clock_mhz", "clocks.mem": "mem_clock_mhz", "clocks.max.sm": "max_sm_clock_mhz",
               "clocks.max.mem": "max_mem_clock_mhz", "power.limit": "power_limit_w"}.get(f, f.replace(".", "_"))
        try:
            out[key] = float(v) if key.endswith(("_mhz", "_w")) else v
        except ValueError:
            out[key] = v
    return out


def _device_facts(torch: Any, dev: Any) -> dict[str, Any]:
    from .kernels import torch_version_info

    facts: dict[str, Any] = {"versions": torch_version_info()}
    if dev.type != "cuda":
        facts.update({"name": f"{dev.type} (torch {torch.__version__})", "memory_bytes": None})
        return facts
    props = torch.cuda.get_device_properties(dev)
    uuid = getattr(props, "uuid", None)
    uuid_s = f"GPU-{uuid}" if uuid is not None and not str(uuid).startswith("GPU-") else (str(uuid) if uuid else None)
    facts.update({
        "name": torch.cuda.get_device_name(dev), "index": dev.index,
        "compute_capability": list(torch.cuda.get_device_capability(dev)),
        "sm_count": props.multi_processor_count, "memory_bytes": props.total_memory,
        "l2_cache_bytes": getattr(props, "L2_cache_size", None), "uuid": uuid_s,
    })
    try:
        facts["sm_clock_mhz_torch"] = torch.cuda.clock_rate(dev)
    except Exception:
        pass
    smi = _nvidia_smi(dev.index or 0, uuid_s)
    if smi:
        facts["nvidia_smi"] = smi
        facts["driver"] = smi.get("driver_version")
    return facts


def _device_model(facts: dict[str, Any], fp8: bool) -> DeviceModel:
    dm = DeviceModel.lookup(facts.get("name"))
    kw: dict[str, Any] = {"name": facts.get("name") or dm.name}
    if facts.get("memory_bytes"):
        kw["memory_bytes"] = float(facts["memory_bytes"])
    if facts.get("l2_cache_bytes"):
        kw["l2_bytes"] = float(facts["l2_cache_bytes"])
    if not fp8:
        kw["fp8_flops"] = None
    elif not dm.fp8_flops:
        kw["fp8_flops"] = 2 * dm.bf16_flops
    return dm.with_(**kw)


# ------------------------------------------------------------------------------------------ entry point
def run_profile(out_dir: str | Path, budget_minutes: float = 15.0, device: Any = None, seed: int = 0,
                dry_run: bool = False, timer: Timer | None = None, *, kinds: Iterable[str] | str | None = None,
                config: PlanConfig | None = None, timing: TimingConfig | None = None, framework: str = "torch",
                log: Callable[[str], None] | None = _stderr) -> Path:
    """Measure the kernels that matter on this GPU within `budget_minutes` and write a
    profile directory that ``--kernels DIR`` / ``KernelTables.load(DIR)`` reads. Returns it.

    `device`: the CUDA device (None: the current one; 0, 'cuda:1'); with `dry_run`, a GPU
    to plan for (catalog id such as 'h100-sxm' or a device name; default H100 SXM).
    `dry_run`: write the plan to ``DIR/plan.json``, print it and return that path, without
    torch or a GPU. `timer`: the clock (default CUDA events). `kinds`: a subset of gemm,
    context_attention, generation_attention, elementwise, collective (default all;
    collectives only run under torchrun with more than one process). `framework`: the
    name stored in the tables' framework column (the measured backend's `framework=`).
    """
    try:
        budget_s = float(budget_minutes) * 60.0
    except (TypeError, ValueError):
        raise LlmsimError(f"--budget-minutes must be a number, got {budget_minutes!r}") from None
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise LlmsimError(f"--budget-minutes must be positive, got {budget_minutes!r}")
    ks = _kinds(kinds)
    seed = check_seed(seed)
    device = _check_device(device, dry_run)
    out = Path(out_dir).expanduser()
    world, _, _ = _env_world()
    if dry_run:
        plan = make_plan(budget_minutes, device, world_size=world, seed=seed, kinds=ks, config=config, timing=timing)
        return _write_plan(out, plan, log)
    try:
        import torch
    except ImportError:
        raise LlmsimError(*NEEDS_GPU) from None
    if not torch.cuda.is_available():
        raise LlmsimError(*NEEDS_GPU)
    return _run(out, budget_s, device, seed, timer, ks, config, timing, framework, log, allow_cpu=False)


_CUDA_FORM = re.compile(r"(cuda|cpu)(:\d+)?")


def _is_cuda_form(device: Any) -> bool:
    if isinstance(device, bool):
        return False
    if isinstance(device, int):
        return True
    return isinstance(device, str) and (device.strip().isdigit() or bool(_CUDA_FORM.fullmatch(device.strip().lower())))


def _check_device(device: Any, dry_run: bool) -> Any:
    """`--device`: on a real run a CUDA device (None, an index such as 0, 'cuda', 'cuda:N' or a
    torch.device); with --dry-run the GPU to plan for (a catalog id or a device name; make_plan
    rejects unknown ones). Anything else is an LlmsimError now, not a torch error later or a plan
    for the wrong GPU."""
    if device is None:
        return None
    if dry_run:
        if _is_cuda_form(device) or not isinstance(device, str) or not device.strip():
            raise LlmsimError(f"with --dry-run, --device names the GPU to plan for, got {device!r}",
                              hint="give a catalog GPU id such as h100-sxm or l40s (see `llmsim gpus list`), or leave --device "
                                   "out to plan for an H100 SXM; a CUDA device index only applies to a real run")
        return device.strip()
    if hasattr(device, "type") and hasattr(device, "index") and not isinstance(device, (str, int)):
        return device  # a torch.device
    if _is_cuda_form(device) and not (isinstance(device, int) and device < 0):
        if isinstance(device, str) and device.strip().isdigit():
            return int(device.strip())
        return device.strip().lower() if isinstance(device, str) else device
    raise LlmsimError(f"--device must be a CUDA device (an index such as 0, or cuda:N), got {device!r}",
                      hint="leave --device out for the current GPU; to plan for a GPU type without one, use --dry-run --device h100-sxm")


def _write_plan(out: Path, plan: Plan, log: Callable[[str], None] | None) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LlmsimError(f"cannot create {str(out)!r}: {e}", hint="pass --out a writable directory") from e
    path = out / PLAN_FILE
    path.write_text(json.dumps(plan.to_dict(), separators=(",", ":")) + "\n")
    if log:
        log(plan.describe())
        log(f"plan written to {path}")
    return path


def _run(out: Path, budget_s: float, device: Any, seed: int, timer: Timer | None, kinds: tuple[str, ...],
         config: PlanConfig | None, timing: TimingConfig | None, framework: str,
         log: Callable[[str], None] | None, allow_cpu: bool = False) -> Path:
    """The measuring run (torch present). `allow_cpu` lets the tests run it on a CPU."""
    import torch

    from .. import __version__
    from .kernels import KernelFactory, resolve_device
    from .timing import CudaEventTimer, PerfCounterTimer

    t_start = time.monotonic()
    deadline = t_start + budget_s
    try:  # fail now, not after the whole budget
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LlmsimError(f"cannot create the profile directory {str(out)!r}: {e}",
                          hint="pass --out a writable directory") from e
    timing = timing or TimingConfig()
    world, rank, local_rank = _env_world()
    distributed = world > 1 and "collective" in kinds
    if world > 1 and device is None:
        device = local_rank
    if world > 1 and rank != 0 and not distributed:
        return out  # under torchrun without collectives, rank 0 alone measures
    dev = resolve_device(device)
    if dev.type != "cuda" and not allow_cpu:
        raise LlmsimError(*NEEDS_GPU)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LlmsimError(*NEEDS_GPU)
        torch.cuda.set_device(dev)
    facts = _device_facts(torch, dev)
    factory = KernelFactory(dev, seed=seed)
    tm = timer or (CudaEventTimer(dev) if dev.type == "cuda" else PerfCounterTimer())
    dm = _device_model(facts, factory.fp8)
    if not allow_cpu and log and rank == 0:
        log(f"profiling {facts.get('name')} for {budget_s / 60:.1f} min (world size {world}) into {out}")
    results: list[Result] = []
    single = tuple(k for k in kinds if k != "collective")
    if distributed:
        import torch.distributed as dist

        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        share = SHARES["collective"] / sum(SHARES[k] for k in kinds)
        cp = Planner(budget_s * share, dm, world_size=world, seed=seed, kinds=("collective",), config=config,
                     timing=timing)
        results += _collective_loop(cp, factory, tm, timing, rank, min(deadline, time.monotonic() + budget_s * share),
                                    log)
        dist.barrier()
        if owned:
            dist.destroy_process_group()
        if rank != 0:
            return out
    elif "collective" in kinds and log and dev.type == "cuda" and torch.cuda.device_count() > 1:
        log(f"{torch.cuda.device_count()} GPUs visible; to add NCCL collectives run "
            f"torchrun --nproc-per-node {torch.cuda.device_count()} -m llmsim.profile --out {out}")
    planner = None
    if single:
        remaining = deadline - time.monotonic()
        if remaining > 1.0:
            planner = Planner(remaining, dm, world_size=1, seed=seed, kinds=single, config=config, timing=timing)
            measure_one = _measure_with(factory, tm, timing, planner)
            rs = measure_loop(planner, measure_one, deadline=deadline - 0.01 * budget_s, log=log)
            results += [r for r in rs if planner.on_grid(r.point)]
    versions = facts.get("versions", {})
    meta = {
        "llmsim_version": __version__,
        "device": facts.get("name"),
        "device_facts": facts,
        "driver": facts.get("driver"),
        "cuda": versions.get("cuda"),
        "torch": versions.get("torch"),
        "versions": versions,
        "budget_minutes": budget_s / 60.0,
        "elapsed_s": round(time.monotonic() - t_start, 2),
        "seed": seed,
        "world_size": world,
        "timer": getattr(tm, "name", type(tm).__name__),
        "timing": {k: getattr(timing, k) for k in timing.__dataclass_fields__},
        "device_model": {k: getattr(dm, k) for k in dm.__dataclass_fields__},
        "planner": planner.summary() if planner is not None else None,
        "refinements": planner.refinements if planner is not None else [],
        "how_to_use": f"llmsim estimate --kernels {out} ... (framework column: {framework!r})",
    }
    write_profile(out, results, device=str(facts.get("name")), framework=framework, version=torch.__version__,
                  nccl_version=str(versions.get("nccl") or ""), metadata=meta)
    if log:
        log(f"wrote {len(results)} measurements to {out} in {time.monotonic() - t_start:.0f} s")
    return out
