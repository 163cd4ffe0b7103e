"""Tests of `llmsim profile` (llmsim.profile): planning, timing loop, writer, entry point.

No GPU needed. The core tests do not need torch; the ones at the end run the real torch
kernels on a CPU with tiny shapes and skip when torch is not installed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from llmsim.cost.measured import KernelTables
from llmsim.errors import LlmsimError
from llmsim.profile import (
    DeviceModel,
    FakeTimer,
    PlanConfig,
    Planner,
    Point,
    Result,
    TimingConfig,
    auto_measure,
    make_plan,
    measure,
    measure_loop,
    run_profile,
    simulate,
    write_profile,
)
from llmsim.profile.plan import split_value
from llmsim.profile.timing import percentile

DEVICE = "NVIDIA H100 80GB HBM3"

# a small grid, so that planner tests run in milliseconds
SMALL = PlanConfig(
    gemm_m=(1, 4, 16, 64, 256, 1024, 4096, 16384), gemm_n=(1024, 4096, 16384), gemm_k=(1024, 4096, 16384),
    attn_heads=((32, 8, 128), (8, 1, 128)), ctx_batch=(1, 4, 16), ctx_isl=(16, 256, 4096), ctx_max_tokens=65536,
    gen_batch=(1, 8, 64), gen_kv_len=(16, 1024, 65536), elem_tokens=(1, 256, 65536), elem_hidden=(4096, 8192),
    coll_bytes=(256, 65536, 1 << 24, 1 << 29),
)


def _no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError


# ------------------------------------------------------------------------------------------ planning
def test_split_value_round_numbers():
    assert split_value(4096, 8192, 64) == 6144
    assert split_value(4096, 6144, 64) == 5120
    assert split_value(6144, 8192, 64) == 7168
    assert split_value(2, 4, 1) == 3
    assert split_value(1024, 4096, 1) == 2048
    assert split_value(64, 65, 1) is None
    assert split_value(512, 576, 64) is None
    assert split_value(256, 1024, 256) == 512
    for lo, hi in [(1, 3), (3, 5), (100, 1000), (12288, 16384), (2896, 3072)]:
        v = split_value(lo, hi, 1)
        assert v is not None and lo < v < hi


def test_point_round_trip():
    p = Point("gemm", ("bf16",), (8, 4096, 1024))
    assert Point.from_dict(p.to_dict()) == p
    assert p.params == {"dtype": "bf16", "m": 8, "n": 4096, "k": 1024}
    q = Point("generation_attention", (32, 8, 128), (4, 1024))
    assert Point.from_dict(json.loads(json.dumps(q.to_dict()))) == q


def test_device_model_lookup():
    assert DeviceModel.lookup("h100-sxm").supports_fp8
    assert DeviceModel.lookup(DEVICE).mem_bw == pytest.approx(3.35e12)
    a100 = DeviceModel.lookup("NVIDIA A100-SXM4-80GB")
    assert not a100.supports_fp8 and a100.mem_bw == pytest.approx(2.039e12)
    unknown = DeviceModel.lookup("Some Future GPU")
    assert unknown.name == "Some Future GPU" and unknown.bf16_flops > 0


def test_plan_fits_budget_and_is_deterministic():
    a = make_plan(1.0, "h100-sxm", seed=0)
    b = make_plan(1.0, "h100-sxm", seed=0)
    assert a.to_dict() == b.to_dict()
    assert 0 < a.estimated_s <= 60.0
    d = a.to_dict()
    assert sum(v["estimated_s"] for v in d["by_kind"].values()) == pytest.approx(a.estimated_s, rel=1e-3)
    kinds = {p.kind for p in a.points}
    assert kinds == {"gemm", "context_attention", "generation_attention", "elementwise"}  # no collectives on 1 GPU
    assert {p.series for p in a.points if p.kind == "gemm"} == {("bf16",), ("fp8",)}
    ms = {p.coords[0] for p in a.points if p.kind == "gemm"}
    assert {1, 2, 3, 4, 64, 65, 128, 129, 16384} <= ms  # dense small m, tile pairs, full range
    nk = {p.coords[1] for p in a.points if p.kind == "gemm"}
    assert min(nk) == 512 and max(nk) == 65536
    # another seed: the same shapes, measured in another order
    c = make_plan(1.0, "h100-sxm", seed=1)
    assert sorted(c.points) == sorted(a.points)
    assert c.coarse != a.coarse


def test_plan_scales_with_budget_and_device():
    small = make_plan(0.25, "h100-sxm", config=SMALL)
    big = make_plan(2.0, "h100-sxm", config=SMALL)
    assert small.estimated_s <= 15.0 and big.estimated_s <= 120.0
    assert len(big.points) >= len(small.points)
    a100 = make_plan(0.5, "a100", config=SMALL)
    assert {p.series for p in a100.points if p.kind == "gemm"} == {("bf16",)}  # no fp8 on Ampere


def test_plan_collectives_only_with_several_gpus():
    one = make_plan(0.5, config=SMALL, kinds=["collective"])
    assert one.points == []
    eight = make_plan(0.5, config=SMALL, world_size=8, kinds=["collective"])
    pts = eight.points
    assert {p.series[0] for p in pts} == {"all_reduce", "all_gather", "reduce_scatter", "alltoall"}
    assert {p.coords[0] for p in pts} == {2, 4, 8}
    assert min(p.coords[1] for p in pts) == 256 and max(p.coords[1] for p in pts) == 512 << 20
    six = make_plan(0.5, config=SMALL, world_size=6, kinds=["collective"])
    assert {p.coords[0] for p in six.points} == {2, 4}


def test_tiny_budget_thins_the_coarse_grid():
    pl = Planner(20.0, DeviceModel(), config=PlanConfig(), kinds=["gemm"])
    probes = pl.probes()
    for p in probes:
        pl.record(p, pl.predict_s(p))
    pl.calibrate()
    coarse = pl.initial()
    est = sum(pl.cost_s(p) for p in coarse)
    assert est <= 20.0 * pl.config.coarse_fraction + 1e-6
    full = len(PlanConfig().gemm_m) * len(PlanConfig().gemm_n) * len(PlanConfig().gemm_k) * 2
    assert 0 < len(coarse) < full
    for s in pl.series.values():  # probes stay on the grid
        for p in probes:
            if (p.kind, p.series) == (s.kind, s.key):
                assert pl.on_grid(p)


def _kinked(p: Point) -> float:
    """A fake GEMM: flat below m = 3000, linear above; log-linear in n and k (no kink there)."""
    m, n, k = p.coords
    return 1e-5 * (n / 1024) * (k / 1024) ** 0.5 * max(1.0, m / 3000.0)


def test_refinement_adds_points_at_a_kink():
    cfg = PlanConfig(gemm_dtypes=("bf16",), gemm_m=(1, 4, 16, 64, 256, 1024, 4096, 16384), gemm_n=(1024, 4096, 16384),
                     gemm_k=(1024, 4096, 16384))
    pl = Planner(600.0, DeviceModel(), kinds=["gemm"], config=cfg)
    _, _, refined = simulate(pl, _kinked)
    assert refined, "the kink should trigger refinement"
    new_m = {r["value"] for r in pl.refinements}
    assert all(r["axis"] == "m" for r in pl.refinements)  # n, k are log-linear: nothing to refine
    assert all(1024 < v < 4096 for v in new_m), new_m  # only in the interval that holds the kink
    assert len(new_m) >= 2
    assert min(abs(v - 3000) for v in new_m) < 300  # it homes in on the kink
    # each refinement measures a whole slice (the measured backend needs full grids)
    for r in pl.refinements:
        assert r["points"] == 9
    # a smooth (log-linear) function triggers nothing
    pl2 = Planner(600.0, DeviceModel(), kinds=["gemm"], config=cfg)
    _, _, refined2 = simulate(pl2, lambda p: 1e-6 * p.coords[0] ** 0.7 * p.coords[1] ** 0.5)
    assert refined2 == []


def test_refinement_respects_the_budget():
    cfg = PlanConfig(gemm_dtypes=("bf16",), gemm_m=(1, 16, 256, 4096, 16384), gemm_n=(1024, 16384),
                     gemm_k=(1024, 16384))
    noisy = np.random.default_rng(0)
    pl = Planner(5.0, DeviceModel(), kinds=["gemm"], config=cfg)
    simulate(pl, lambda p: _kinked(p) * math.exp(noisy.normal(0, 0.2)))
    assert pl.spent_s <= pl.usable_s + 1e-9


def test_failed_points_do_not_break_planning():
    pl = Planner(60.0, DeviceModel(), kinds=["gemm"], config=SMALL)
    simulate(pl, lambda p: None if p.coords[0] == 16384 else _kinked(p))
    measured = pl.measured()
    assert measured and all(p.coords[0] != 16384 for p in measured)


# ------------------------------------------------------------------------------------------ timing
def _fake_kernel(timer: FakeTimer, times: list[float]):
    calls = []

    def fn():
        t = times[len(calls)] if len(calls) < len(times) else times[-1]
        calls.append(t)
        timer.advance(t)

    return fn, calls


def test_measure_median_warmup_and_repeats():
    timer = FakeTimer()
    # two slow warm-up calls, then 5 samples
    fn, calls = _fake_kernel(timer, [1.0, 1.0, 3e-3, 1e-3, 2e-3, 5e-3, 4e-3])
    m = measure(fn, timer, warmup=2, repeats=5)
    assert len(calls) == 7
    assert m.median_s == pytest.approx(3e-3)
    assert m.samples == pytest.approx((3e-3, 1e-3, 2e-3, 5e-3, 4e-3))
    assert m.p10_s == pytest.approx(np.percentile(m.samples, 10))
    assert m.p90_s == pytest.approx(np.percentile(m.samples, 90))
    assert (m.warmup, m.repeats, m.inner, m.flushed) == (2, 5, 1, False)
    assert timer.marks == 10


def test_measure_inner_batches_and_flush():
    timer = FakeTimer()
    fn, calls = _fake_kernel(timer, [2e-6])
    flushes = []

    def flush():
        flushes.append(1)
        timer.advance(1.0)  # a flush takes time, but outside the timed region

    m = measure(fn, timer, warmup=1, repeats=4, inner=8, flush=flush)
    assert len(calls) == 1 + 4 * 8
    assert len(flushes) == 4
    assert m.median_s == pytest.approx(2e-6)
    assert m.flushed


def test_auto_measure_schedule():
    cfg = TimingConfig()
    timer = FakeTimer()
    fn, calls = _fake_kernel(timer, [1e-3])
    m = auto_measure(fn, timer, cfg)
    w, r, i = cfg.schedule(1e-3)
    assert (m.repeats, m.inner) == (r, i) == (20, 1)
    assert m.median_s == pytest.approx(1e-3)
    assert len(calls) == max(w, 2) + r * i
    # a tiny kernel is batched; a long one gets the minimum repeats and one warm-up
    assert cfg.schedule(1e-6)[2] == 50 and cfg.schedule(1e-7)[2] == cfg.max_inner
    assert cfg.schedule(1e-6, flush=True)[2] == 1
    assert cfg.schedule(0.5) == (1, cfg.min_repeats, 1)


def test_hold_covers_the_host_enqueue_of_each_sample():
    """The device is held before every start mark (never inside the timed region), for
    hold_factor x host enqueue time x inner + hold_min_s; a hold must not change the times."""
    cfg = TimingConfig()
    timer = FakeTimer()
    fn, _ = _fake_kernel(timer, [2e-6])
    m = measure(fn, timer, warmup=0, repeats=3, inner=4, hold_s=7e-5)
    assert timer.held_s == [7e-5] * 3 and m.median_s == pytest.approx(2e-6)
    # auto_measure: the host time of the probe call (an injected host clock: 10 us per call) sets the hold
    host = iter(np.arange(0.0, 1.0, 1e-5))  # each read advances 10 us: first call and probe each read twice
    timer = FakeTimer()
    fn, _ = _fake_kernel(timer, [1e-6])
    m = auto_measure(fn, timer, cfg, host_clock=lambda: float(next(host)))
    assert m.inner == 50 and m.median_s == pytest.approx(1e-6)
    assert timer.held_s[0] == pytest.approx(cfg.hold_s(1e-5))  # the probe's hold, from the first call
    assert timer.held_s[1:] == pytest.approx([min(cfg.hold_max_s, 2.0 * 1e-5 * 50 + 2e-5)] * m.repeats)
    # turned off, and invalid settings
    off = TimingConfig(hold_factor=0.0, hold_min_s=0.0)
    assert off.hold_s(1e-3, 64) == 0.0
    timer = FakeTimer()
    fn, _ = _fake_kernel(timer, [1e-3])
    auto_measure(fn, timer, off)
    assert all(h == 0.0 for h in timer.held_s)
    with pytest.raises(ValueError):
        TimingConfig(hold_min_s=1e-3, hold_max_s=1e-4)


def test_percentile():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 90) == 5


# ------------------------------------------------------------------------------------------ writer
def _grid_results() -> list[Result]:
    rng = np.random.default_rng(1)
    rs = []
    for dt in ("bf16", "fp8"):
        for m in (1, 16, 256):
            for n in (1024, 4096):
                for k in (1024, 2048):
                    rs.append(Result(Point("gemm", (dt,), (m, n, k)), float(rng.uniform(1e-5, 1e-3)), source="torch_cublas"))
    for b in (1, 2, 4):
        for s in (128, 256, 512):
            rs.append(Result(Point("context_attention", (32, 8, 128), (b, s)), float(rng.uniform(1e-5, 1e-3))))
        for L in (16, 256, 4096):
            rs.append(Result(Point("generation_attention", (32, 8, 128), (b, L)), float(rng.uniform(1e-5, 1e-3))))
    for op in ("all_reduce", "all_gather"):
        for g in (2, 4):
            for nb in (256, 4096, 1 << 20):
                rs.append(Result(Point("collective", (op,), (g, nb)), float(rng.uniform(1e-5, 1e-3)), source="NCCL"))
    rs.append(Result(Point("elementwise", ("rmsnorm",), (256, 4096)), 5e-6, source="torch_rms_norm"))
    rs.append(Result(Point("gemm", ("bf16",), (1, 8192, 8192)), None, error="OutOfMemoryError: fake"))
    return rs


def test_writer_round_trips_through_kernel_tables(tmp_path):
    rs = _grid_results()
    out = write_profile(tmp_path / "prof", rs, device=DEVICE, version="2.13.0", nccl_version="2.27.3",
                        metadata={"budget_minutes": 1.0})
    kt = KernelTables.load(out)
    assert kt.device == DEVICE and kt.matches_gpu("h100-sxm")
    for r in rs:
        if not r.ok:
            continue
        p = r.point
        if p.kind == "gemm":
            got = kt.gemm_s(*p.coords, dtype=p.series[0], framework="torch")
            assert kt.gemm_s(*p.coords, dtype=p.series[0]) == got  # torch is the default framework here
        elif p.kind == "context_attention":
            got = kt.context_attention_s(*p.coords, *p.series)
        elif p.kind == "generation_attention":
            got = kt.generation_attention_s(*p.coords, *p.series)
        elif p.kind == "collective":
            got = kt.collective_s(p.series[0], p.coords[0], p.coords[1])
        else:
            continue
        assert got == pytest.approx(r.latency_s, rel=1e-9), p
    # the failed shape is not in the tables; interpolation between written points works
    assert kt.gemm_s(1, 8192, 8192) is None
    assert kt.gemm_s(8, 2048, 1536) is not None
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["device"] == DEVICE and meta["budget_minutes"] == 1.0
    assert meta["points"]["gemm"] == 24 and meta["failed"]["gemm"] == 1
    assert meta["files"]["gemm_perf.parquet"] == 24
    assert "rmsnorm" in meta["elementwise_peak_bandwidth_gbps"]
    import pyarrow.parquet as pq

    g = pq.read_table(out / "gemm_perf.parquet")
    assert g.column_names == ["framework", "version", "device", "op_name", "kernel_source", "gemm_dtype", "m", "n",
                              "k", "latency"]
    assert set(g.column("gemm_dtype").to_pylist()) == {"bfloat16", "fp8"}
    gen = pq.read_table(out / "generation_attention_perf.parquet").to_pydict()
    assert all(i == 1 for i in gen["isl"]) and max(gen["step"]) == 4095
    nccl = pq.read_table(out / "nccl_perf.parquet").to_pydict()
    assert max(nccl["message_size"]) == (1 << 20) // 2 and set(nccl["nccl_dtype"]) == {"bfloat16"}
    detail = pq.read_table(out / "measurements.parquet").to_pydict()
    assert len(detail["kind"]) == len(rs) and any(e and "OutOfMemory" in e for e in detail["error"])


def test_writer_keeps_tables_of_other_kinds(tmp_path):
    rs = _grid_results()
    single = [r for r in rs if r.point.kind != "collective"]
    coll = [r for r in rs if r.point.kind == "collective"]
    write_profile(tmp_path, single, device=DEVICE)
    write_profile(tmp_path, coll, device=DEVICE)  # e.g. a later torchrun run for the collectives
    kt = KernelTables.load(tmp_path)
    assert kt.gemm_s(16, 4096, 1024) is not None and kt.collective_s("all_reduce", 2, 4096) is not None
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["kinds"] == ["collective"] and meta["previous_runs"][0]["points"]["gemm"] == 24


def test_measure_loop_end_to_end_with_fake_kernels(tmp_path):
    """Planner + loop + writer + KernelTables.load, with a fake measuring function and a fake clock."""
    clock = [0.0]
    pl = Planner(30.0, DeviceModel(), config=SMALL, seed=3)

    def fake_measure(p: Point) -> Result:
        t = pl.predict_s(p) * (1.3 if p.kind == "gemm" and p.coords[0] > 3000 else 1.0)
        clock[0] += pl.cost_s(p)
        return Result(p, t, 0.9 * t, 1.1 * t, 10, 1, False, "fake")

    rs = measure_loop(pl, fake_measure, clock=lambda: clock[0], deadline=30.0)
    assert rs and {r.phase for r in rs} >= {"probe", "coarse"}
    assert clock[0] <= 30.0 + max(r.wall_s for r in rs)
    out = write_profile(tmp_path, [r for r in rs if pl.on_grid(r.point)], device=DEVICE)
    kt = KernelTables.load(out)
    for r in rs:
        p = r.point
        if p.kind == "gemm" and pl.on_grid(p):
            assert kt.gemm_s(*p.coords, dtype=p.series[0]) == pytest.approx(r.latency_s, rel=1e-9)
    # the written GEMM grid is complete: every (m, n, k) of the final axes is there
    for s in pl.series.values():
        if s.kind == "gemm" and s.active:
            n_pts = sum(1 for r in rs if r.point.kind == "gemm" and r.point.series == s.key and pl.on_grid(r.point))
            assert n_pts == np.prod([len(a) for a in s.axes])


def test_slow_measurements_shrink_later_coarse_grids():
    """If shapes take 10x longer than estimated, the later kinds' coarse grids shrink so that
    they still fit the budget (instead of being cut off, with holes, at the deadline)."""
    budget = 20.0
    ref = Planner(budget, DeviceModel(), config=SMALL)  # the uncalibrated estimate

    def run(factor: float):
        clock = [0.0]
        pl = Planner(budget, DeviceModel(), config=SMALL)

        def slow(p: Point) -> Result:
            clock[0] += factor * ref.cost_s(p)
            return Result(p, ref.predict_s(p), source="fake")

        return pl, measure_loop(pl, slow, clock=lambda: clock[0], deadline=budget), clock[0]

    nominal, _, _ = run(1.0)
    pl, rs, elapsed = run(10.0)
    assert elapsed <= budget * 1.05
    assert pl.phase_points["coarse"] < nominal.phase_points["coarse"]
    for s in pl.series.values():  # every active grid is complete: nothing was skipped at the deadline
        if s.active:
            got = sum(1 for r in rs if (r.point.kind, r.point.series) == (s.kind, s.key) and pl.on_grid(r.point))
            feasible = sum(1 for c in np.ndindex(*[len(a) for a in s.axes])
                           if pl.feasible(Point(s.kind, s.key, tuple(a[i] for a, i in zip(s.axes, c)))))
            assert got == feasible, (s.kind, s.key)
    assert all(s.active for s in pl.series.values() if s.kind == "gemm")


# ------------------------------------------------------------------------------------------ entry point
def test_run_profile_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    _no_torch(monkeypatch)
    with pytest.raises(LlmsimError) as e:
        run_profile(tmp_path / "out", budget_minutes=1)
    assert e.value.message == "llmsim profile needs PyTorch with a CUDA GPU"
    assert "llmsim[profile]" in e.value.hint and "--dry-run" in e.value.hint
    assert not (tmp_path / "out").exists()


def test_run_profile_without_cuda_is_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(LlmsimError, match="needs PyTorch with a CUDA GPU"):
        run_profile(tmp_path / "out", budget_minutes=1)


def test_dry_run_needs_no_torch(tmp_path, monkeypatch):
    _no_torch(monkeypatch)
    path = run_profile(tmp_path / "plan", budget_minutes=0.5, dry_run=True, device="l40s", seed=2, log=None)
    plan = json.loads(path.read_text())
    assert plan["device"] == "NVIDIA L40S 48GB" and plan["budget_s"] == 30.0 and plan["seed"] == 2
    assert plan["estimated_s"] <= 30.0
    assert plan["coarse"]["gemm bf16"]["axes"] == ["m", "n", "k"] and plan["coarse"]["gemm bf16"]["shapes"]


def test_bad_arguments(tmp_path):
    with pytest.raises(LlmsimError, match="positive"):
        run_profile(tmp_path, budget_minutes=0, dry_run=True)
    with pytest.raises(LlmsimError, match="unknown kernel kind"):
        run_profile(tmp_path, budget_minutes=1, dry_run=True, kinds="gemm,matmul")


@pytest.mark.parametrize("device", ["nope", "h999", "Some Future GPU"])
def test_dry_run_unknown_device_lists_the_known_ones(tmp_path, device):
    with pytest.raises(LlmsimError) as e:
        run_profile(tmp_path, budget_minutes=0.2, dry_run=True, device=device, kinds="gemm", log=None)
    assert f"unknown device {device!r} (--device)" in e.value.message
    assert "h100-sxm" in e.value.hint and "l40s" in e.value.hint
    assert not (tmp_path / "plan.json").exists()


@pytest.mark.parametrize("device", ["123", 123, "0", "cuda:0", "cpu", True])
def test_dry_run_device_is_a_gpu_to_plan_for_not_a_cuda_index(tmp_path, device):
    with pytest.raises(LlmsimError) as e:
        run_profile(tmp_path, budget_minutes=0.2, dry_run=True, device=device, kinds="gemm", log=None)
    assert f"with --dry-run, --device names the GPU to plan for, got {device!r}" in e.value.message
    assert "h100-sxm" in e.value.hint


@pytest.mark.parametrize("device", ["nope", "h100-sxm", -1, "cuda:x", 1.0])
def test_real_run_device_must_be_a_cuda_device(tmp_path, monkeypatch, device):
    _no_torch(monkeypatch)  # checked before torch is needed
    with pytest.raises(LlmsimError) as e:
        run_profile(tmp_path, budget_minutes=1, device=device, log=None)
    assert f"--device must be a CUDA device (an index such as 0, or cuda:N), got {device!r}" in e.value.message
    assert "--dry-run --device h100-sxm" in e.value.hint


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize("seed", [-3, 1.5, "1", True, None])
def test_seed_must_be_a_non_negative_integer(tmp_path, monkeypatch, dry_run, seed):
    _no_torch(monkeypatch)
    with pytest.raises(LlmsimError) as e:
        run_profile(tmp_path, budget_minutes=0.2, dry_run=dry_run, seed=seed, kinds="gemm", log=None)
    assert f"seed must be an integer >= 0, got {seed!r}" in e.value.message and e.value.hint
    with pytest.raises(LlmsimError, match="seed must be an integer >= 0"):
        make_plan(0.2, "h100-sxm", seed=seed, kinds=["gemm"])


def test_module_main_rejects_bad_device_and_seed(tmp_path, capsys, monkeypatch):
    from llmsim.profile.__main__ import main

    _no_torch(monkeypatch)
    assert main(["--out", str(tmp_path), "--dry-run", "--device", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'nope'" in err and "hint:" in err and "h100-sxm" in err
    assert main(["--out", str(tmp_path), "--dry-run", "--seed", "-3"]) == 2
    assert "seed must be an integer >= 0, got -3" in capsys.readouterr().err
    assert not (tmp_path / "plan.json").exists()


def test_module_main_dry_run(tmp_path, capsys, monkeypatch):
    from llmsim.profile.__main__ import main

    _no_torch(monkeypatch)
    assert main(["--out", str(tmp_path), "--budget-minutes", "0.2", "--dry-run", "--kinds", "gemm"]) == 0
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "plan.json"
    assert main(["--out", str(tmp_path), "--budget-minutes", "1"]) == 2
    assert "CUDA GPU" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real kernels (CPU)
def test_torch_kernels_on_cpu():
    pytest.importorskip("torch")
    from llmsim.profile.kernels import KernelFactory
    from llmsim.profile.timing import PerfCounterTimer

    f = KernelFactory("cpu", seed=0)
    timer = PerfCounterTimer()
    cfg = TimingConfig(warmup=1, min_repeats=3, max_repeats=3, target_s=1e-4, max_inner=2)
    pts = [
        Point("gemm", ("bf16",), (4, 64, 32)),
        Point("gemm", ("fp8",), (4, 64, 32)),
        Point("context_attention", (4, 2, 16), (2, 8)),
        Point("context_attention", (4, 4, 16), (1, 8)),
        Point("generation_attention", (4, 2, 16), (2, 32)),
        Point("elementwise", ("rmsnorm",), (8, 64)),
        Point("elementwise", ("copy",), (8, 64)),
    ]
    for p in pts:
        if p.series == ("fp8",) and not f.fp8:
            continue
        fn, source = f.build(p)
        out = fn()
        m = auto_measure(fn, timer, cfg, flush=f.flush if p.kind == "elementwise" else None)
        assert m.median_s > 0 and m.p10_s <= m.median_s <= m.p90_s and source
        if p.kind == "gemm":
            assert tuple(out.shape) == (4, 64)
        if p.kind == "generation_attention":
            assert tuple(out.shape) == (2, 2, 2, 16)  # batch, kv heads, group, head dim
    # the same data for the same seed and shape
    a, _ = KernelFactory("cpu", seed=0).build(pts[0])
    b, _ = KernelFactory("cpu", seed=0).build(pts[0])
    assert (a() == b()).all()


def test_torch_collectives_on_a_single_process_group():
    torch = pytest.importorskip("torch")
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already in use")
    from llmsim.profile.kernels import KernelFactory
    from llmsim.profile.timing import PerfCounterTimer

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        f = KernelFactory("cpu")
        f.groups[1] = dist.group.WORLD
        for op in ("all_reduce", "all_gather", "reduce_scatter", "alltoall"):
            fn, source = f.build(Point("collective", (op,), (1, 4096)))
            m = measure(fn, PerfCounterTimer(), warmup=1, repeats=3)
            assert m.median_s > 0 and source == "NCCL"
    finally:
        dist.destroy_process_group()
    assert torch.ones(1).item() == 1


def test_cpu_profile_run_end_to_end(tmp_path):
    """The real measuring run (plan -> torch kernels -> tables) on a CPU, tiny shapes, ~2 s."""
    pytest.importorskip("torch")
    from llmsim.profile.runner import _run
    from llmsim.profile.timing import PerfCounterTimer

    cfg = PlanConfig(gemm_dtypes=("bf16",), gemm_m=(1, 8, 32), gemm_n=(64, 128), gemm_k=(64, 128),
                     attn_heads=((4, 2, 16),), ctx_batch=(1, 2), ctx_isl=(4, 16), ctx_max_tokens=64,
                     gen_batch=(1, 2), gen_kv_len=(4, 32), elem_tokens=(1, 16), elem_hidden=(64,))
    tm = TimingConfig(warmup=1, min_repeats=3, max_repeats=3, target_s=1e-4, max_inner=2)
    out = _run(tmp_path, 2.0, "cpu", 0, PerfCounterTimer(), ("gemm", "context_attention", "generation_attention",
                                                              "elementwise"), cfg, tm, "torch", None, allow_cpu=True)
    kt = KernelTables.load(out)
    # the probes (on every grid, however much the budget thins it) are measured and written
    assert kt.gemm_s(8, 128, 128) > 0
    assert kt.context_attention_s(2, 16, 4, 2, 16) > 0
    assert kt.generation_attention_s(2, 32, 4, 2, 16) > 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["points"]["gemm"] >= 1 and meta["timer"] == "perf_counter" and meta["llmsim_version"]
    assert meta["planner"]["points_by_phase"]["probe"] >= 3 and meta["device"].startswith("cpu")
