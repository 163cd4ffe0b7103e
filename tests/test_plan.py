"""Deployment planner (`llmsim plan`): search, pruning reasons, SLOs, budgets, determinism,
Mélange MILP, launch commands, JSON and the HTML report. Small models, few candidates: fast."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from llmsim.errors import LlmsimError
from llmsim.hardware.spec import GIB
from llmsim.layout import Parallel, Precision
from llmsim.memory.model import memory_breakdown
from llmsim.models.catalog import get_model
from llmsim.planner import parse_duration_ms, parse_gpus, parse_precisions, plan, plan_command
from llmsim.planner.evaluate import EvalContext, simulate_point
from llmsim.planner.launch import launch_commands
from llmsim.planner.melange import Instance, histogram, solve_mix
from llmsim.planner.prune import bounds
from llmsim.planner.space import Candidate, Family, enumerate_layouts
from llmsim.planner.workload import build_workload
from llmsim.serving.metrics import SLO
from llmsim.serving.simulate import Deployment, Pool, simulate

MODEL = "llama-3.1-8b"
BASE = dict(gpus="h100-sxm:2", isl=512, osl=64, precisions="bf16", kernels="none", max_num_batched_tokens="2048", max_concurrency=64)


def small(**kw):
    args = {**BASE, "ttft": "100ms", "tpot": "10ms", **kw}
    return plan(MODEL, **args)


@pytest.fixture(scope="module")
def base_plan():
    return small()


# ----------------------------------------------------------------------------- parsing


def test_parse_durations():
    assert parse_duration_ms("300ms") == 300
    assert parse_duration_ms("0.3s") == pytest.approx(300)
    assert parse_duration_ms("300") == 300
    assert parse_duration_ms(12.5) == 12.5
    assert parse_duration_ms("250us") == pytest.approx(0.25)
    for bad in ("fast", "-3ms", "0", "3 hours"):
        with pytest.raises(LlmsimError):
            parse_duration_ms(bad)


def test_parse_gpus_and_precisions():
    g = parse_gpus("h200-sxm:32,h100-sxm:64@2.5")
    assert [(x.name, x.max_count) for x in g] == [("h200-sxm", 32), ("h100-sxm", 64)]
    assert g[1].price_per_hour_usd == 2.5 and g[0].price_per_hour_usd > 0
    assert parse_gpus("h100:4", max_gpus=2)[0].max_count == 2
    with pytest.raises(LlmsimError, match="unknown GPU"):
        parse_gpus("h999:8")
    p = parse_precisions("bf16,fp8,fp8/bf16")
    assert [(x.weight, x.kv) for x in p] == [("bf16", "bf16"), ("fp8", "fp8"), ("fp8", "bf16")]
    with pytest.raises(LlmsimError):
        parse_precisions("fp7")


def test_prefix_workload_shares_blocks():
    wl = build_workload(isl=4000, osl=500, prefix=500)
    assert wl.prefix_tokens == 496 and wl.prefix_requested == 500  # whole 16-token KV blocks
    w = wl.closed_loop(4, 20)
    assert w.hash_block_tokens == 496 and all(list(h) == [0] for h in w.hash_ids)
    with pytest.raises(LlmsimError, match="shorter than the input"):
        build_workload(isl=400, osl=10, prefix=500)


# ----------------------------------------------------------------------------- pruning reasons


def test_memory_rejection_reason_has_the_shortfall():
    spec = get_model("llama-3.1-70b")
    g = parse_gpus("h100-sxm:8")[0]
    fam = Family(g, Parallel(1), parse_precisions("bf16")[0], "vllm")
    wl = build_workload(isl=1024, osl=128)
    b = bounds(spec, Candidate("agg", fam, 8192, True), wl, ttft_ms=1000, tpot_ms=100, percentile=90)
    assert not b.ok and b.stage == "memory"
    mem = memory_breakdown(spec, g.spec, Parallel(1), Precision.make("bf16"), batch=1, seq_len=1, max_batched_tokens=8192, memory_fraction=0.9)
    short = (mem.weights_bytes + mem.activation_bytes + mem.runtime_overhead_bytes - mem.usable_bytes) / GIB
    m = re.search(r"does not fit by ([0-9.]+) GiB", b.reason)
    assert m and float(m.group(1)) == pytest.approx(short, abs=0.06)
    # and the plan reports it for that family
    r = plan("llama-3.1-70b", gpus="h100-sxm:2", isl=1024, osl=128, ttft="5s", tpot="200ms", precisions="bf16", kernels="none",
             max_num_batched_tokens="8192", max_concurrency=8, disagg=False)
    reasons = [x for x in r.rejected if x.stage == "memory" and "tp1" in x.what]
    assert reasons and "does not fit by" in reasons[0].reason
    # TRT-LLM's fraction is of the memory the weights leave: the shortfall is against the whole GPU
    trt = bounds(spec, Candidate("agg", Family(g, Parallel(1), parse_precisions("bf16")[0], "trtllm"), 8192, True), wl,
                 ttft_ms=1000, tpot_ms=100, percentile=90)
    m = re.search(r"does not fit by ([0-9.]+) GiB.* vs ([0-9.]+) GiB usable", trt.reason)
    fixed = (mem.weights_bytes + mem.activation_bytes + mem.runtime_overhead_bytes) / GIB
    assert not trt.ok and m and float(m.group(1)) == pytest.approx(fixed - g.spec.memory_gib, abs=0.06), trt.reason
    assert float(m.group(2)) == pytest.approx(g.spec.memory_gib, abs=0.06) and "of the rest of" in trt.reason


def test_latency_rejection_reason_matches_simulation():
    spec = get_model(MODEL)
    g = parse_gpus("h100-sxm:1")[0]
    fam = Family(g, Parallel(1), parse_precisions("bf16")[0], "vllm")
    wl = build_workload(isl=512, osl=64)
    cand = Candidate("agg", fam, 2048, True)
    b = bounds(spec, cand, wl, ttft_ms=1000, tpot_ms=1.0, percentile=90)
    assert not b.ok and b.stage == "latency"
    m = re.search(r"p90 TPOT is at least ([0-9.]+) ms > 1 ms", b.reason)
    assert m, b.reason
    # the floor is what the simulator gives one request alone
    ctx = EvalContext(spec, wl, 1000.0, None, 90.0, kernels="auto")
    p = simulate_point(ctx, cand, 1)
    assert float(m.group(1)) == pytest.approx(p.tpot_ms, rel=0.01)
    # TTFT floor too
    b2 = bounds(spec, cand, wl, ttft_ms=1.0, tpot_ms=None, percentile=90)
    assert b2.stage == "latency" and re.search(r"p90 TTFT is at least [0-9.]+ ms > 1 ms", b2.reason)


def test_layout_rules_and_moe_layouts():
    ok, bad = enumerate_layouts(get_model(MODEL), parse_gpus("h100-sxm:16")[0])
    assert all(p.tp <= 8 and p.dp == 1 and p.ep == 1 for p in ok)
    assert any("NVLink domain" in r.reason for r in bad)
    moe, _ = enumerate_layouts(get_model("mixtral-8x7b"), parse_gpus("h100-sxm:8")[0])
    assert Parallel(1, 1, 8, 8) in moe and Parallel(8, 1, 1, 8) in moe and Parallel(8, 1, 1, 1) in moe
    for p in moe:
        p.validate(get_model("mixtral-8x7b"))
    # tp must divide the heads: 12 heads of gpt2 exclude tp 8
    ok2, bad2 = enumerate_layouts(get_model("gpt2"), parse_gpus("h100-sxm:8")[0])
    assert Parallel(8) not in ok2 and any("does not divide" in r.reason for r in bad2)


# ----------------------------------------------------------------------------- the answer


def _pct(x, p):
    return float(np.percentile(x, p))


def test_chosen_plan_meets_slos_when_resimulated(base_plan):
    r = base_plan
    assert r.feasible and r.best.verified_meets
    d = r.to_dict()["best"]
    # rebuild the deployment from the JSON alone and simulate it independently
    if d["mode"] == "aggregated":
        rep = d["replica"]
        dep = Deployment(model=MODEL, pool=Pool(rep["gpu"], rep["tp"], rep["pp"], rep["dp"], rep["ep"], d["replicas"]), backend=rep["engine"],
                         weight_dtype=rep["weight_dtype"], kv_dtype=rep["kv_dtype"], max_num_seqs=rep["max_num_seqs"],
                         max_num_batched_tokens=rep["max_num_batched_tokens"], chunked_prefill=rep["chunked_prefill"], kernels="none")
    else:
        p, q = d["prefill"], d["decode"]
        dep = Deployment(model=MODEL, prefill=Pool(p["gpu"], p["tp"], p["pp"], p["dp"], p["ep"], d["prefill_workers"]),
                         decode=Pool(q["gpu"], q["tp"], q["pp"], q["dp"], q["ep"], d["decode_workers"]), backend=q["engine"],
                         weight_dtype=q["weight_dtype"], kv_dtype=q["kv_dtype"], max_num_seqs=q["max_num_seqs"],
                         max_num_batched_tokens=p["max_num_batched_tokens"], chunked_prefill=p["chunked_prefill"], kernels="none")
    c = d["concurrency"]
    n = 3 * c + 40
    res = simulate(dep, r.workload.closed_loop(c, n), slo=SLO(r.ttft_ms, r.tpot_ms))
    q = res.per_request()
    order = np.argsort(q["finish_s"], kind="stable")[c:n - c]  # steady state: no warm-up, no drain
    assert np.percentile(q["ttft_ms"][order], 90) <= r.ttft_ms * (1 + 1e-9)
    assert np.percentile(q["tpot_ms"][order], 90) <= r.tpot_ms * (1 + 1e-9)
    # response-time law: c clients / mean E2E
    x = c / (q["e2e_ms"][order].mean() / 1e3) * q["output_tokens"][order].mean()
    assert x == pytest.approx(d["output_tokens_per_s"], rel=0.05)


def test_slo_monotonicity():
    """Looser targets never give a worse best answer."""
    grid = [("60ms", "7ms"), ("100ms", "7ms"), ("100ms", "9ms"), ("300ms", "9ms"), ("300ms", "12ms")]
    best = []
    for ttft, tpot in grid:
        r = small(ttft=ttft, tpot=tpot)
        best.append(r.best.output_tokens_per_s_per_gpu if r.best else 0.0)
    assert all(b2 >= b1 * (1 - 1e-9) for b1, b2 in zip(best, best[1:])), best
    assert best[-1] > best[0]


def test_percentile_changes_the_answer():
    r50 = small(percentile=50)
    r99 = small(percentile=99)
    assert r50.best.output_tokens_per_s_per_gpu >= r99.best.output_tokens_per_s_per_gpu
    r75 = small(percentile=75)  # not a summary key: computed from the requests
    assert r75.feasible and r75.best.verified.ttft_ms <= 100 and "ttft_p75_ms" in r75.to_dict()["best"]


def test_budgets_respected():
    free = small(gpus="h100-sxm:4", tpot="12ms")
    assert free.best.num_gpus == 4
    r = small(gpus="h100-sxm:4", tpot="12ms", max_gpus=2)
    assert r.best.num_gpus <= 2
    price = parse_gpus("h100-sxm")[0].price_per_hour_usd
    r = small(gpus="h100-sxm:4", tpot="12ms", budget_usd_per_hour=price * 3 + 0.01)
    assert r.best.usd_per_hour <= price * 3 + 0.01 and r.best.num_gpus <= 3
    r = small(gpus="h100-sxm:4", tpot="12ms", max_power_w=1500)
    assert r.best.tdp_w <= 1500
    for c in r.configs:
        assert c.tdp_w <= 1500


def test_rate_target_sizes_the_deployment():
    r = small(gpus="h100-sxm:8", tpot="12ms", rate=30.0, disagg=False)
    b = r.best
    assert r.objective == "gpus"
    per = b.agg.best.requests_per_s
    assert b.replicas == math.ceil(30.0 / per - 1e-9) or b.note
    assert b.verified.requests_per_s >= 30.0 * 0.995
    assert "--request-rate 30" in r.launch()["benchmark"]["vllm_bench_serve"]


def test_objectives_rank_differently():
    gp = small(gpus="h100-sxm:2,a100-sxm-80gb:2", tpot="12ms", objective="goodput", disagg=False)
    cost = small(gpus="h100-sxm:2,a100-sxm-80gb:2", tpot="12ms", objective="cost", disagg=False)
    en = small(gpus="h100-sxm:2,a100-sxm-80gb:2", tpot="12ms", objective="energy", disagg=False)
    assert gp.best.output_tokens_per_s_per_gpu == max(c.output_tokens_per_s_per_gpu for c in gp.configs if c.verified_meets is not False)
    assert cost.best.usd_per_million_output_tokens <= min(c.usd_per_million_output_tokens for c in cost.configs if c.verified is None) + 1e-9
    assert en.best.energy_j_per_output_token > 0
    with pytest.raises(LlmsimError, match="needs a target rate"):
        small(objective="gpus")


def test_deterministic_and_independent_of_jobs(base_plan):
    a = base_plan.to_dict()
    b = small().to_dict()
    c = small(jobs=2).to_dict()
    for d in (a, b, c):
        d.pop("stats")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) == json.dumps(c, sort_keys=True)
    d1 = small(seed=1, input_dist="uniform:256,768", isl=None).to_dict()
    d2 = small(seed=1, input_dist="uniform:256,768", isl=None).to_dict()
    d1.pop("stats")
    d2.pop("stats")
    assert d1 == d2


def test_ray_backend_matches_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        a = small(backend="ray").to_dict()
    finally:
        ray.shutdown()
    b = small().to_dict()
    a.pop("stats")
    b.pop("stats")
    assert a == b


# ----------------------------------------------------------------------------- bad inputs


def test_no_gpu_fits_is_a_clear_error():
    with pytest.raises(LlmsimError) as e:
        plan("llama-3.1-405b", gpus="l4:4", isl=1024, osl=128, ttft="1s", tpot="100ms", kernels="none")
    assert "fits on none of the GPU types" in e.value.message and "does not fit by" in e.value.message
    assert "GPUs" in e.value.hint


def test_infeasible_slo_says_so_and_gives_the_closest():
    r = small(tpot="2ms")
    assert not r.feasible and r.best is None
    assert "no configuration meets" in r.message and "TPOT" in r.message
    assert r.closest and r.closest["tpot_p90_ms"] > 2 and "configuration" in r.closest
    d = r.to_dict()
    assert d["feasible"] is False and d["closest"]["tpot_p90_ms"] == r.closest["tpot_p90_ms"]
    # infeasible only in simulation (analytic floor met): closest comes from simulated points
    r2 = small(ttft="1s", tpot="5.3ms")
    if not r2.feasible:
        assert r2.closest["tpot_p90_ms"] is not None


def test_bad_inputs():
    with pytest.raises(LlmsimError, match="percentile"):
        small(percentile=0)
    with pytest.raises(LlmsimError, match="objective"):
        small(objective="speed")
    with pytest.raises(LlmsimError, match="context"):
        plan(MODEL, gpus="h100-sxm:1", isl=200_000, osl=10, ttft="1s", tpot="1s")
    with pytest.raises(LlmsimError):
        small(rate=-1)


def _plan_error(**kw) -> LlmsimError:
    """The LlmsimError `small(**kw)` raises (all of these fail before anything is simulated)."""
    with pytest.raises(LlmsimError) as e:
        small(**kw)
    assert e.value.hint, f"no hint for {kw}: {e.value.message}"
    return e.value


@pytest.mark.parametrize("mbt,text", [
    ("abc", "entry 'abc' is not a whole number of tokens"),
    ("2048,nan", "entry 'nan' (in '2048,nan') is not a whole number"),
    ("2048.5", "entry '2048.5' is not a whole number"),
    ([2048.7], "entry 2048.7 (in [2048.7]) is not a whole number"),
    (True, "entry True is not a whole number"),
    ("0", ">= 16, got '0'"),
    ("2048,8", ">= 16, got '8' (in '2048,8')"),
    (" , ", ">= 16, got ' , '"),
])
def test_bad_max_num_batched_tokens_is_a_clear_error(mbt, text):
    e = _plan_error(max_num_batched_tokens=mbt)
    assert e.message.startswith("max_num_batched_tokens") and text in e.message
    assert "--max-num-batched-tokens 2048,8192" in e.hint


def test_max_num_batched_tokens_accepts_whole_numbers():
    from llmsim.planner.plan import _knob_sets

    k = _knob_sets(" 4096 , 2048,2048 ", None)
    assert k["prefill"] == ((2048, True), (4096, True))
    assert _knob_sets([2048.0, np.int64(4096)], None)["prefill"] == ((2048, True), (4096, True))


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_top_must_be_a_positive_integer(top, base_plan):
    with pytest.raises(LlmsimError, match=r"top must be an integer >= 1") as e:
        plan_command(model=MODEL, gpus="h100-sxm:2", isl=512, osl=64, tpot="10ms", top=top, as_json=True)  # before any search
    assert "--top 10" in e.value.hint and repr(top) in e.value.message
    with pytest.raises(LlmsimError, match="top must be"):
        base_plan.to_dict(top=top)


def test_mix_needs_a_rate_and_aggregated_replicas():
    # --mix without --rate used to plan normally and only say so inside the JSON (heterogeneous_mix)
    e = _plan_error(mix=True)
    assert "--mix" in e.message and "needs a target rate" in e.message and "--rate" in e.hint
    e = _plan_error(mix=True, rate=5.0, aggregated=False)
    assert "--no-agg" in e.message


@pytest.mark.parametrize("entry,text", [
    ("h100-sxm:2:0", "cannot read --gpus entry 'h100-sxm:2:0': expected TYPE[:MAX_COUNT][@USD_PER_GPU_HOUR]"),
    ("h100-sxm:", "GPU count '' in --gpus entry 'h100-sxm:' must be a whole number >= 1"),
    (":2", "no GPU type in --gpus entry ':2'"),
    ("@2", "no GPU type in --gpus entry '@2'"),
    ("h100-sxm:abc", "GPU count 'abc' in --gpus entry 'h100-sxm:abc'"),
    ("h100-sxm:-1", "GPU count '-1' in --gpus entry 'h100-sxm:-1'"),
    ("h100-sxm:1.5", "GPU count '1.5' in --gpus entry 'h100-sxm:1.5'"),
    ("h100-sxm:0", "GPU count '0' in --gpus entry 'h100-sxm:0' must be a whole number >= 1"),
    ("h100-sxm:2,h100:4", "GPU type h100-sxm given twice in --gpus"),
])
def test_malformed_gpu_entries(entry, text):
    with pytest.raises(LlmsimError) as e:
        parse_gpus(entry)
    assert text in e.value.message and e.value.hint
    if "given twice" not in text:
        assert "TYPE[:MAX_COUNT][@USD_PER_GPU_HOUR]" in e.value.hint and "--gpus" in e.value.hint


@pytest.mark.parametrize("entry,price", [("h100-sxm:2@abc", "'abc'"), ("h100-sxm:2@", "''"), ("h100-sxm:2@-1", "'-1'"),
                                         ("h100-sxm:2@nan", "'nan'"), ("h100-sxm:2@inf", "'inf'")])
def test_gpu_price_errors_name_the_gpus_entry(entry, price):
    # the shared catalog error hints `--price 2.5`, an option `plan` does not have: the planner checks first
    with pytest.raises(LlmsimError) as e:
        parse_gpus(entry)
    assert f"GPU price {price} in --gpus entry {entry!r}" in e.value.message
    assert "--price" not in e.value.hint and "h100-sxm:8@2.5" in e.value.hint


def test_good_gpu_entries_still_parse():
    g = parse_gpus(" h100-sxm : 2 @ 0 ,a100-sxm-80gb")
    assert [(x.name, x.max_count, x.price_per_hour_usd) for x in g][0] == ("h100-sxm", 2, 0.0)
    assert g[1].max_count == 8


@pytest.mark.parametrize("kw,text", [
    (dict(budget_usd_per_hour=math.inf), "$/hour budget must be a positive, finite number, got inf"),
    (dict(budget_usd_per_hour=math.nan), "$/hour budget must be a positive, finite number, got nan"),
    (dict(budget_usd_per_hour=0), "$/hour budget must be a positive, finite number, got 0"),
    (dict(max_power_w=math.inf), "power budget must be a positive, finite number of watts, got inf"),
    (dict(max_power_w=-1.0), "power budget must be a positive, finite number of watts, got -1.0"),
    (dict(jobs=0), "jobs must be an integer >= 1, got 0"),
    (dict(jobs=-1), "jobs must be an integer >= 1, got -1"),
    (dict(max_gpus=0), "max_gpus must be an integer >= 1, got 0"),
    (dict(max_gpus=True), "max_gpus must be an integer >= 1, got True"),
    (dict(max_concurrency=0), "max_concurrency must be an integer >= 1, got 0"),
    (dict(max_concurrency=True), "max_concurrency must be an integer >= 1, got True"),
    (dict(rate=math.nan), "rate must be a positive, finite number of requests/s, got nan"),
    (dict(rate=math.inf), "rate must be a positive, finite number of requests/s, got inf"),
    (dict(rate=0.0), "rate must be a positive, finite number of requests/s, got 0.0"),
    (dict(percentile=math.nan), "percentile must be in (0, 100], got nan"),
    (dict(percentile=101), "percentile must be in (0, 100], got 101"),
    (dict(ttft="nan"), "TTFT target (--ttft) must be a duration"),
    (dict(tpot=0), "TPOT target (--tpot) must be a positive duration, got 0"),
    (dict(tpot=math.inf), "TPOT target (--tpot) must be a positive duration, got inf"),
    (dict(prefix=-1), "prefix must be a whole number of tokens >= 0, got -1"),
    (dict(engines=""), "no serving engine to plan for"),
    (dict(backend="dask"), "unknown execution backend 'dask'"),
    (dict(aggregated=False, disagg=False), "nothing to search"),
    (dict(kernels="/nonexistent/kernel-tables"), "--kernels '/nonexistent/kernel-tables': kernel table directory"),
])
def test_bad_numeric_and_other_plan_options(kw, text):
    e = _plan_error(**kw)
    assert text in e.message


@pytest.mark.parametrize("kw,text", [
    (dict(chunked_prefill="no"), "chunked_prefill must be True or False (or None), got 'no'"),
    (dict(chunked_prefill=0), "chunked_prefill must be True or False (or None), got 0"),
    (dict(verify="no"), "verify must be True or False, got 'no'"),
    (dict(verify=1), "verify must be True or False, got 1"),
    (dict(disagg="false"), "disagg must be True or False, got 'false'"),
    (dict(aggregated=0), "aggregated must be True or False, got 0"),
    (dict(mix="yes"), "mix must be True or False, got 'yes'"),
    (dict(prefix=True), "prefix must be a whole number of tokens >= 0, got True"),
    (dict(prefix=100.0), "prefix must be a whole number of tokens >= 0, got 100.0"),
    (dict(gpus=5), "gpus must be a TYPE[:MAX_COUNT][@USD_PER_GPU_HOUR] string or a list of such strings, got 5"),
    (dict(gpus=["h100-sxm:2", 8]), "gpus must be a TYPE[:MAX_COUNT][@USD_PER_GPU_HOUR] string or a list of such strings, got ['h100-sxm:2', 8]"),
    (dict(seed=-3), "seed must be an integer >= 0, got -3"),
    (dict(seed=1.5), "seed must be an integer >= 0, got 1.5"),
])
def test_plan_switches_and_types(kw, text):
    e = _plan_error(**kw)
    assert text in e.message


@pytest.mark.parametrize("kw,text,hint", [
    (dict(input_dist="uniform:10,20", osl=16, prefix=100),
     "shared prefix (100 tokens) must be shorter than every input, but uniform:10,20 can draw 10-token prompts", "--prefix < 10"),
    (dict(input_dist="uniform:100,4000", osl=16, prefix=100), "uniform:100,4000 can draw 100-token prompts", "--prefix < 100"),
    (dict(input_dist="normal:1000,400", osl=16, prefix=500), "the shortest of the 4096 prompts drawn from --input-dist normal:1000,400 has",
     "narrower normal"),
    (dict(isl=400, osl=10, prefix=400), "shared prefix (400 tokens) must be shorter than the input (400 tokens)", "--prefix < 400"),
])
def test_prefix_must_be_shorter_than_every_prompt(kw, text, hint):
    with pytest.raises(LlmsimError) as e:
        build_workload(**kw)
    assert text in e.value.message and hint in e.value.hint


def test_prefix_shorter_than_every_prompt_is_kept():
    wl = build_workload(input_dist="uniform:600,700", osl=16, prefix=500)
    assert wl.prefix_tokens == 496 and int(wl.input_len.min()) >= 600 and "shared prefix 500 tokens (496 cached)" in wl.description
    with pytest.raises(LlmsimError, match="uniform:10,20 can draw 10-token prompts"):
        small(isl=None, input_dist="uniform:10,20", osl=16, prefix=100)


# ----------------------------------------------------------------------------- Mélange


def test_melange_picks_the_cheaper_mix():
    pytest.importorskip("scipy")
    # cheap GPU: great for short requests, poor for long; dear GPU: good for both
    cheap = Instance("cheap", "l4", 1, 1.0, [10.0, 1.0])
    dear = Instance("dear", "h100", 1, 4.0, [20.0, 10.0])
    rates = [30.0, 10.0]
    mix = solve_mix([cheap, dear], rates)
    # by hand: short on cheap (3 x $1), long on dear (1 x $4) = $7; all-dear needs 3 ($12), all-cheap 13 ($13)
    assert mix.feasible and mix.usd_per_hour == pytest.approx(7.0)
    assert mix.counts == {"cheap": 3, "dear": 1}
    assert mix.shares[0] == pytest.approx({"cheap": 1.0}) and mix.shares[1] == pytest.approx({"dear": 1.0})
    assert solve_mix([dear], rates).usd_per_hour == pytest.approx(12.0)
    assert solve_mix([cheap], rates).usd_per_hour == pytest.approx(13.0)
    # availability limits bind: only 2 cheap GPUs
    m2 = solve_mix([cheap, dear], rates, gpus_available={"l4": 2})
    assert m2.counts["cheap"] <= 2 and m2.usd_per_hour > 7.0
    # a bucket nobody can serve
    assert not solve_mix([Instance("x", "l4", 1, 1.0, [1.0, 0.0])], rates).feasible


def test_melange_in_a_plan_and_histogram():
    pytest.importorskip("scipy")
    h = histogram(np.array([100, 200, 2000, 3000]), np.array([50, 60, 600, 700]))
    assert len(h) == 2 and sum(b["share"] for b in h) == pytest.approx(1.0)
    r = small(gpus="h100-sxm:2,a100-sxm-80gb:2", tpot="12ms", rate=20.0, disagg=False, mix=True)
    m = r.mix
    assert m["feasible"] and m["usd_per_hour"] <= m["best_single_type_usd_per_hour"] + 1e-9
    assert "formulation" in m
    # the mix is on the console too, not only in --json
    from rich.console import Console

    con = Console(record=True, width=200)
    r.render(con)
    text = con.export_text()
    assert "heterogeneous GPU mix (Mélange)" in text and m["message"] in text


# ----------------------------------------------------------------------------- outputs


def test_unchunked_launch_flags_match_the_simulated_budget(base_plan):
    # without chunked prefill vLLM needs a budget covering max_model_len (its default then, as
    # simulated) while TRT-LLM's max_num_tokens keeps bounding an iteration (simulated so too)
    import dataclasses

    from llmsim.planner.launch import trtllm_args, trtllm_yaml, vllm_args

    b = base_plan.best
    cand = b.agg.candidate if b.mode == "aggregated" else b.prefill.candidate
    whole = dataclasses.replace(cand, max_num_batched_tokens=8192, chunked_prefill=False)
    v = " ".join(vllm_args("m", whole, 16, 8000))
    assert "--no-enable-chunked-prefill" in v and "--max-num-batched-tokens" not in v
    t = " ".join(trtllm_args("m", whole, 16, 8000, "x.yaml"))
    assert "--max_num_tokens 8192" in t and "enable_chunked_prefill: false" in trtllm_yaml(whole)
    chunked = dataclasses.replace(cand, max_num_batched_tokens=2048, chunked_prefill=True)
    assert "--max-num-batched-tokens 2048 --enable-chunked-prefill" in " ".join(vllm_args("m", chunked, 16, 8000))


def test_launch_commands_carry_the_chosen_degrees(base_plan):
    b = base_plan.best
    ln = base_plan.launch()
    seqs = b.per_engine_concurrency
    v = " ".join(ln["serve"]["vllm"])
    sg = " ".join(ln["serve"]["sglang"])
    t = " ".join(ln["serve"]["trtllm"])
    assert f"--max-num-seqs {seqs}" in v and "--max-num-batched-tokens 2048" in v and f"--max-running-requests {seqs}" in sg
    if b.mode == "aggregated":
        p = b.agg.candidate.family.par
        assert v.startswith("vllm serve") or "vllm serve" in v
        assert f"--tensor-parallel-size {p.tp}" in v and f"--pipeline-parallel-size {p.pp}" in v and f"--tp {p.tp}" in sg
        assert f"--tp_size {p.tp}" in t and f"--pp_size {p.pp}" in t and f"--max_batch_size {seqs}" in t and "--max_num_tokens 2048" in t
    else:
        for cand in (b.prefill.candidate, b.decode.candidate):
            p = cand.family.par
            assert f"--tensor-parallel-size {p.tp}" in v and f"--tp {p.tp}" in sg and f"tensor_parallel_size: {p.tp}" in t
        assert v.count("--disaggregation-mode prefill") == b.prefill_workers and v.count("--disaggregation-mode decode") == b.decode_workers
    bench = ln["benchmark"]["vllm_bench_serve"]
    assert f"--max-concurrency {b.concurrency}" in bench and "--random-input-len 512" in bench and "--random-output-len 64" in bench
    assert "--goodput ttft:100 tpot:10" in bench
    assert f"--concurrency {b.concurrency}" in ln["benchmark"]["aiperf"]


def test_disaggregated_and_fp8_launch_commands():
    r = plan("Qwen/Qwen3-32B", gpus="h200-sxm:8", isl=4000, osl=500, prefix=500, ttft="600ms", tpot="10ms", precisions="fp8",
             aggregated=False, max_num_batched_tokens="8192", max_concurrency=32)
    b = r.best
    assert b is not None and b.mode == "disaggregated"
    # the prefill worker is judged on the TTFT the client sees: its own plus the front end's
    # hand-off time (vLLM streams the first token from the decode worker)
    from llmsim.serving.backends import get_backend
    be = get_backend(b.prefill.candidate.family.engine)
    assert be.disagg_first_token == "decode" and be.disagg_handoff_s > 0
    assert b.prefill.best.ttft_stats_ms["p50"] > 1e3 * be.disagg_handoff_s
    # the end-to-end verification sees the TTFT the prefill search predicted: their means agree
    # (the p90 the SLO is judged on depends on how the two runs' arrivals bunch: 403 vs 582 ms at
    # one point, with means 369 vs 371 ms)
    assert b.verified.ttft_stats_ms["mean"] == pytest.approx(b.prefill.best.ttft_stats_ms["mean"], rel=0.15)
    ln = launch_commands(b, "Qwen/Qwen3-32B", r.workload, ttft_ms=600, tpot_ms=10)
    v = "\n".join(ln["serve"]["vllm"])
    assert "dynamo.frontend" in v and "--disaggregation-mode prefill" in v and "--disaggregation-mode decode" in v
    assert f"--tensor-parallel-size {b.prefill.candidate.family.par.tp}" in v and f"--tensor-parallel-size {b.decode.candidate.family.par.tp}" in v
    assert "--quantization fp8" in v and "--kv-cache-dtype fp8" in v
    s = "\n".join(ln["serve"]["sglang"])
    assert "python -m dynamo.sglang" in s and "--disaggregation-mode decode" in s and "--kv-cache-dtype fp8_e4m3" in s
    t = "\n".join(ln["serve"]["trtllm"])
    assert "prefill.yaml" in t and "decode.yaml" in t and "dtype: fp8" in t
    bench = ln["benchmark"]["vllm_bench_serve"]
    assert "--random-prefix-len 500" in bench and "--random-input-len 3500" in bench
    assert r.best.verified_meets


def test_json_is_strict_and_unit_suffixed(base_plan):
    d = plan_command(model=MODEL, as_json=True, jobs=1, ttft="100ms", tpot="10ms", **{k: v for k, v in BASE.items() if k != "precisions"},
                     precision="bf16")
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["best"]["num_gpus"] >= 1
    best = d["best"]
    for k in ("ttft_p90_ms", "tpot_p90_ms", "output_tokens_per_s_per_gpu", "usd_per_hour", "usd_per_million_output_tokens",
              "energy_j_per_output_token", "tokens_per_s_per_user"):
        assert k in best
    assert d["pareto"]["throughput_vs_interactivity"] and d["rejected"] and d["launch"]["benchmark"]


def test_pareto_frontier_is_non_dominated(base_plan):
    front = base_plan.fronts["throughput_vs_interactivity"]
    pts = base_plan.fronts["points"]
    assert front
    for f in front:
        for p in pts:
            if p.tokens_per_s_per_user is None:
                continue
            assert not (p.tokens_per_s_per_user >= f.tokens_per_s_per_user and p.output_tokens_per_s_per_gpu >= f.output_tokens_per_s_per_gpu
                        and (p.tokens_per_s_per_user > f.tokens_per_s_per_user or p.output_tokens_per_s_per_gpu > f.output_tokens_per_s_per_gpu))


def test_html_report_is_self_contained(base_plan, tmp_path):
    pytest.importorskip("plotly")
    out = tmp_path / "plan.html"
    base_plan.write_report(out)
    text = out.read_text()
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js bundle inline
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?:", text, re.IGNORECASE)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?https?:", text, re.IGNORECASE)
    assert "Launch commands" in text and "Rejected configurations" in text
    assert ("vllm serve" in text) or ("dynamo.vllm" in text)


def test_console_render(base_plan):
    from rich.console import Console

    con = Console(record=True, width=200)
    base_plan.render(con)
    text = con.export_text()
    assert "best configurations" in text and "vllm" in text and "searched" in text


def test_prefix_cache_hits_in_the_plan():
    r = small(isl=1024, prefix=512, tpot="12ms", disagg=False)
    assert r.best.verified.prefix_cache_hit_rate > 0.3


def test_pipeline_only_when_needed():
    # 405B bf16 does not fit 8 H100s at pp=1: pp=2 (16 GPUs) is tried and chosen
    r = plan("llama-3.1-405b", gpus="h100-sxm:16", isl=512, osl=32, ttft="10s", tpot="200ms", precisions="bf16", kernels="none",
             max_num_batched_tokens="4096", max_concurrency=8, disagg=False)
    assert r.best is not None and r.best.agg.candidate.family.par.pp >= 2
    # an 8B model fits at pp=1 everywhere: no pp>1 family simulated, and the rule is reported
    b = small()
    assert all(sw.candidate.family.par.pp == 1 for sw in b.sweeps)
    assert any("pp>=2" in x.what and "pipeline stages" in x.reason for x in b.rejected)


@pytest.mark.parametrize("via", ["trace", "lengths_from"])
def test_prefix_longer_than_a_trace_prompt(tmp_path, via):
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,input_tokens,output_tokens\n0.0,800,20\n0.5,300,20\n1.0,900,20\n")
    kw = {"trace": str(f)} if via == "trace" else {"lengths_from": str(f)}
    with pytest.raises(LlmsimError) as e:
        build_workload(prefix=500, **kw)
    assert "shared prefix (500 tokens) must be shorter than every input" in e.value.message and "has 300 tokens" in e.value.message
    assert "--prefix < 300" in e.value.hint
    assert build_workload(prefix=200, **kw).prefix_tokens == 192
