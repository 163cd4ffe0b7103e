"""Serving summary metrics audit: per-pool energy, ITL without the warm-up, per-token energy / cost
over the throughput's window, and the per-DP-rank default max_num_seqs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmsim.errors import LlmsimError
from llmsim.hardware.catalog import get_gpu
from llmsim.serving.metrics import GpuGroup, ItlHistogram, summarize
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.workload import make_workload

MODEL = "llama-3.1-8b"


def dep(**kw) -> Deployment:
    kw.setdefault("model", MODEL)
    kw.setdefault("kernels", "none")
    return Deployment(**kw)


# ---------------------------------------------------------------------------- energy per pool (audit D1)


@pytest.mark.parametrize("prefill, decode", [(Pool("a100-sxm-80gb", 1), Pool("h200", 2)),  # mixed GPUs
                                             (Pool("h100-sxm", 1), Pool("h100-sxm", 2))])  # same GPU, unequal pools
def test_disaggregated_energy_is_summed_per_pool(prefill, decode):
    wl = make_workload(num_requests=60, isl=1024, osl=32, rate=6, seed=1, warmup=6)
    res = simulate(dep(prefill=prefill, decode=decode), wl)
    s = res.summary
    pr = res.per_request()
    run = float(np.nanmax(pr["finish_s"]) - pr["arrival_s"].min())  # the busy fractions' window: the whole run
    watts = busy_gpus = 0.0
    for pool, role in ((prefill, "prefill"), (decode, "decode")):
        g = get_gpu(pool.gpu)
        engines = [e for e in res.engines if e.cfg.role == role]
        busy = sum(e.busy_s for e in engines) / (len(engines) * run)
        watts += pool.gpus_per_worker * pool.workers * (g.idle_power_w + (g.tdp_w - g.idle_power_w) * busy)
        busy_gpus += pool.gpus_per_worker * pool.workers * busy
    assert s["num_gpus"] == 3
    assert s["energy_j"] == pytest.approx(watts * s["duration_s"], rel=1e-9)
    assert s["gpu_avg_power_w"] == pytest.approx(watts / 3, rel=1e-9)
    assert s["busy_fraction"] == pytest.approx(busy_gpus / 3, rel=1e-9)  # GPU-weighted
    assert s["engine_busy_fraction"] == s["busy_fraction"]  # one quantity, two names
    assert s["energy_j_per_output_token"] == pytest.approx(s["gpu_avg_power_w"] * 3 / s["output_tokens_per_s"], rel=1e-9)


def test_summarize_gpu_groups():
    arr, ft, fin = np.array([0.0, 0.5, 1.0]), np.array([0.2, 0.8, 1.5]), np.array([1.0, 1.5, 2.0])
    inp, out = np.array([10, 20, 30]), np.array([5, 6, 7])
    r = summarize(arr, ft, fin, inp, out, num_gpus=5, price_per_gpu_hour_usd=2.0,
                  gpu_groups=[GpuGroup(1, 400, 50, 0.5), GpuGroup(4, 700, 100, 0.25)])
    watts = 1 * (50 + 350 * 0.5) + 4 * (100 + 600 * 0.25)
    assert r["energy_j"] == pytest.approx(watts * 2.0)
    assert r["gpu_avg_power_w"] == pytest.approx(watts / 5)
    assert r["busy_fraction"] == pytest.approx((0.5 + 4 * 0.25) / 5)
    assert r["energy_j_per_output_token"] == pytest.approx(watts * 2.0 / 18)
    # one group is the scalar form
    one = summarize(arr, ft, fin, inp, out, num_gpus=2, gpu_groups=[GpuGroup(2, 700, 100, 0.5)])
    assert one == summarize(arr, ft, fin, inp, out, num_gpus=2, gpu_power_w=700, gpu_idle_w=100, busy_fraction=0.5)
    with pytest.raises(LlmsimError, match="GPUs"):
        summarize(arr, ft, fin, inp, out, num_gpus=4, gpu_groups=[GpuGroup(1, 400, 50, 0.5)])
    with pytest.raises(LlmsimError, match="not both"):
        summarize(arr, ft, fin, inp, out, num_gpus=1, gpu_power_w=700, gpu_groups=[GpuGroup(1, 400, 50, 0.5)])


# ---------------------------------------------------------------------------- ITL without the warm-up (audit D3)


def _gap_time_after_cut(pr) -> float:
    """Seconds of token gaps the counted requests produce after the warm-up cut-off."""
    w = pr["warmup"]
    cut = pr["finish_s"][w].max()
    fin, ft = pr["finish_s"][~w], pr["first_token_s"][~w]
    return float(np.sum(np.clip(fin - np.maximum(ft, cut), 0.0, None)))


def test_itl_leaves_out_gaps_before_the_warmup_cutoff():
    wl = make_workload(num_requests=120, isl=1024, osl=64, rate=10, seed=1, warmup=30)
    res = simulate(dep(pool=Pool("h100-sxm")), wl)
    pr = res.per_request()
    itl = res.engines[0].itl
    # every gap recorded after the cut-off, none before: their total time is the counted requests'
    # decode time after it (the cut falls at an iteration's end, where every running request has
    # a token; it was 97.6 s, every request's, when ITL kept the warm-up)
    assert itl.count * itl.mean() == pytest.approx(_gap_time_after_cut(pr), rel=1e-6)
    w = pr["warmup"]
    assert itl.count <= int((pr["output_tokens"][~w] - 1).sum())
    assert res.summary["itl_ms"]["mean"] == pytest.approx(itl.mean() * 1e3)
    # without warm-up nothing is cut
    full = simulate(dep(pool=Pool("h100-sxm")), make_workload(num_requests=120, isl=1024, osl=64, rate=10, seed=1))
    p0 = full.per_request()
    h0 = full.engines[0].itl
    assert h0.count * h0.mean() == pytest.approx(float(np.sum(p0["finish_s"] - p0["first_token_s"])), rel=1e-6)


def test_itl_warmup_cut_is_the_same_in_exact_and_streaming_mode():
    wl = make_workload(num_requests=96, isl=1024, osl=48, concurrency=24, seed=2, warmup=24)
    exact = simulate(dep(pool=Pool("h100-sxm")), wl)
    stream = simulate(dep(pool=Pool("h100-sxm")), wl, streaming=True)
    assert exact.summary["itl_ms"] == stream.summary["itl_ms"]
    assert exact.engines[0].itl.count == stream.engines[0].itl.count
    assert exact.engines[0].itl.count * exact.engines[0].itl.mean() == pytest.approx(_gap_time_after_cut(exact.per_request()), rel=1e-6)


def test_log_histogram_reset():
    h = ItlHistogram()
    h.add(0.01, 3)
    h.add_many(np.array([0.02, 0.03]))
    h.reset()
    assert h.count == 0 and math.isnan(h.mean())
    h.add(0.05)
    assert h.count == 1 and h.min == h.max == 0.05 and h.mean() == pytest.approx(0.05)


# ---------------------------------------------------------------------------- per-token energy / cost (audit D4, D5)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("closed", [True, False])
def test_per_token_energy_and_cost_use_the_throughput_window(closed, streaming):
    if closed:
        wl = make_workload(num_requests=96, isl=1024, osl=64, concurrency=16, seed=1, warmup=16)
    else:
        wl = make_workload(num_requests=96, isl=512, output_dist="uniform:1,128", rate=20, seed=1, warmup=24)
    s = simulate(dep(pool=Pool("h100-sxm")), wl, streaming=streaming).summary
    tput = s["output_tokens_per_s"]
    assert s["energy_j_per_output_token"] == pytest.approx(s["gpu_avg_power_w"] * s["num_gpus"] / tput, rel=1e-9)
    assert s["usd_per_million_output_tokens"] == pytest.approx(s["cost_usd"] / s["duration_s"] / tput * 1e6, rel=1e-9)
    if closed:  # the window's tokens are fewer than all counted requests' (some came before the cut)
        assert tput * s["duration_s"] < s["total_output_tokens"]


def test_summarize_closed_loop_per_token_uses_window_tokens():
    # two warm-up requests finish at 1.0 s; request 2 decoded half its output before the cut
    arr, ft = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.1, 0.2, 0.5, 1.2])
    fin, out = np.array([0.8, 1.0, 1.5, 2.0]), np.array([10, 10, 11, 11])
    r = summarize(arr, ft, fin, np.full(4, 100), out, warmup=2, closed_loop=True, num_gpus=1, gpu_power_w=500,
                  price_per_gpu_hour_usd=3.6)
    win_out = 5.0 + 11.0  # half of request 2's 10 decode tokens, all of request 3's
    assert r["duration_s"] == pytest.approx(1.0) and r["output_tokens_per_s"] == pytest.approx(win_out)
    assert r["energy_j_per_output_token"] == pytest.approx(500 / win_out)
    assert r["usd_per_million_output_tokens"] == pytest.approx(3.6 / 3600 / win_out * 1e6)


# ---------------------------------------------------------------------------- default max_num_seqs per DP rank (engine audit D6)


@pytest.mark.parametrize("backend, expected", [("vllm", 2 * 1024), ("trtllm", 2 * 256), ("sglang", 256)])
def test_default_max_num_seqs_is_per_attention_dp_rank(backend, expected):
    wl = make_workload(num_requests=4, isl=64, osl=4, concurrency=4, seed=0)
    moe = {"model": "mixtral-8x7b", "pool": Pool("h100-sxm", tp=1, dp=2, ep=2), "weight_dtype": "fp8", "backend": backend}
    assert simulate(dep(**moe), wl).summary["max_num_seqs"] == expected
    assert simulate(dep(**moe, max_num_seqs=300), wl).summary["max_num_seqs"] == 300  # an explicit value is the replica's
