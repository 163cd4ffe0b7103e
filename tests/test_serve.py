"""Serving simulator: conservation, capacity, determinism, queueing laws, policies and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmsim.errors import LlmsimError
from llmsim.serving.engine import Engine
from llmsim.serving.metrics import SLO
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.workload import Workload, make_workload

MODEL = "llama-3.1-8b"


def dep(**kw) -> Deployment:
    kw.setdefault("model", MODEL)
    kw.setdefault("kernels", "none")
    return Deployment(**kw)


def arrays(res):
    r = res.requests
    return (np.frombuffer(r.arrival), np.frombuffer(r.t_first), np.frombuffer(r.t_finish),
            np.frombuffer(r.gen, dtype=np.int64), np.frombuffer(r.out, dtype=np.int64))


def check_conservation(res, n):
    arrival, first, finish, gen, out = arrays(res)
    assert res.summary["num_completed"] == n
    assert np.all(np.isfinite(finish)) and np.all(np.isfinite(first))
    assert np.all(gen == out), "every request generated exactly the tokens it asked for"
    assert np.all(arrival <= first + 1e-12) and np.all(first <= finish + 1e-12)
    assert all(e.outstanding == 0 and e.idle for e in res.engines)


@pytest.mark.parametrize("chunked", [True, False])
def test_open_loop_conservation(chunked):
    wl = make_workload(num_requests=300, input_dist="uniform:16,3000", output_dist="uniform:1,400", rate=8.0, seed=1)
    res = simulate(dep(chunked_prefill=chunked), wl)
    check_conservation(res, 300)
    s = res.summary
    assert s["total_output_tokens"] == int(wl.output_len.sum())


def test_closed_loop_never_exceeds_concurrency():
    wl = make_workload(num_requests=200, isl=512, osl=64, concurrency=8, seed=0)
    res = simulate(dep(), wl)
    check_conservation(res, 200)
    arrival, _, finish, _, _ = arrays(res)
    # at any arrival instant at most 8 requests are in the system
    for t in arrival[::7]:
        assert np.sum((arrival <= t) & (finish > t)) <= 8


def test_offline_all_requests_queued_at_once():
    wl = make_workload(num_requests=64, isl=256, osl=32, concurrency=64, seed=0)
    res = simulate(dep(), wl)
    arrival = np.frombuffer(res.requests.arrival)
    assert np.all(arrival == 0.0)


def test_kv_never_exceeds_capacity_and_preemption_completes():
    # a tiny KV cache forces preemptions; every request still completes and usage stays within capacity
    wl = make_workload(num_requests=120, isl=900, osl=600, concurrency=40, seed=2)
    for mode in ("recompute", "swap"):
        res = simulate(dep(memory_fraction=0.225, preemption=mode), wl)
        check_conservation(res, 120)
        assert res.summary["preemptions"] > 0, mode
        for e in res.engines:
            assert max(u for _, u in e.kv_samples) <= 1.0 + 1e-9


def test_determinism():
    wl1 = make_workload(num_requests=200, input_dist="lognormal:800,400", output_dist="uniform:1,200", rate=6, cv=2.0, seed=7)
    wl2 = make_workload(num_requests=200, input_dist="lognormal:800,400", output_dist="uniform:1,200", rate=6, cv=2.0, seed=7)
    a = simulate(dep(), wl1).summary
    b = simulate(dep(), wl2).summary
    a.pop("simulation_wall_s"), b.pop("simulation_wall_s")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_littles_law_on_stable_open_loop():
    # L (time-average number in system, sampled independently) = lambda x W (mean E2E)
    wl = make_workload(num_requests=1500, isl=400, osl=100, rate=4.0, seed=3)
    res = simulate(dep(), wl)
    arrival, _, finish, _, _ = arrays(res)
    lam = res.summary["requests_per_s"]
    w = float(np.mean(finish - arrival))
    ts = np.random.default_rng(0).uniform(arrival[100], arrival[-100], 4000)
    L = np.mean([np.sum((arrival <= t) & (finish > t)) for t in ts])
    assert L == pytest.approx(lam * w, rel=0.08)
    assert lam == pytest.approx(4.0, rel=0.1)  # stable: throughput follows the offered load


def test_metric_definitions_match_timestamps():
    wl = make_workload(num_requests=50, isl=300, osl=40, rate=2, seed=0)
    res = simulate(dep(), wl)
    arrival, first, finish, _, out = arrays(res)
    tpot = (finish - first) / (out - 1)
    assert res.summary["ttft_ms"]["mean"] == pytest.approx(np.mean(first - arrival) * 1e3, rel=1e-9)
    assert res.summary["tpot_ms"]["mean"] == pytest.approx(np.mean(tpot) * 1e3, rel=1e-9)
    # ITL samples average to TPOT when every request decodes every step
    assert res.summary["itl_ms"]["mean"] == pytest.approx(res.summary["tpot_ms"]["mean"], rel=0.05)


def test_more_load_more_latency():
    lo = simulate(dep(), make_workload(num_requests=300, isl=1000, osl=100, rate=2, seed=0)).summary
    hi = simulate(dep(), make_workload(num_requests=300, isl=1000, osl=100, rate=20, seed=0)).summary
    assert hi["tpot_ms"]["mean"] > lo["tpot_ms"]["mean"]
    assert hi["ttft_ms"]["p90"] > lo["ttft_ms"]["p90"]


def test_chunked_prefill_smooths_inter_token_latency():
    # Sarathi-Serve: chunking long prompts bounds the stall decodes see behind a prefill
    wl = make_workload(num_requests=200, isl=6000, osl=200, rate=1.5, seed=0)
    chunked = simulate(dep(chunked_prefill=True, max_num_batched_tokens=512), wl).summary
    whole = simulate(dep(chunked_prefill=False), wl).summary
    assert chunked["itl_ms"]["max"] < whole["itl_ms"]["max"]


def test_engine_token_budget_defaults():
    # vLLM / TRT-LLM schedule their budget per attention-DP rank; SGLang's chunked-prefill size
    # is per replica and doubles on GPUs with >= 160 GB of HBM (its server_args memory tiers)
    from llmsim.hardware import get_gpu
    from llmsim.serving.backends import get_backend

    h100, h200, b200 = get_gpu("h100-sxm"), get_gpu("h200"), get_gpu("b200")
    assert get_backend("vllm").batched_tokens(b200, 8) == get_backend("trtllm").batched_tokens(b200, 8) == 8 * 8192
    sg = get_backend("sglang")
    assert (sg.batched_tokens(h100), sg.batched_tokens(h200), sg.batched_tokens(b200), sg.batched_tokens(b200, 8)) == (8192, 8192, 16384, 16384)
    assert sg.chunked_prefill and not sg.mixed_batches
    cfg = simulate(dep(backend="sglang", pool=Pool("b200")), make_workload(num_requests=4, isl=64, osl=4, concurrency=4, seed=0)).engines[0].cfg
    assert (cfg.max_num_batched_tokens, cfg.chunked_prefill, cfg.mixed_batches) == (16384, True, False)
    # mixed engines get room for every running decode in the default budget; an explicit one is checked
    cfg = simulate(dep(max_num_seqs=9000), make_workload(num_requests=4, isl=64, osl=4, concurrency=4, seed=0)).engines[0].cfg
    assert cfg.max_num_batched_tokens == 9000
    with pytest.raises(LlmsimError, match="max_num_batched_tokens"):
        simulate(dep(max_num_seqs=9000, max_num_batched_tokens=8192), make_workload(num_requests=4, isl=64, osl=4, concurrency=4, seed=0))


def test_unmixed_chunked_prefill_batches(monkeypatch):
    # SGLang's default scheduler: prompts are chunked at the token budget, a prefill batch holds
    # at most that many tokens and runs alone (no decode rides in it); decodes run when nothing
    # waits for prefill
    from llmsim.serving import steptime

    seen = []
    orig = steptime.StepTimeModel.iteration

    def spy(self, chunks, n_decode, ctx, rows):
        seen.append((sum(q for q, _ in chunks), n_decode))
        return orig(self, chunks, n_decode, ctx, rows)

    monkeypatch.setattr(steptime.StepTimeModel, "iteration", spy)
    wl = make_workload(num_requests=40, input_dist="uniform:200,5000", output_dist="uniform:2,50", rate=20.0, seed=4)
    res = simulate(dep(chunked_prefill=True, mixed_batches=False, max_num_batched_tokens=2048), wl)
    check_conservation(res, 40)
    assert seen and all(t <= 2048 and n == 0 for t, n in seen)
    assert any(t == 2048 for t, _ in seen), "long prompts are cut at the budget"
    # mixed (vLLM-style) batches do carry decodes beside prefill chunks
    seen.clear()
    check_conservation(simulate(dep(chunked_prefill=True, max_num_batched_tokens=2048), wl), 40)
    assert any(n > 0 for _, n in seen)
    # one 16k-token prefill batch instead of 160k: in a burst of long prompts the early ones get
    # their first token sooner than when every prompt of the burst is prefilled at once
    burst = make_workload(num_requests=32, isl=8192, osl=8, concurrency=32, seed=0)
    chunked = simulate(dep(chunked_prefill=True, mixed_batches=False, max_num_batched_tokens=16384), burst).summary
    whole = simulate(dep(chunked_prefill=False), burst).summary
    assert chunked["ttft_ms"]["mean"] < 0.8 * whole["ttft_ms"]["mean"]


def test_unchunked_prompts_mix_with_decodes_where_the_engine_mixes(monkeypatch):
    # Without chunked prefill every prompt is prefilled whole in one iteration. vLLM V1 and
    # TRT-LLM's in-flight batching still run the decodes in that iteration; SGLang (and vLLM V0)
    # run the prefill batch alone while decodes wait.
    from llmsim.serving import steptime

    seen = []
    orig = steptime.StepTimeModel.iteration

    def spy(self, chunks, n_decode, ctx, rows):
        seen.append((list(chunks), n_decode))
        return orig(self, chunks, n_decode, ctx, rows)

    monkeypatch.setattr(steptime.StepTimeModel, "iteration", spy)
    wl = make_workload(num_requests=60, input_dist="uniform:500,12000", output_dist="uniform:20,200", rate=4.0, seed=3)
    inputs = {int(x) for x in wl.input_len}
    for backend, mixed in (("vllm", None), ("trtllm", None), ("vllm", False), ("sglang", None)):
        seen.clear()
        res = simulate(dep(backend=backend, chunked_prefill=False, mixed_batches=mixed), wl)
        check_conservation(res, 60)
        cfg = res.engines[0].cfg
        assert not cfg.chunked_prefill
        # vLLM raises its budget to the context length; TRT-LLM's max_num_tokens and SGLang's
        # prefill budget keep bounding an iteration
        assert cfg.max_num_batched_tokens == (131072 if backend == "vllm" else 8192)
        prefills = [(c, n) for c, n in seen if c]
        assert prefills
        # whole prompts only: every prefill piece starts at token 0 and is a whole request's prompt
        assert all(p == 0 and q in inputs for c, _ in prefills for q, p in c)
        if backend == "vllm":
            assert any(sum(q for q, _ in c) > 8192 for c, _ in prefills), "prompts batched up to the context length"
        else:  # at most the budget, but a prompt that is an iteration's first runs whole
            assert all(sum(q for q, _ in c) <= 8192 or len(c) == 1 for c, _ in prefills)
            assert any(len(c) > 1 for c, _ in prefills)
        with_decodes = sum(n > 0 for _, n in prefills)
        if backend in ("vllm", "trtllm") and mixed is None:
            assert cfg.mixed_batches and with_decodes > 0
        else:
            assert not cfg.mixed_batches and with_decodes == 0


def test_static_batching_is_slower_than_continuous():
    wl = make_workload(num_requests=200, input_dist="uniform:100,1000", output_dist="uniform:10,500", concurrency=32, seed=0)
    cont = simulate(dep(), wl).summary
    for chunked in (True, False):
        # regression: with chunked prefill a static batch's later chunks were never scheduled and
        # the run ended with most requests silently unfinished
        res = simulate(dep(static_batching=True, chunked_prefill=chunked), wl)
        check_conservation(res, 200)
        assert res.summary["output_tokens_per_s"] < cont["output_tokens_per_s"]


def test_prefix_caching_hits_and_lowers_ttft():
    n = 200
    rng = np.random.default_rng(0)
    inp = np.full(n, 4096)
    hashes = [np.concatenate([np.arange(6), 1000 + i * 10 + np.arange(2)]) for i in range(n)]  # 3072 shared tokens
    wl = Workload(inp, rng.integers(20, 60, n), np.cumsum(rng.exponential(0.5, n)), hash_ids=hashes, hash_block_tokens=512)
    on = simulate(dep(prefix_caching=True), wl).summary
    off = simulate(dep(prefix_caching=False), wl).summary
    assert on["prefix_cache_hit_rate"] > 0.6
    assert off["prefix_cache_hit_rate"] == 0.0
    assert on["ttft_ms"]["mean"] < off["ttft_ms"]["mean"]


def test_replicas_and_routers_split_load():
    wl = make_workload(num_requests=400, isl=500, osl=50, rate=20, seed=0)
    one = simulate(dep(), wl).summary
    for router in ("round_robin", "least_outstanding"):
        res = simulate(dep(pool=Pool(replicas := "h100-sxm", workers=4), router=router), wl)
        check_conservation(res, 400)
        served = np.bincount(np.frombuffer(res.requests.engine, dtype=np.int64), minlength=4)
        assert served.min() > 50, served
        assert res.summary["ttft_ms"]["p90"] <= one["ttft_ms"]["p90"]
        assert res.summary["num_gpus"] == 4
    del replicas


def test_pipeline_parallel_runs_virtual_engines():
    wl = make_workload(num_requests=100, isl=500, osl=50, concurrency=16, seed=0)
    res = simulate(dep(model="llama-3.1-70b", pool=Pool("h100-sxm", tp=2, pp=2)), wl)
    check_conservation(res, 100)
    assert len(res.engines) == 2 and res.summary["num_gpus"] == 4


def test_pipeline_stages_take_one_micro_batch_at_a_time(monkeypatch):
    """The pp virtual engines of a replica share its stages (`engine.Pipeline`): on every stage
    the micro-batches' visits never overlap, each stage takes its layers' share of the
    iteration's layer work and the last one the LM head too, and a replica's GPU busy time is
    at most the run's duration."""
    from llmsim.serving import simulate as sim_mod
    from llmsim.serving.engine import Pipeline

    pipes: list[Pipeline] = []

    class Logged(Pipeline):
        def through(self, start, work_s, host_s=0.0, head_s=0.0):
            self.args.append((work_s, host_s, head_s))
            return super().through(start, work_s, host_s, head_s)

    def logged(layers: list[int]) -> Pipeline:
        assert layers == [20, 20, 20, 20]  # Llama-3.1-70B's 80 layers over 4 stages
        p = Logged(layers)
        p.log, p.args = [], []
        pipes.append(p)
        return p

    monkeypatch.setattr(sim_mod, "Pipeline", logged)
    wl = make_workload(num_requests=120, input_dist="uniform:16,6000", output_dist="uniform:1,200", rate=6.0, seed=3)
    res = simulate(dep(model="llama-3.1-70b", pool=Pool("h100-sxm", tp=1, pp=4, workers=2), weight_dtype="fp8"), wl)
    check_conservation(res, 120)
    assert len(pipes) == 2 and len(res.engines) == 8
    assert [e.pipe for e in res.engines] == [pipes[0]] * 4 + [pipes[1]] * 4
    for p in pipes:
        assert len(p.log) > 4 * 100 and len(p.log) == 4 * len(p.args)
        for s in range(4):
            visits = sorted((a, b) for st, a, b in p.log if st == s)
            assert all(b0 <= a1 + 1e-12 for (_a0, b0), (a1, _b1) in zip(visits, visits[1:])), "a stage held two micro-batches at once"
        # a micro-batch's visits: one per stage, in order; a quarter of the layer work on each,
        # and the LM head on the last
        for i, (work_s, host_s, head_s) in enumerate(p.args):
            v = p.log[4 * i:4 * i + 4]
            assert [x[0] for x in v] == [0, 1, 2, 3]
            assert all(v[j][1] >= v[j - 1][2] - 1e-12 for j in range(1, 4))
            assert 0.0 < head_s < work_s and 0.0 < host_s < work_s
            layer_s = (work_s - host_s - head_s) / 4
            for j, (_s, a, b) in enumerate(v):
                assert b - a == pytest.approx(layer_s + (head_s if j == 3 else 0.0), rel=1e-9)
    assert 0.0 < res.summary["engine_busy_fraction"] <= 1.0
    dur = res.summary["duration_s"]
    for w in range(2):
        stage_work = sum(e.busy_s for e in res.engines[4 * w:4 * w + 4]) / 4  # each micro-batch is about 1/4 on each stage
        assert stage_work <= dur * (1 + 1e-9)


def test_pipeline_stage_layers_and_the_slowest_stage_sets_the_pace():
    """vLLM's layer split (`get_pp_indices`): the remainder goes to the stages before the last,
    which runs the LM head. Equal micro-batches back to back leave the pipeline one per slowest
    stage's time, not one per 1/pp of the iteration."""
    from llmsim.serving.engine import Pipeline, pp_stage_layers

    assert pp_stage_layers(80, 4) == [20, 20, 20, 20]
    assert pp_stage_layers(61, 4) == [15, 15, 16, 15]
    assert pp_stage_layers(5, 3) == [2, 2, 1]
    assert pp_stage_layers(7, 4) == [2, 2, 2, 1] and pp_stage_layers(3, 3) == [1, 1, 1]
    with pytest.raises(ValueError):
        pp_stage_layers(2, 3)
    p = Pipeline([2, 2, 1])
    # 10 s of work: 1 s host, 1 s LM head, 8 s of layers -> stages of 3.2, 3.2 and 1.6 + 1 s
    ends = [p.through(0.0, 10.0, 1.0, 1.0) for _ in range(5)]
    assert ends[0] == pytest.approx(1.0 + 3.2 + 3.2 + 2.6)
    assert np.diff(ends) == pytest.approx([3.2] * 4)
    q = Pipeline([1, 1])  # a last stage slowed by the head sets the pace
    ends = [q.through(0.0, 6.0, 0.0, 2.0) for _ in range(4)]
    assert np.diff(ends) == pytest.approx([4.0] * 3)


def test_pipeline_prefill_holds_up_other_virtual_engines_decodes():
    """A long prompt prefilled by one virtual engine holds the stages: the decodes of another
    virtual engine of the replica wait behind it at every stage, so one of their token gaps
    lasts about the prefill's time (without shared stages each virtual engine would run on at
    its own decode step, as if it had the GPUs to itself)."""
    inp, out = np.array([32, 8000]), np.array([400, 2])
    wl = Workload(inp, out, np.array([0.0, 0.5]))
    res = simulate(dep(pool=Pool("h100-sxm", tp=1, pp=2)), wl)
    check_conservation(res, 2)
    engine = np.frombuffer(res.requests.engine, dtype=np.int64)
    assert engine[0] != engine[1], "the router spreads the two requests over the two virtual engines"
    _arrival, first, finish, _gen, _out = arrays(res)
    prefill_s = first[1] - 0.5  # the long prompt's TTFT: about one prefill iteration
    decode_s = (finish[0] - first[0]) / 399  # the short request's mean token gap
    itl_max_s = res.summary["itl_ms"]["max"] / 1e3
    assert prefill_s > 20 * decode_s
    # its longest gap: it waited for the prefill at the first stage (half the prefill's time)
    # and behind it again at the second (the other half); before stages were shared: 8.5 ms
    assert 0.9 * prefill_s <= itl_max_s <= prefill_s + 3 * decode_s


def test_disaggregated_prefill_decode():
    wl = make_workload(num_requests=200, isl=2000, osl=100, rate=4, seed=0)
    d = dep(prefill=Pool("h100-sxm", tp=1, workers=1), decode=Pool("h100-sxm", tp=1, workers=1))
    res = simulate(d, wl)
    check_conservation(res, 200)
    assert res.summary["num_gpus"] == 2
    roles = [e.cfg.role for e in res.engines]
    assert roles == ["prefill", "decode"]
    # decode engine never prefills: its iterations have no prefill chunks, so its ITL is smooth
    agg = simulate(dep(pool=Pool("h100-sxm", workers=2)), wl).summary
    assert res.summary["itl_ms"]["p99"] < agg["itl_ms"]["p99"]


def test_disaggregated_first_token_from_prefill_or_decode():
    """'decode': the client's first token is the decode engine's first iteration after the KV
    hand-off, so waiting for a decode slot is in TTFT; 'prefill': it is in TPOT instead."""
    wl = make_workload(num_requests=200, isl=1024, osl=128, concurrency=64, seed=0)

    def run(ft, backend="vllm"):
        d = dep(prefill=Pool("h100-sxm", 1), decode=Pool("h100-sxm", 1), max_num_seqs=16, backend=backend,
                first_token_from=ft)
        res = simulate(d, wl)
        check_conservation(res, 200)
        return res.summary

    pre, dec = run("prefill"), run("decode")
    # the summary says which rule and which host overheads made these numbers
    assert (pre["first_token_from"], dec["first_token_from"]) == ("prefill", "decode")
    assert dec["cpu_per_seq_s"] == 15e-6 and dec["cpu_overhead_per_iteration_s"] == 1e-3
    # 48 of 64 clients always wait for one of 16 decode slots: seconds, in TTFT or in TPOT
    assert dec["ttft_ms"]["mean"] > 4 * pre["ttft_ms"]["mean"]
    assert pre["tpot_ms"]["mean"] > 2 * dec["tpot_ms"]["mean"]
    # the same work either way: end-to-end latency within one decode iteration per request
    assert dec["e2e_ms"]["mean"] == pytest.approx(pre["e2e_ms"]["mean"], rel=0.03)
    # with 'decode', TPOT is the decode engine's own step time: 16 running sequences, nothing prefills there
    assert dec["tpot_ms"]["mean"] == pytest.approx(dec["itl_ms"]["mean"], rel=0.02)
    # defaults follow the backend's front end: TRT-LLM's disaggregated server yields the context token first
    assert run(None)["ttft_ms"]["mean"] == dec["ttft_ms"]["mean"]
    assert run(None, "trtllm")["ttft_ms"]["mean"] == run("prefill", "trtllm")["ttft_ms"]["mean"]
    with pytest.raises(LlmsimError, match="first_token_from"):
        run("client")


def test_disaggregated_handoff_time_is_added_once_per_request():
    """The front end's fixed hand-off time (Backend.disagg_handoff_s) delays each request's KV
    arrival at the decode engine by exactly that much: with one client nothing queues, so TTFT
    (first token from decode) and E2E each grow by it; with the prefill engine's token first,
    only E2E does."""
    from llmsim.serving.backends import get_backend

    wl = make_workload(num_requests=5, isl=512, osl=32, concurrency=1, seed=0)

    def run(h, ft="decode"):
        res = simulate(dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), backend="sglang", first_token_from=ft,
                           disagg_handoff_s=h), wl)
        check_conservation(res, 5)
        return res.summary

    base, slow = run(0.0), run(0.25)
    assert slow["disagg_handoff_s"] == 0.25 and base["disagg_handoff_s"] == 0.0
    assert slow["ttft_ms"]["mean"] - base["ttft_ms"]["mean"] == pytest.approx(250.0, abs=1e-6)
    assert slow["e2e_ms"]["mean"] - base["e2e_ms"]["mean"] == pytest.approx(250.0, abs=1e-6)
    assert slow["tpot_ms"]["mean"] == pytest.approx(base["tpot_ms"]["mean"], rel=1e-9)
    pre0, pre1 = run(0.0, "prefill"), run(0.25, "prefill")
    assert pre1["ttft_ms"]["mean"] == pytest.approx(pre0["ttft_ms"]["mean"], rel=1e-12)
    assert pre1["e2e_ms"]["mean"] - pre0["e2e_ms"]["mean"] == pytest.approx(250.0, abs=1e-6)
    # the default is the backend's fitted value, and the summary reports it
    assert run(None)["disagg_handoff_s"] == get_backend("sglang").disagg_handoff_s > 0
    for bad in (-0.1, float("nan"), float("inf"), "0.2", True):
        with pytest.raises(LlmsimError, match="disagg_handoff_s"):
            run(bad)


def test_per_sequence_host_time_scales_with_the_batch_per_dp_rank():
    from llmsim.cost.model import CostModel
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models import get_model
    from llmsim.serving.backends import BACKENDS
    from llmsim.serving.steptime import StepTimeModel

    spec, cm = get_model(MODEL), CostModel(get_gpu("h100-sxm"), None)
    for dp in (1, 2):
        par, prec = Parallel(tp=1, dp=dp), Precision()
        base, per = StepTimeModel(spec, par, prec, cm, 1e-3), StepTimeModel(spec, par, prec, cm, 1e-3, 20e-6)
        for n in (1, 64, 256):
            assert per.decode_step(n, n * 1000) - base.decode_step(n, n * 1000) == pytest.approx(n * 20e-6 / dp)
        assert per.iteration([(512, 0), (256, 0)], 8, 8000, 10) - base.iteration([(512, 0), (256, 0)], 8, 8000, 10) \
            == pytest.approx(10 * 20e-6 / dp)
    assert all(b.cpu_per_seq_s == 15e-6 for b in BACKENDS.values())
    # a deployment can override it; more sequences in the batch -> the difference in TPOT grows
    wl = make_workload(num_requests=96, isl=256, osl=64, concurrency=32, seed=0)
    on, off = (simulate(dep(cpu_per_seq_s=x), wl).summary["tpot_ms"]["mean"] for x in (None, 0.0))
    assert on - off == pytest.approx(32 * 15e-3, rel=0.25)  # ~32 running sequences x 15 us, in ms


def test_attention_dp_iteration_is_as_long_as_its_busiest_rank():
    from llmsim.cost.model import CostModel
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models import get_model
    from llmsim.serving.steptime import StepTimeModel

    spec, cm, prec = get_model("mixtral-8x7b"), CostModel(get_gpu("h100-sxm"), None), Precision.make("fp8")
    one = StepTimeModel(spec, Parallel(tp=1, dp=1, ep=1), prec, cm)
    four = StepTimeModel(spec, Parallel(tp=1, dp=4, ep=4), prec, cm)
    # 2048 prompt tokens as one chunk (one rank does all its attention-side work) vs four chunks
    # of 512 (one per rank): same tokens through the experts, 4x the work on the busiest rank
    whole = four.iteration([(2048, 0)], 0, 0, 1)
    spread = four.iteration([(512, 0)] * 4, 0, 0, 4)
    ratio_dp1 = one.iteration([(2048, 0)], 0, 0, 1) / one.iteration([(512, 0)] * 4, 0, 0, 4)
    assert whole / spread > 1.5 * ratio_dp1
    # five chunks on four ranks: the two smallest share a rank, the largest alone sets the time
    # (the experts still see all 1,728 tokens)
    five = four.iteration([(1024, 0), (256, 0), (256, 0), (128, 0), (64, 0)], 0, 0, 5)
    assert five == pytest.approx(four.iteration([(1024, 0), (256, 0), (256, 0), (192, 0)], 0, 0, 5), rel=1e-9)
    assert four.iteration([(1024, 0), (704, 0)], 0, 0, 5) == pytest.approx(five, rel=1e-9)  # nor does a busier second rank
    assert four.iteration([(1152, 0), (576, 0)], 0, 0, 5) > five  # a busier busiest rank does
    # decodes spread evenly: 5 sequences on 4 ranks -> 2 on the busiest
    assert four.decode_step(5, 5000) == pytest.approx(four.iteration([], 5, 5000, 5))
    assert four.decode_step(5, 5000) > four.decode_step(4, 4000)
    # decode-only stretches use the same step
    assert four.decode_run(8, 8000, 3) == pytest.approx(sum(four.decode_step(8, 8000 + 8 * i) for i in range(3)), rel=1e-3)


def test_prefill_all_to_all_bandwidth_slows_only_attention_dp_prefill_iterations():
    """`prefill_a2a_bw_bytes_s` (SGLang's DeepEP normal-mode all-to-alls): an attention-DP + EP
    iteration that runs prefill takes, per dispatch / combine operator, (g - 1) / g x S / bw where
    that exceeds the collective model's time; decode-only iterations and pools without attention DP
    are unchanged."""
    from llmsim.cost.model import CostModel
    from llmsim.cost.ops import Batch
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models import get_model
    from llmsim.serving.backends import get_backend
    from llmsim.serving.steptime import StepTimeModel

    spec, cm, prec = get_model("deepseek-v3"), CostModel(get_gpu("b200"), None), Precision.make("fp8")
    par, bw = Parallel(tp=1, dp=8, ep=8), 100e9
    base, capped = StepTimeModel(spec, par, prec, cm), StepTimeModel(spec, par, prec, cm, prefill_a2a_bw_bytes_s=bw)
    # by hand: a rank holding 4,096 prompt tokens dispatches 4096 x 8 experts x 7168 fp8 bytes and
    # combines the same in bf16, in each of the 58 MoE layers, over the 8-GPU EP group
    msg = 4096 * 8 * 7168
    ops = {o.name: o for o in base.builder.build(Batch([(4096 * 8, 0)], [])) if o.name in ("moe_dispatch", "moe_combine")}
    assert (ops["moe_dispatch"].bytes, ops["moe_combine"].bytes, ops["moe_dispatch"].count) == (msg, 2 * msg, 58)
    extra = sum(58 * (7 / 8 * o.bytes / bw - cm.cost(o).time_s) for o in ops.values())
    assert extra > 0.1  # at 100 GB/s the two all-to-alls take ~0.3 ms + 0.6 ms per layer
    assert capped.iteration([(4096, 0)], 0, 0, 1) - base.iteration([(4096, 0)], 0, 0, 1) == pytest.approx(extra, rel=1e-6)
    # prefill chunks on given ranks (SGLang's disaggregated prefill workers): the busiest rank's tokens
    assert capped.iteration_ranked([(4096, 0), (1024, 0)], [0, 3], 2) - base.iteration_ranked([(4096, 0), (1024, 0)], [0, 3], 2) \
        == pytest.approx(extra, rel=1e-6)
    assert capped.decode_step(64, 64 * 2000) == base.decode_step(64, 64 * 2000)  # decode: the low-latency kernels
    # a bandwidth above the collective model's costs nothing; no attention DP: no all-to-all
    assert StepTimeModel(spec, par, prec, cm, prefill_a2a_bw_bytes_s=10e12).iteration([(4096, 0)], 0, 0, 1) \
        == base.iteration([(4096, 0)], 0, 0, 1)
    tp8 = Parallel(tp=8, ep=8)
    assert StepTimeModel(spec, tp8, prec, cm, prefill_a2a_bw_bytes_s=bw).iteration([(4096, 0)], 0, 0, 1) \
        == StepTimeModel(spec, tp8, prec, cm).iteration([(4096, 0)], 0, 0, 1)
    # the backends pass theirs: SGLang's is set, vLLM and TRT-LLM keep the collective model
    sg = get_backend("sglang").step_time(spec, get_gpu("b200"), par, prec)
    assert sg.prefill_a2a_bw_bytes_s == get_backend("sglang").prefill_a2a_bw_bytes_s > 0
    assert get_backend("trtllm").step_time(spec, get_gpu("b200"), par, prec).prefill_a2a_bw_bytes_s == 0.0


@pytest.mark.parametrize("mixed", [False, True])
def test_attention_dp_chunks_are_capped_at_one_ranks_budget(monkeypatch, mixed):
    # each attention-DP rank schedules its own share of the token budget (SGLang divides
    # --chunked-prefill-size by the DP size; vLLM / TRT-LLM budgets are per rank), and a
    # request's chunk runs on one rank: with a 16,384-token budget over 4 ranks, 8,192-token
    # prompts go in 4,096-token chunks, four prompts side by side -- not two whole prompts on
    # two ranks while the other two idle
    from llmsim.serving import steptime

    seen = []
    orig = steptime.StepTimeModel._iteration_dp

    def spy(self, chunks, n_decode, ctx, rows):
        seen.append(sorted(q for q, _ in chunks))
        return orig(self, chunks, n_decode, ctx, rows)

    monkeypatch.setattr(steptime.StepTimeModel, "_iteration_dp", spy)
    burst = make_workload(num_requests=8, isl=8192, osl=4, concurrency=8, seed=0)

    def run(dp):
        seen.clear()
        d = dep(model="mixtral-8x7b", pool=Pool("h100-sxm", tp=1, dp=dp, ep=dp), weight_dtype="fp8",
                chunked_prefill=True, mixed_batches=mixed, max_num_batched_tokens=16384)
        res = simulate(d, burst)
        check_conservation(res, 8)
        assert res.engines[0].cfg.max_chunk_tokens == 16384 // dp

    run(4)
    prefill = [c for c in seen if c]
    assert prefill and all(max(c) <= 4096 for c in prefill)
    assert prefill[0] == [4096] * 4, "four prompts start together, one chunk per rank"
    assert sum(map(sum, prefill)) == 8 * 8192
    # dp = 2: an 8192-token prompt fits one rank's budget whole (no cap below the prompt)
    run(2)
    assert [c for c in seen if c][0] == [8192, 8192]


def test_sglang_prefill_dp_ranks_keep_random_queues(monkeypatch):
    # SGLang's PD prefill server sends each request to DP rank bootstrap_room % dp, the room
    # drawn at random by the router: one queue per rank, a rank can queue while another idles.
    # Against the balanced pool (any rank takes any request) the same load waits longer.
    from llmsim.serving import backends, steptime

    ranks_seen = []
    orig = steptime.StepTimeModel.iteration_ranked

    def spy(self, chunks, ranks, rows):
        ranks_seen.append(list(zip(ranks, (q for q, _ in chunks))))
        return orig(self, chunks, ranks, rows)

    monkeypatch.setattr(steptime.StepTimeModel, "iteration_ranked", spy)
    wl = make_workload(num_requests=400, isl=2048, osl=16, rate=60.0, seed=3)  # prefill ranks ~70% busy

    def run(routing=None, seed=0):
        if routing:
            monkeypatch.setitem(backends.BACKENDS, "sglang", backends.BACKENDS["sglang"].with_(prefill_dp_routing=routing))
        # moe_efficiency pinned: the load (~70% busy ranks) assumes dense-rate expert GEMMs
        d = dep(model="mixtral-8x7b", backend="sglang", weight_dtype="fp8", max_num_batched_tokens=8192, seed=seed,
                prefill=Pool("h100-sxm", tp=1, dp=4, ep=4), decode=Pool("h100-sxm", tp=2, ep=2, workers=2), moe_efficiency=1.0)
        res = simulate(d, wl)
        check_conservation(res, 400)
        return res

    res = run()
    pre = res.engines[0]
    assert pre.cfg.random_rank_queues == 4 and pre.cfg.max_chunk_tokens == 2048
    assert not res.engines[1].cfg.random_rank_queues, "decode pools balance (SGLang's round robin)"
    assert ranks_seen, "the prefill engine scheduled per rank"
    for it in ranks_seen:  # each rank within its own budget, all four ranks used
        per = {}
        for k, q in it:
            per[k] = per.get(k, 0) + q
        assert max(per.values()) <= 2048
    assert {k for it in ranks_seen for k, _ in it} == {0, 1, 2, 3}
    assert not pre.waiting.rank, "finished requests leave the rank map"
    assert res.summary["prefill_dp_rank_queues"] == "random" and res.summary["max_chunk_tokens"] == 2048
    # whole prompts (no chunking): no cap and one shared queue, and the summary says so
    whole = simulate(dep(model="mixtral-8x7b", backend="sglang", weight_dtype="fp8", chunked_prefill=False,
                         prefill=Pool("h100-sxm", tp=1, dp=4, ep=4), decode=Pool("h100-sxm", tp=2, ep=2)),
                     make_workload(num_requests=8, isl=512, osl=4, concurrency=4, seed=0)).summary
    assert (whole["max_chunk_tokens"], whole["prefill_dp_rank_queues"]) == (0, "shared")
    # deterministic for a seed, another seed draws other ranks
    again, other = run().summary, run(seed=1).summary
    assert again["ttft_ms"] == res.summary["ttft_ms"]
    assert other["ttft_ms"] != res.summary["ttft_ms"]
    for bad in ("1", 1.5, True):
        with pytest.raises(LlmsimError, match="seed must be an integer"):
            simulate(dep(seed=bad), make_workload(num_requests=2, isl=64, osl=4, concurrency=2, seed=0))
    balanced = run("balanced").summary  # 379 vs 401 ms mean, 538 vs 687 ms p99 when written
    assert balanced["prefill_dp_rank_queues"] == "shared"
    assert balanced["ttft_ms"]["mean"] < 0.97 * res.summary["ttft_ms"]["mean"]
    assert balanced["ttft_ms"]["p99"] < 0.9 * res.summary["ttft_ms"]["p99"]


def test_moe_with_attention_dp_and_ep():
    wl = make_workload(num_requests=60, isl=1000, osl=50, concurrency=16, seed=0)
    res = simulate(dep(model="mixtral-8x7b", pool=Pool("h100-sxm", tp=1, dp=2, ep=2), weight_dtype="fp8"), wl)
    check_conservation(res, 60)


def test_goodput_and_slo():
    wl = make_workload(num_requests=200, isl=1000, osl=100, rate=10, seed=0)
    s = simulate(dep(), wl, slo=SLO(ttft_ms=1e9, tpot_ms=1e9)).summary
    assert s["slo_attainment"] == 1.0
    assert s["goodput_requests_per_s"] == pytest.approx(s["requests_per_s"])
    tight = simulate(dep(), wl, slo=SLO(ttft_ms=1e-3)).summary
    assert tight["slo_attainment"] == 0.0


# ----------------------------------------------------------------------------- bad input


def test_request_longer_than_context_is_rejected():
    wl = make_workload(num_requests=4, isl=200_000, osl=10, concurrency=1)
    with pytest.raises(LlmsimError, match="context"):
        simulate(dep(), wl)


def test_kv_too_small_for_one_request():
    wl = make_workload(num_requests=2, isl=100_000, osl=100, concurrency=1)
    with pytest.raises(LlmsimError, match="KV cache"):
        simulate(dep(memory_fraction=0.22), wl)


def test_model_that_does_not_fit():
    wl = make_workload(num_requests=2, isl=100, osl=10, concurrency=1)
    with pytest.raises(LlmsimError, match="no room for a KV cache|do not fit") as e:
        simulate(dep(model="llama-3.1-70b"), wl)
    assert "fp8 weights" in e.value.hint
    # the hint offers only weight formats the GPU runs: an A100 has no fp8 tensor cores
    with pytest.raises(LlmsimError, match="no room for a KV cache") as e:
        simulate(Deployment(model="llama-3.1-70b", pool=Pool("a100", tp=1)), wl)
    assert "fp8" not in e.value.hint and "int8 / int4 weights" in e.value.hint and "fp8" not in e.value.message


@pytest.mark.parametrize("kw", [{"rate": 0}, {"rate": -1.0}])
def test_bad_rate(kw):
    with pytest.raises(LlmsimError):
        make_workload(num_requests=10, isl=10, osl=10, **kw)


def test_empty_trace(tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("arrival_s,input_tokens,output_tokens\n")
    with pytest.raises(LlmsimError):
        make_workload(trace=str(f))


def test_unknown_router_and_backend():
    wl = make_workload(num_requests=4, isl=10, osl=10, concurrency=1)
    with pytest.raises(LlmsimError, match="router"):
        simulate(dep(router="random"), wl)
    with pytest.raises(LlmsimError, match="backend"):
        simulate(dep(backend="tgi"), wl)


def test_engine_state_is_consistent_after_run():
    wl = make_workload(num_requests=150, input_dist="uniform:10,2000", output_dist="uniform:1,300", rate=10, seed=5)
    res = simulate(dep(memory_fraction=0.25), wl)
    for e in res.engines:
        assert isinstance(e, Engine)
        assert e.n_dec == 0 and e.dec_base == 0 and e.pref_tokens == 0 and not e.running
    assert math.isfinite(res.summary["e2e_ms"]["p99"])


def test_step_time_grid_matches_exact_cost_model():
    import random

    from llmsim.cost.ops import Batch
    from llmsim.layout import Precision
    from llmsim.models import get_model
    from llmsim.serving.backends import get_backend
    from llmsim.serving.simulate import _build_pool

    spec = get_model("llama-3-8b")
    st = _build_pool(spec, Pool("a100-sxm-80gb"), dep(model=spec), get_backend("vllm"), Precision(), "both").st
    rnd = random.Random(0)
    errs = []
    for _ in range(60):
        q, p = rnd.randint(1, 512), rnd.choice([0, rnd.randint(0, 8000)])
        errs.append(abs(st.prefill_attention(q, p) / st._attn_sum(Batch([(q, p)], [])) - 1))
        n, c = rnd.randint(1, 256), rnd.randint(1, 8000)
        errs.append(abs(st.decode_attention(n, n * c) / st._attn_sum(Batch([], [c] * n)) - 1))
        T = rnd.randint(1, 8192)
        exact = st._sum(Batch([(T, 0)], []), lambda name: name not in ("attn_prefill", "attn_decode", "final_norm", "lm_head", "logits_allgather"))
        errs.append(abs(st.body(T) / exact - 1))
    errs.sort()
    assert errs[len(errs) // 2] < 0.003 and errs[int(0.9 * len(errs))] < 0.02


def test_disaggregated_decode_admits_handoffs_without_waiting_for_completions():
    # a KV hand-off arriving during a decode run joins at the next iteration boundary, so TPOT at
    # low concurrency stays close to one decode step (regression: it used to wait for a completion)
    from llmsim import estimate

    wl = make_workload(num_requests=60, isl=1000, osl=200, concurrency=3, warmup=3, seed=0)
    res = simulate(dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm")), wl)
    step_ms = estimate(MODEL, "h100-sxm", batch=3, isl=1000, osl=200, kernels="none").tpot_ms + 1.0  # + vLLM CPU overhead
    assert res.summary["tpot_ms"]["mean"] == pytest.approx(step_ms, rel=0.25)


def test_closed_loop_throughput_follows_littles_law():
    # in steady state, tokens/s over the window = clients x mean output tokens / mean E2E; no
    # credit for tokens generated before the warm-up cut-off (a long run keeps the final drain,
    # when fewer than 16 clients remain, a small share of the window)
    wl = make_workload(num_requests=600, input_dist="uniform:200,2000", output_dist="uniform:50,400", concurrency=16, warmup=16, seed=1)
    res = simulate(dep(), wl)
    arrival, _, finish, _, out = arrays(res)
    order = np.argsort(finish)[16:-16]
    little = 16 * np.mean(out[order]) / np.mean(finish[order] - arrival[order])
    assert res.summary["output_tokens_per_s"] == pytest.approx(little, rel=0.06)


def _no_macro_steps(monkeypatch):
    """Make every engine step a single event-loop step (the horizon never lets one run on)."""
    step = Engine.step
    monkeypatch.setattr(Engine, "step", lambda self, now, next_arrival, horizon=-math.inf: step(self, now, next_arrival))


@pytest.mark.parametrize("case", ["open_chunked", "open_whole", "open_unmixed", "closed", "preempt", "disagg", "replicas", "batch_wait",
                                  "recv_interval", "recv_interval_mixed", "adp_balance", "overlap", "overlap_closed", "overlap_disagg"])
def test_macro_steps_do_not_change_results(case, monkeypatch):
    # a macro step runs a prompt's chunks, its last chunk and the decode runs after it in one go
    # while nothing else can happen first; it must reproduce the event loop exactly
    open_wl = make_workload(num_requests=300, input_dist="lognormal:1500,1200", output_dist="uniform:1,300", rate=4.0, seed=3)
    d, wl = {
        "open_chunked": (dep(max_num_batched_tokens=512), open_wl),
        "open_whole": (dep(chunked_prefill=False), open_wl),
        "open_unmixed": (dep(backend="sglang", max_num_batched_tokens=1024), open_wl),
        "closed": (dep(max_num_batched_tokens=512), make_workload(num_requests=200, input_dist="uniform:100,3000", output_dist="uniform:1,200", concurrency=6, seed=1)),
        "preempt": (dep(memory_fraction=0.225, max_num_batched_tokens=512), make_workload(num_requests=120, isl=900, osl=600, concurrency=40, seed=2)),
        "disagg": (dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), max_num_batched_tokens=512), open_wl),
        "replicas": (dep(pool=Pool("h100-sxm", workers=3), max_num_batched_tokens=512), open_wl),
        "batch_wait": (dep(max_num_batched_tokens=4096, batch_wait_iters=10, batch_wait_tokens_ratio=0.8), open_wl),
        "recv_interval": (dep(backend="sglang", max_num_batched_tokens=1024, recv_interval_iters=10), open_wl),
        "recv_interval_mixed": (dep(max_num_batched_tokens=512, recv_interval_iters=7), open_wl),
        "adp_balance": (dep(**_ADP_MOE, adp_balance_timeout_iters=20, adp_balance_batching_iters=3), open_wl),
        "overlap": (dep(max_num_batched_tokens=512, overlap_scheduling=True), open_wl),
        "overlap_closed": (dep(backend="sglang", recv_interval_iters=5), make_workload(num_requests=150, input_dist="uniform:100,3000", output_dist="uniform:1,200", concurrency=6, seed=1, client_jitter_s=0.003)),
        "overlap_disagg": (dep(backend="sglang", prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), max_num_batched_tokens=512), open_wl),
    }[case]
    fast = simulate(d, wl)
    _no_macro_steps(monkeypatch)
    slow = simulate(d, wl)
    fast.summary.pop("simulation_wall_s"), slow.summary.pop("simulation_wall_s")
    assert json.dumps(fast.summary, sort_keys=True) == json.dumps(slow.summary, sort_keys=True)
    for name in ("arrival", "t_sched", "t_first", "t_finish", "gen", "preemptions", "engine"):
        assert getattr(fast.requests, name) == getattr(slow.requests, name), name


def test_decode_attention_table_matches_interpolation(monkeypatch):
    # decode attention is kept in per-batch-size rows indexed by mean context; rows are dropped
    # when they outgrow their budget, and every value equals the grid interpolation it caches
    import random

    from llmsim.layout import Precision
    from llmsim.models import get_model
    from llmsim.serving import steptime
    from llmsim.serving.backends import get_backend
    from llmsim.serving.simulate import _build_pool

    monkeypatch.setattr(steptime, "_DEC_SLOTS", 5000)
    spec = get_model("llama-3-8b")
    st = _build_pool(spec, Pool("a100-sxm-80gb"), dep(model=spec), get_backend("vllm"), Precision(), "both").st
    rnd = random.Random(1)
    for _ in range(400):
        n, c = rnd.randint(1, 40), rnd.randint(1, 4000)
        ctx_sum = n * c + rnd.randint(-(n // 2), n // 2)
        want = st._dec_interp(n, max(1, round(ctx_sum / n)))
        assert st.decode_attention(n, ctx_sum) == want
        assert st.decode_attention(n, ctx_sum) == want  # now from the table
        assert st._dec_slots <= 5000
    assert st.decode_attention(3, 10**7) == st._dec_interp(3, round(10**7 / 3))  # a row too long to keep


def test_handoff_to_a_decode_worker_mid_run_joins_at_its_next_boundary():
    # regression: a decode worker in a long closed-form decode run missed a KV hand-off routed to
    # it by another engine's step (the run was bounded by the next *arrival* only) and admitted it
    # only at its next completion -- seconds later. Every request's TTFT must stay near one
    # prefill plus a decode step.
    wl = make_workload(num_requests=30, isl=1000, osl=400, concurrency=3, seed=0)
    d = dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm", workers=2), first_token_from="decode")
    ttft = simulate(d, wl).per_request()["ttft_ms"]
    assert ttft.max() < 4 * np.median(ttft)  # the bug: ~80x


def test_serial_front_end_delays_prompts_in_arrival_order():
    """The front end (API server: tokenisation, request set-up) handles one prompt at a time:
    a lone request reaches the engine ISL x frontend_s_per_token after it is sent; a burst of
    N queues N deep, so the k-th prompt of a burst waits k of those times."""
    one = make_workload(num_requests=1, isl=2048, osl=8, concurrency=1, seed=0)
    base = simulate(dep(frontend_s_per_token=0.0), one).summary["ttft_ms"]["mean"]
    slow = simulate(dep(frontend_s_per_token=2e-6), one).summary["ttft_ms"]["mean"]
    assert slow - base == pytest.approx(2048 * 2e-6 * 1e3, rel=1e-6)
    burst = make_workload(num_requests=4, isl=1000, osl=4, concurrency=4, seed=0)  # all four sent at t = 0
    res = simulate(dep(frontend_s_per_token=1e-3), burst)  # 1 s per prompt: the engine is never the bottleneck
    check_conservation(res, 4)
    r = res.requests
    first = np.sort(np.frombuffer(r.t_first))
    assert np.diff(first) == pytest.approx([1.0, 1.0, 1.0], rel=1e-3)  # one prompt a second leaves the front end
    assert first[0] > 1.0
    # one front end per replica: two replicas take the burst two prompts deep each
    two = simulate(dep(frontend_s_per_token=1e-3, pool=Pool("h100-sxm", workers=2)), burst)
    check_conservation(two, 4)
    assert np.sort(np.frombuffer(two.requests.t_first)) == pytest.approx([first[0], first[0], first[1], first[1]], rel=1e-3)
    # streaming mode follows the same trajectory
    st = simulate(dep(frontend_s_per_token=1e-3), burst, streaming=True).summary
    assert st["ttft_ms"]["mean"] == pytest.approx(res.summary["ttft_ms"]["mean"], rel=0.01)
    with pytest.raises(LlmsimError, match="frontend_s_per_token"):
        simulate(dep(frontend_s_per_token=-1.0), one)


def test_admission_that_reserves_output_kv_never_preempts():
    """TRT-LLM's GUARANTEED_NO_EVICT (kv_reserve_output = 1) admits a request only when its prompt
    and whole output fit beside everyone else's: under the KV pressure that makes vLLM-style
    optimistic admission preempt, it never does, and it runs fewer requests at a time (lower
    TPOT, longer queueing) -- what the benchmarks of a KV-bound engine show."""
    from llmsim.serving.backends import BACKENDS

    wl = make_workload(num_requests=120, isl=900, osl=600, concurrency=40, seed=2)
    runs = {f: simulate(dep(memory_fraction=0.225, kv_reserve_output=f), wl) for f in (0.0, 0.7, 1.0)}
    for f, res in runs.items():
        check_conservation(res, 120)
        assert max(u for e in res.engines for _, u in e.kv_samples) <= 1.0 + 1e-9, f
    assert runs[0.0].summary["preemptions"] > 0 and runs[1.0].summary["preemptions"] == 0
    s0, s1 = runs[0.0].summary, runs[1.0].summary
    assert s1["tpot_ms"]["mean"] < s0["tpot_ms"]["mean"] and s1["queue_ms"]["mean"] > s0["queue_ms"]["mean"]
    assert runs[0.7].summary["preemptions"] <= s0["preemptions"]
    assert (BACKENDS["vllm"].kv_reserve_output, BACKENDS["trtllm"].kv_reserve_output, BACKENDS["sglang"].kv_reserve_output) == (0.0, 1.0, 0.7)
    with pytest.raises(LlmsimError, match="kv_reserve_output"):
        simulate(dep(kv_reserve_output=1.5), wl)
    # requests that each reserve over half the cache (9,680 tokens here) run one at a time
    big = make_workload(num_requests=6, isl=2000, osl=3500, concurrency=3, seed=0)
    res = simulate(dep(memory_fraction=0.225, kv_reserve_output=1.0), big)
    check_conservation(res, 6)
    assert res.summary["kv_capacity_tokens_per_engine"] < 2 * 5500 and res.summary["preemptions"] == 0
    arrival, first, finish, _, _ = arrays(res)
    order = np.argsort(first)
    assert np.all(first[order][1:] >= finish[order][:-1] - 1e-9)  # never two in flight


@pytest.mark.parametrize("frac", [0.7, 1.0])
def test_reservation_bound_shortcut_decides_as_the_exact_sum(frac, monkeypatch):
    """Admission first checks the cheap bound (every running request's whole output kept back)
    and sums the exact remaining outputs only when the bound refuses: same trajectory as
    always summing exactly, on a KV-bound run with chunked prefill and on disaggregated decode."""
    from llmsim.serving.engine import Engine

    cases = [
        (dep(memory_fraction=0.225, max_num_batched_tokens=512, kv_reserve_output=frac),
         make_workload(num_requests=120, input_dist="uniform:200,1500", output_dist="uniform:50,900", concurrency=40, seed=2)),
        (dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), memory_fraction=0.225, kv_reserve_output=frac),
         make_workload(num_requests=80, isl=900, osl=600, concurrency=30, seed=4)),
    ]
    fast = [simulate(d, wl) for d, wl in cases]
    exact = Engine._reserved_blocks
    monkeypatch.setattr(Engine, "_reserved_blocks", lambda self, exact_=False, upto=None: exact(self, True, upto))
    slow = [simulate(d, wl) for d, wl in cases]
    for f, s in zip(fast, slow):
        for name in ("t_sched", "t_first", "t_finish", "preemptions"):
            assert getattr(f.requests, name) == getattr(s.requests, name), name


@pytest.mark.parametrize("frac", [0.0, 0.7, 1.0])
def test_disaggregated_decode_recomputes_what_it_preempts(frac):
    # regression: a decode engine that preempted (recompute) under KV pressure queued the request
    # for a prefill it never scheduled, and the run ended with requests silently lost
    wl = make_workload(num_requests=80, isl=900, osl=600, concurrency=30, seed=4)
    res = simulate(dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), memory_fraction=0.225, kv_reserve_output=frac), wl)
    check_conservation(res, 80)
    if frac == 0.0:
        assert res.summary["preemptions"] > 0  # the case that used to lose requests


def _batch_wait_run(n=60, c=6, **kw):
    wl = make_workload(num_requests=n, input_dist="uniform:400,600", output_dist="uniform:40,80", concurrency=c,
                       seed=5, client_jitter_s=0.005)
    return simulate(dep(max_num_batched_tokens=8192, **kw), wl)


def test_batch_waiting_holds_new_prompts_while_decodes_run():
    # TRT-LLM's batch waiting: a prompt that arrives while others decode waits up to
    # batch_wait_iters decode iterations unless the scheduled tokens reach the ratio x budget
    base = _batch_wait_run()
    held = _batch_wait_run(batch_wait_iters=12, batch_wait_tokens_ratio=0.9)
    check_conservation(held, 60)
    b, h = base.summary, held.summary
    extra_ms = h["ttft_ms"]["mean"] - b["ttft_ms"]["mean"]
    # most prompts arrive while others decode: close to 12 decode steps more, never more than 12 (+ one iteration)
    assert 0.6 * 12 * b["tpot_ms"]["mean"] < extra_ms < 13 * h["tpot_ms"]["mean"]
    # a ratio low enough that one prompt (>= 400 tokens) + decodes reaches it: never held, same run
    low = _batch_wait_run(batch_wait_iters=12, batch_wait_tokens_ratio=400 / 8192)
    assert low.summary["ttft_ms"] == b["ttft_ms"] and low.requests.t_first == base.requests.t_first
    # one client: nothing decodes when its next prompt arrives, so nothing is ever held
    one = [_batch_wait_run(n=8, c=1, batch_wait_iters=w, batch_wait_tokens_ratio=0.9) for w in (0, 12)]
    assert one[0].requests.t_first == one[1].requests.t_first
    # like TRT-LLM, not applied with attention DP
    moe = {"model": "mixtral-8x7b", "pool": Pool("h100-sxm", tp=1, dp=2, ep=2), "weight_dtype": "fp8"}
    dp = [_batch_wait_run(batch_wait_iters=w, batch_wait_tokens_ratio=0.9, **moe) for w in (0, 12)]
    assert dp[0].requests.t_first == dp[1].requests.t_first


@pytest.mark.parametrize("kw", [{"batch_wait_iters": -1}, {"batch_wait_iters": 2.5}, {"batch_wait_tokens_ratio": 1.5},
                                {"batch_wait_tokens_ratio": -0.1}])
def test_bad_batch_waiting_settings(kw):
    with pytest.raises(LlmsimError, match="batch_wait"):
        _batch_wait_run(n=4, c=2, **kw)


_ADP_MOE = {"model": "mixtral-8x7b", "pool": Pool("h100-sxm", tp=1, dp=4, ep=4), "weight_dtype": "fp8"}


def _adp_run(n=120, c=24, **kw):
    wl = make_workload(num_requests=n, input_dist="uniform:800,1000", output_dist="uniform:150,250", concurrency=c,
                       seed=6, client_jitter_s=0.005)
    return simulate(dep(**{**_ADP_MOE, **kw}), wl)


def test_adp_balance_holds_prompts_until_every_rank_has_one():
    # TRT-LLM's attention_dp_config enable_balance: with dp ranks, prompts wait (decodes run)
    # until dp of them are scheduled, or the iteration counter reaches timeout_iters
    base = _adp_run()
    held = _adp_run(adp_balance_timeout_iters=40)
    check_conservation(held, 120)
    b, h = base.summary, held.summary
    assert (h["adp_balance_timeout_iters"], h["adp_balance_batching_iters"]) == (40, 0)
    extra_ms = h["ttft_ms"]["mean"] - b["ttft_ms"]["mean"]
    # prompts that arrive one by one wait several decode steps on average, never more than the timeout
    assert 3 * b["tpot_ms"]["mean"] < extra_ms < 40 * h["tpot_ms"]["max"]
    # a longer timeout can only hold longer
    assert _adp_run(adp_balance_timeout_iters=80).summary["ttft_ms"]["mean"] > h["ttft_ms"]["mean"]
    # batching_wait_iters: once every rank has a prompt, k more decode-only iterations
    assert _adp_run(adp_balance_timeout_iters=40, adp_balance_batching_iters=5).summary["ttft_ms"]["mean"] > h["ttft_ms"]["mean"]
    # fewer clients than ranks: some rank always has no decodes, so nothing is ever held
    few = [_adp_run(n=12, c=3, adp_balance_timeout_iters=t) for t in (0, 40)]
    assert few[0].requests.t_first == few[1].requests.t_first
    # no attention DP (dp = 1): not applied
    tp = {"pool": Pool("h100-sxm", tp=4, ep=4)}
    one = [_adp_run(n=40, adp_balance_timeout_iters=t, **tp) for t in (0, 40)]
    assert one[0].requests.t_first == one[1].requests.t_first and one[1].summary["adp_balance_timeout_iters"] == 0


@pytest.mark.parametrize("kw", [{"adp_balance_timeout_iters": -1}, {"adp_balance_timeout_iters": 2.5},
                                {"adp_balance_batching_iters": -3}, {"adp_balance_timeout_iters": True}])
def test_bad_adp_balance_settings(kw):
    with pytest.raises(LlmsimError, match="adp_balance"):
        _adp_run(n=4, c=2, **kw)


def test_receive_interval_delays_new_requests_while_decodes_run():
    # SGLang's --scheduler-recv-interval N: while only decodes run, the scheduler polls for new
    # requests every N decode iterations (and right after a prefill, or at once when idle), so a
    # request arriving mid-stream waits 0..N-1 decode steps before its prefill can start
    def run(n=80, c=4, **kw):
        wl = make_workload(num_requests=n, input_dist="uniform:800,1024", output_dist="uniform:100,200", concurrency=c,
                           seed=7, client_jitter_s=0.005)
        return simulate(dep(backend="sglang", **kw), wl)

    base = run()
    assert run(recv_interval_iters=1).requests.t_first == base.requests.t_first  # 1: every iteration (the default)
    tpot = base.summary["tpot_ms"]["mean"]
    for n_iters in (10, 30):
        res = run(recv_interval_iters=n_iters)
        check_conservation(res, 80)
        assert res.summary["recv_interval_iters"] == n_iters
        extra_ms = res.summary["ttft_ms"]["mean"] - base.summary["ttft_ms"]["mean"]
        # a uniform phase gives (N - 1) / 2 steps on average; polls right after other prompts'
        # prefills shorten some waits, and no wait is longer than N - 1 steps (+ one iteration)
        assert 0.25 * (n_iters - 1) * tpot < extra_ms < n_iters * res.summary["tpot_ms"]["mean"]
        assert np.max(res.per_request()["queue_ms"]) < n_iters * 1.2 * tpot + np.max(base.per_request()["queue_ms"])
    # one client: the engine is idle whenever its next prompt arrives, so it is taken in at once
    one = [run(n=8, c=1, recv_interval_iters=k) for k in (1, 30)]
    assert one[0].requests.t_first == one[1].requests.t_first
    # a decode worker takes hand-offs as they come (the interval applies to the prefill worker)
    d = run(n=20, prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), recv_interval_iters=30)
    check_conservation(d, 20)


def test_overlap_scheduling_delays_new_requests_by_one_iteration():
    # an overlapping loop schedules iteration k+1 while k runs: a request arriving during k runs in
    # k+2 instead of k+1, i.e. one iteration later; an idle engine takes it at once
    from llmsim.serving.backends import BACKENDS, ENGINE_ROLES, Backend

    def run(n=60, c=4, **kw):
        wl = make_workload(num_requests=n, isl=512, osl=64, concurrency=c, seed=5, client_jitter_s=0.005)
        return simulate(dep(**kw), wl)

    off, on = run(overlap_scheduling=False), run(overlap_scheduling=True)
    check_conservation(on, 60)
    assert off.summary["overlap_scheduling"] == [False] and on.summary["overlap_scheduling"] == [True]
    assert run().summary["overlap_scheduling"] == [False]  # vLLM's default here
    step_ms = off.summary["tpot_ms"]["mean"]
    extra_ms = on.summary["ttft_ms"]["mean"] - off.summary["ttft_ms"]["mean"]
    # one more iteration: a decode step, or longer when another prompt's prefill shares it
    assert 0.8 * step_ms < extra_ms < 3 * on.summary["tpot_ms"]["mean"], (extra_ms, step_ms)
    # one client: the engine has nothing to run when the next prompt arrives -- no delay
    one = [run(n=6, c=1, overlap_scheduling=f) for f in (False, True)]
    assert one[0].requests.t_first == one[1].requests.t_first
    # prompts reaching an engine with nothing running at one instant are all taken at once: clients
    # in exact lock-step (no jitter) finish together and send the next round at the same instant
    burst = [simulate(dep(overlap_scheduling=f), make_workload(num_requests=24, isl=512, osl=16, concurrency=8, seed=5))
             for f in (False, True)]
    assert burst[0].requests.t_first == burst[1].requests.t_first
    # disaggregated: a decode worker with an overlapping loop takes a KV hand-off one iteration
    # later, and SGLang's client sees its first token from the decode worker
    kw = dict(backend="sglang", prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"))
    d_off, d_on = run(n=30, overlap_scheduling=False, **kw), run(n=30, **kw)
    check_conservation(d_on, 30)
    assert d_on.summary["overlap_scheduling"] == [True, True]  # SGLang: both pools
    assert d_on.summary["ttft_ms"]["mean"] > d_off.summary["ttft_ms"]["mean"]
    # pipeline parallelism: the engines' PP loops do not overlap
    assert run(n=8, backend="sglang", pool=Pool("h100-sxm", pp=2)).summary["overlap_scheduling"] == [False]
    # TRT-LLM's disaggregated context servers run without the overlap, its generation servers with it
    t = run(n=10, **dict(kw, backend="trtllm"))
    check_conservation(t, 10)
    assert t.summary["overlap_scheduling"] == [False, True]
    # the engines' own settings, a bad role, and a setting that is not a bool
    assert BACKENDS["sglang"].overlap_scheduling == ENGINE_ROLES
    assert BACKENDS["trtllm"].overlap_scheduling == ("both", "decode") and BACKENDS["vllm"].overlap_scheduling == ()
    for name in ("overlap_scheduling", "allreduce_norm_fusion"):
        with pytest.raises(LlmsimError, match=f"{name} must be True, False or None"):
            run(n=4, **{name: "no"})
    with pytest.raises(LlmsimError, match="overlap_scheduling"):
        Backend("x", "vllm", 0.0, 1, 1, True, 0.9, overlap_scheduling=("agg",))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_receive_interval(bad):
    wl = make_workload(num_requests=4, isl=100, osl=10, concurrency=2)
    with pytest.raises(LlmsimError, match="recv_interval_iters"):
        simulate(dep(backend="sglang", recv_interval_iters=bad), wl)


def test_prefill_fixed_time_applies_to_prefill_iterations_of_roofline_gpus_only():
    # Backend.prefill_layer_s x layers is added to every iteration that carries prefill chunks;
    # decode-only iterations add nothing, and neither does a GPU timed by measured kernel tables
    from llmsim.cost.model import CostModel
    from llmsim.estimate import resolve_kernels
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models.catalog import get_model
    from llmsim.serving.steptime import StepTimeModel

    spec, gpu = get_model(MODEL), get_gpu("h100-sxm")
    par, prec, cm = Parallel(), Precision.make("bf16", None, None), CostModel(gpu)
    base = StepTimeModel(spec, par, prec, cm)
    h = 400e-6
    fixed = StepTimeModel(spec, par, prec, cm, prefill_layer_s=h)
    L = spec.num_layers
    assert fixed.prefill_fixed_s == pytest.approx(L * h)
    assert fixed.one_chunk(1000, 0, 3, 3000, 4) - base.one_chunk(1000, 0, 3, 3000, 4) == pytest.approx(L * h)
    assert fixed.one_chunk(20, 0, 0, 0, 1) - base.one_chunk(20, 0, 0, 0, 1) == pytest.approx(L * h)
    assert fixed.iteration([(300, 0), (400, 100)], 2, 900, 4) - base.iteration([(300, 0), (400, 100)], 2, 900, 4) == pytest.approx(L * h)
    assert fixed.decode_step(16, 16 * 500) == base.decode_step(16, 16 * 500)
    assert fixed.decode_run(16, 16 * 500, 40) == base.decode_run(16, 16 * 500, 40)
    # attention DP: prefill iterations (mixed or ranked) pay it once, decode steps never
    moe, dp = get_model("mixtral-8x7b"), Parallel(tp=1, dp=2, ep=2)
    fp8 = Precision.make("fp8", None, None)
    b2, f2 = StepTimeModel(moe, dp, fp8, cm), StepTimeModel(moe, dp, fp8, cm, prefill_layer_s=h)
    Lm = moe.num_layers
    assert f2.iteration([(500, 0), (300, 0)], 6, 3000, 8) - b2.iteration([(500, 0), (300, 0)], 6, 3000, 8) == pytest.approx(Lm * h)
    assert f2.iteration_ranked([(500, 0), (300, 0)], [0, 1], 2) - b2.iteration_ranked([(500, 0), (300, 0)], [0, 1], 2) == pytest.approx(Lm * h)
    assert f2.decode_step(16, 16 * 500) == b2.decode_step(16, 16 * 500)
    # measured kernel tables (the bundled H100 ones) time the prefill: nothing added
    kt = resolve_kernels("auto", gpu)
    assert kt is not None
    cmk = CostModel(gpu, kt)
    assert StepTimeModel(spec, par, prec, cmk, prefill_layer_s=h).one_chunk(1000, 0, 3, 3000, 4) \
        == StepTimeModel(spec, par, prec, cmk).one_chunk(1000, 0, 3, 3000, 4)


def test_fixed_prefill_times_apply_on_blackwell_only_unless_given():
    # The backends' fixed prefill times were fitted on Blackwell rows; H100 rows timed by the
    # roofline show no such gap, so a roofline-timed Hopper GPU (H200, H100 with --kernels none)
    # takes none per dense / MLA layer and the table value per MoE layer -- an H200 is not
    # slower to prefill than an H100. A user's value applies on any GPU without tables.
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models.catalog import get_model
    from llmsim.serving.backends import BACKENDS, is_blackwell

    trt, vllm = BACKENDS["trtllm"], BACKENDS["vllm"]
    h200, b200, h100 = get_gpu("h200"), get_gpu("b200"), get_gpu("h100-sxm")
    assert is_blackwell(b200) and is_blackwell(get_gpu("gb300")) and not is_blackwell(h200) and not is_blackwell(get_gpu("mi300x"))
    assert trt.prefill_fixed_for(b200) == (trt.prefill_layer_s, trt.prefill_moe_layer_s, trt.prefill_mla_layer_s)
    assert trt.prefill_fixed_for(h200) == (0.0, trt.prefill_table_moe_layer_s, 0.0)
    assert vllm.prefill_fixed_for(h200) == (0.0, vllm.prefill_table_moe_layer_s, 0.0) and vllm.prefill_table_moe_layer_s > 0
    ds, fp8 = get_model("deepseek-v3"), Precision.make("fp8", None, None)
    assert trt.step_time(ds, h200, Parallel(tp=8), fp8).prefill_fixed_s == 0.0
    assert trt.step_time(ds, b200, Parallel(tp=8), fp8).prefill_fixed_s == pytest.approx(
        61 * (trt.prefill_layer_s + trt.prefill_mla_layer_s) + ds.num_moe_layers * trt.prefill_moe_layer_s)
    assert trt.step_time(ds, h200, Parallel(tp=8), fp8, prefill_layer_s=1e-4).prefill_fixed_s == pytest.approx(61 * 1e-4)
    # end to end: Llama-3.1-8B, 1k prompts one at a time -- H200 (roofline) within 10% of H100
    # (measured tables) and of H100 under the roofline, where the Blackwell-fitted time made it 1.7x
    wl = make_workload(num_requests=8, isl=1024, osl=16, concurrency=1, seed=0)
    ttft = {}
    for name, kern in (("h100-sxm", "auto"), ("h100-sxm", "none"), ("h200", "auto")):
        r = simulate(Deployment(model=MODEL, pool=Pool(name, tp=1), backend="vllm", kernels=kern), wl).summary
        assert r["prefill_layer_s"] == 0.0
        ttft[name, kern] = r["ttft_ms"]["mean"]
    assert ttft["h200", "auto"] <= ttft["h100-sxm", "none"] and ttft["h200", "auto"] == pytest.approx(ttft["h100-sxm", "auto"], rel=0.1)
    given = simulate(Deployment(model=MODEL, pool=Pool("h200", tp=1), backend="vllm", prefill_layer_s=5e-4), wl).summary
    assert given["prefill_layer_s"] == 5e-4 and given["ttft_ms"]["mean"] > ttft["h200", "auto"] + 0.9 * 32 * 0.5


def test_prefill_mla_layer_time_applies_to_mla_models_on_roofline_gpus():
    # Backend.prefill_mla_layer_s x layers joins the fixed prefill time of a multi-head-latent-
    # attention model (DeepSeek: all 61 layers) on a roofline-timed GPU; a GQA MoE model (gpt-oss)
    # and a GPU with kernel tables pay none of it
    from llmsim.cost.model import CostModel
    from llmsim.estimate import resolve_kernels
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models.catalog import get_model
    from llmsim.serving.backends import BACKENDS
    from llmsim.serving.steptime import StepTimeModel

    b200, h100 = get_gpu("b200-sxm"), get_gpu("h100-sxm")
    ds, oss = get_model("deepseek-v3"), get_model("gpt-oss-120b")
    fp8, h = Precision.make("fp8", None, None), 400e-6
    st = StepTimeModel(ds, Parallel(tp=8), fp8, CostModel(b200), prefill_mla_layer_s=h)
    assert ds.is_mla and st.prefill_fixed_s == pytest.approx(61 * h) and st.prefill_mla_layer_s == h
    base = StepTimeModel(ds, Parallel(tp=8), fp8, CostModel(b200))
    assert st.one_chunk(1000, 0, 3, 3000, 4) - base.one_chunk(1000, 0, 3, 3000, 4) == pytest.approx(61 * h)
    assert st.decode_step(16, 16 * 500) == base.decode_step(16, 16 * 500)
    assert StepTimeModel(oss, Parallel(tp=2), fp8, CostModel(b200), prefill_mla_layer_s=h).prefill_fixed_s == 0.0
    tabled = StepTimeModel(ds, Parallel(tp=8), fp8, CostModel(h100, resolve_kernels("auto", h100)), prefill_mla_layer_s=h)
    assert tabled.prefill_fixed_s == 0.0 and tabled.prefill_mla_layer_s == 0.0
    # TRT-LLM: 0.125 ms per layer + 0.75 ms per MoE layer + 0.75 ms per MLA layer; the others none per MLA layer
    trt = BACKENDS["trtllm"]
    assert (trt.prefill_layer_s, trt.prefill_moe_layer_s, trt.prefill_mla_layer_s) == (0.125e-3, 0.75e-3, 0.75e-3)
    assert BACKENDS["vllm"].prefill_mla_layer_s == BACKENDS["sglang"].prefill_mla_layer_s == 0.0
    wl = make_workload(num_requests=2, isl=1000, osl=10, concurrency=1, seed=0)
    r = simulate(Deployment(model="deepseek-v3", pool=Pool("b200-sxm", tp=8), weight_dtype="fp8", backend="trtllm"), wl).summary
    assert r["prefill_mla_layer_s"] == 0.75e-3 and r["prefill_moe_layer_s"] == 0.75e-3


def test_prefill_table_moe_layer_time_applies_to_moe_layers_of_table_timed_gpus():
    # Backend.prefill_table_moe_layer_s x MoE layers is the fixed prefill time on a GPU whose kernel
    # tables time the dense GEMMs and attention (no table times a fused-MoE kernel): a dense model
    # pays nothing there, a roofline-timed GPU uses prefill_layer_s / prefill_moe_layer_s instead
    from llmsim.cost.model import CostModel
    from llmsim.estimate import resolve_kernels
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models.catalog import get_model
    from llmsim.serving.backends import BACKENDS, PREFILL_LAYER_S
    from llmsim.serving.steptime import StepTimeModel

    gpu = get_gpu("h100-sxm")
    cm, cmk = CostModel(gpu), CostModel(gpu, resolve_kernels("auto", gpu))
    assert cmk.kernels is not None
    oss, dense = get_model("gpt-oss-120b"), get_model(MODEL)
    h = 500e-6
    tabled = StepTimeModel(oss, Parallel(tp=2), Precision(), cmk, prefill_layer_s=2 * h, prefill_table_moe_layer_s=h)
    assert tabled.prefill_fixed_s == pytest.approx(oss.num_moe_layers * h) and tabled.prefill_moe_layer_s == h
    base = StepTimeModel(oss, Parallel(tp=2), Precision(), cmk)
    assert tabled.one_chunk(1000, 0, 3, 3000, 4) - base.one_chunk(1000, 0, 3, 3000, 4) == pytest.approx(oss.num_moe_layers * h)
    assert tabled.decode_step(16, 16 * 500) == base.decode_step(16, 16 * 500)
    assert StepTimeModel(dense, Parallel(), Precision(), cmk, prefill_table_moe_layer_s=h).prefill_fixed_s == 0.0
    roof = StepTimeModel(oss, Parallel(tp=2), Precision(), cm, prefill_layer_s=2 * h, prefill_table_moe_layer_s=h)
    assert roof.prefill_fixed_s == pytest.approx(oss.num_layers * 2 * h)
    # the backends: vLLM applies its own prefill_layer_s per MoE layer there, TRT-LLM and SGLang nothing
    assert BACKENDS["vllm"].prefill_table_moe_layer_s == PREFILL_LAYER_S["vllm"]
    assert BACKENDS["trtllm"].prefill_table_moe_layer_s == BACKENDS["sglang"].prefill_table_moe_layer_s == 0.0
    wl = make_workload(num_requests=4, isl=1000, osl=20, concurrency=1, seed=0)
    kw = dict(model="gpt-oss-120b", pool=Pool("h100-sxm", tp=2), weight_dtype="fp4", act_dtype="bf16", kernels="auto")
    r_v = simulate(Deployment(**kw, backend="vllm"), wl).summary
    assert r_v["prefill_moe_layer_s"] == PREFILL_LAYER_S["vllm"] and r_v["prefill_layer_s"] == 0.0


def test_prefill_moe_layer_time_applies_to_moe_layers_of_roofline_gpus():
    # Backend.prefill_moe_layer_s x MoE layers joins the fixed time of prefill iterations where the
    # roofline times the GPU; a dense model has no MoE layer to pay it, and a GPU timed by measured
    # kernel tables pays neither part
    from llmsim.cost.model import CostModel
    from llmsim.estimate import resolve_kernels
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel, Precision
    from llmsim.models.catalog import get_model
    from llmsim.serving.steptime import StepTimeModel

    gpu = get_gpu("h100-sxm")
    cm, cmk = CostModel(gpu), CostModel(gpu, resolve_kernels("auto", gpu))
    assert cmk.kernels is not None
    moe, dense = get_model("qwen3-235b-a22b"), get_model(MODEL)
    par, fp8 = Parallel(tp=8, ep=8), Precision.make("fp8", None, None)
    h = 500e-6
    base, fixed = StepTimeModel(moe, par, fp8, cm), StepTimeModel(moe, par, fp8, cm, prefill_layer_s=h, prefill_moe_layer_s=2 * h)
    assert moe.num_moe_layers == 94 == moe.num_layers
    assert fixed.prefill_fixed_s == pytest.approx(94 * h + 94 * 2 * h)
    assert fixed.one_chunk(1000, 0, 3, 3000, 4) - base.one_chunk(1000, 0, 3, 3000, 4) == pytest.approx(94 * 3 * h)
    assert fixed.decode_step(16, 16 * 500) == base.decode_step(16, 16 * 500)
    ds = get_model("deepseek-v3")  # 3 leading dense layers: only the 58 MoE layers pay the MoE part
    assert StepTimeModel(ds, Parallel(tp=8), fp8, cm, prefill_moe_layer_s=h).prefill_fixed_s == pytest.approx(58 * h)
    assert StepTimeModel(dense, Parallel(), Precision(), cm, prefill_moe_layer_s=h).prefill_fixed_s == 0.0
    tabled = StepTimeModel(moe, par, fp8, cmk, prefill_layer_s=h, prefill_moe_layer_s=h)
    assert (tabled.prefill_fixed_s, tabled.prefill_moe_layer_s) == (0.0, 0.0)
    # end to end: one client, one-chunk prompts -> each TTFT grows by exactly 94 x 0.5 ms; JSON key
    wl = make_workload(num_requests=4, isl=1000, osl=20, concurrency=1, seed=0)
    kw = dict(model="qwen3-235b-a22b", pool=Pool("h100-sxm", tp=8, ep=8), weight_dtype="fp8", kernels="none", backend="trtllm",
              prefill_layer_s=0.0)
    r0 = simulate(Deployment(**kw, prefill_moe_layer_s=0.0), wl).summary
    r1 = simulate(Deployment(**kw, prefill_moe_layer_s=h), wl).summary
    assert r1["prefill_moe_layer_s"] == h and r0["prefill_moe_layer_s"] == 0.0
    assert r1["ttft_ms"]["mean"] - r0["ttft_ms"]["mean"] == pytest.approx(94 * h * 1e3, rel=1e-6)
    assert simulate(Deployment(**dict(kw, kernels="auto"), prefill_moe_layer_s=h), wl).summary["prefill_moe_layer_s"] == 0.0
    for bad in (-1e-3, float("nan"), "1", True):
        with pytest.raises(LlmsimError, match="prefill_moe_layer_s"):
            simulate(Deployment(**kw, prefill_moe_layer_s=bad), wl)


def test_prefill_fixed_time_enters_ttft_once_per_prefill():
    # one client, prompts of one chunk: each TTFT grows by exactly the fixed time of one prefill
    # iteration; decodes run alone, so TPOT does not move
    wl = make_workload(num_requests=6, isl=2000, osl=50, concurrency=1, seed=0)
    base = simulate(dep(backend="trtllm", prefill_layer_s=0.0), wl)
    res = simulate(dep(backend="trtllm", prefill_layer_s=1e-3), wl)
    check_conservation(res, 6)
    L = 32  # llama-3.1-8b
    assert res.summary["prefill_layer_s"] == 1e-3
    assert res.summary["ttft_ms"]["mean"] - base.summary["ttft_ms"]["mean"] == pytest.approx(L * 1.0, rel=1e-6)
    assert res.summary["tpot_ms"]["mean"] == pytest.approx(base.summary["tpot_ms"]["mean"], rel=1e-9)
    # with four desynchronised clients a prompt's prefill iteration also stalls the others' decodes
    # (about 3 prompts of +32 ms over a request's ~50 tokens): TPOT grows
    wl4 = make_workload(num_requests=40, isl=2000, output_dist="uniform:30,70", concurrency=4, seed=0, client_jitter_s=0.005)
    b4 = simulate(dep(backend="trtllm", prefill_layer_s=0.0), wl4).summary["tpot_ms"]["mean"]
    r4 = simulate(dep(backend="trtllm", prefill_layer_s=1e-3), wl4).summary["tpot_ms"]["mean"]
    assert r4 > b4 * 1.1
    # on a GPU with measured kernel tables (H100, kernels="auto") it is not applied
    auto = simulate(dep(backend="trtllm", prefill_layer_s=1e-3, kernels="auto"), wl)
    assert auto.summary["prefill_layer_s"] == 0.0
    assert auto.requests.t_first == simulate(dep(backend="trtllm", prefill_layer_s=0.0, kernels="auto"), wl).requests.t_first


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), True, "1ms"])
def test_bad_prefill_fixed_time(bad):
    wl = make_workload(num_requests=4, isl=100, osl=10, concurrency=2)
    with pytest.raises(LlmsimError, match="prefill_layer_s"):
        simulate(dep(prefill_layer_s=bad), wl)


def test_vllm_default_max_num_seqs_follows_gpu_memory():
    # vLLM's `vllm serve` default: 1024 running sequences on GPUs with >= 70 GiB other than A100,
    # 256 elsewhere; a smaller given token budget caps it; an explicit value wins
    wl = make_workload(num_requests=600, isl=64, osl=8, concurrency=600)
    big = simulate(dep(backend="vllm"), wl).summary
    a100 = simulate(dep(backend="vllm", pool=Pool("a100-80gb")), wl).summary
    assert (big["max_num_seqs"], a100["max_num_seqs"]) == (1024, 256)
    assert simulate(dep(backend="vllm", max_num_batched_tokens=512), wl).summary["max_num_seqs"] == 512
    assert simulate(dep(backend="vllm", max_num_seqs=300), wl).summary["max_num_seqs"] == 300
    assert simulate(dep(backend="sglang"), wl).summary["max_num_seqs"] == 256
    # offline: 600 requests queued at once all run together on H100 (1024), at most 256 at a time on A100
    assert big["num_iterations"] < a100["num_iterations"]


@pytest.mark.parametrize("kw, name", [({"kv_reserve_output": True}, "kv_reserve_output"), ({"kv_reserve_output": 1.5}, "kv_reserve_output"),
                                      ({"frontend_s_per_token": float("inf")}, "frontend_s_per_token"),
                                      ({"frontend_s_per_token": float("nan")}, "frontend_s_per_token")])
def test_bad_shares_and_times(kw, name):
    # shares must be numbers in [0, 1] (a bool is not one), times finite and >= 0
    wl = make_workload(num_requests=4, isl=100, osl=10, concurrency=2)
    with pytest.raises(LlmsimError, match=name):
        simulate(dep(**kw), wl)


@pytest.mark.parametrize("kw, name", [({"max_num_seqs": 0}, "max_num_seqs"), ({"max_num_seqs": -5}, "max_num_seqs"),
                                      ({"max_num_seqs": 2.5}, "max_num_seqs"), ({"max_num_batched_tokens": 0}, "max_num_batched_tokens"),
                                      ({"block_size": 0}, "block_size"), ({"block_size": -16}, "block_size"),
                                      ({"cpu_overhead_s": -1e-3}, "cpu_overhead_s"), ({"cpu_per_seq_s": float("nan")}, "cpu_per_seq_s"),
                                      ({"memory_fraction": 0.0}, "memory_fraction"), ({"memory_fraction": 1.5}, "memory_fraction"),
                                      ({"first_token_from": "client"}, "first_token_from"),
                                      # disaggregation-only settings on an aggregated deployment
                                      ({"first_token_from": "decode"}, "only applies to a disaggregated"),
                                      ({"disagg_handoff_s": 0.1}, "only applies to a disaggregated")])
def test_bad_engine_limits_are_refused_not_replaced(kw, name):
    # 0 used to fall back to the backend's default without a word (max_num_seqs, memory_fraction),
    # negatives ran into an internal error, a zero block size divided by zero
    wl = make_workload(num_requests=4, isl=100, osl=10, concurrency=2)
    with pytest.raises(LlmsimError, match=name):
        simulate(dep(**kw), wl)


@pytest.mark.parametrize("kw, match", [
    (dict(pool=Pool(tp="2")), "tp must be an integer"),  # TypeError in the layout check
    (dict(pool=Pool(workers=2.5)), "workers must be an integer"),
    (dict(pool=Pool(workers=True)), "workers must be an integer"),  # ran one worker
    (dict(pool=Pool(gpu=123)), "gpu must be a catalog id"),
    (dict(prefix_caching="no"), "prefix_caching must be True or False"),  # a truthy string switched it on
    (dict(chunked_prefill="no"), "chunked_prefill must be True or False"),
    (dict(static_batching=1), "static_batching must be True or False"),
    (dict(pool=Pool(tp=4, workers=3), prefill=Pool(), decode=Pool()), "`pool` was given too"),  # the pool was dropped
    (dict(price_per_hour_usd="2"), "GPU price must be a number"),  # float('2') read it
    (dict(seed=-3), "seed must be an integer >= 0"),
])
def test_wrong_types_and_conflicting_pools_are_errors(kw, match):
    wl = make_workload(num_requests=4, isl=100, osl=10, concurrency=2)
    with pytest.raises(LlmsimError, match=match):
        simulate(dep(**kw), wl)


def test_per_request_rows_mark_the_warm_up_requests():
    # the summary leaves out the first `warmup` completions; the per-request rows say which they were
    wl = make_workload(num_requests=40, input_dist="uniform:50,400", osl=20, concurrency=4, warmup=8, seed=3)
    res = simulate(dep(), wl)
    t = res.per_request()
    assert t["warmup"].sum() == 8 == len(res.warmup_request_ids)
    counted = ~t["warmup"]
    assert res.summary["num_requests"] == counted.sum()
    assert np.mean(t["ttft_ms"][counted]) == pytest.approx(res.summary["ttft_ms"]["mean"])
    # the warm-up requests are the first eight to finish
    assert np.sort(t["finish_s"][t["warmup"]]).max() <= np.sort(t["finish_s"][counted]).min()


def test_a_warm_up_that_leaves_no_closed_loop_window_measures_as_an_open_loop():
    # 4 one-token requests, 3 warm-up: the counted one finishes with them in one iteration, so the
    # closed-loop window (from the warm-up cut-off) would be empty and every rate undefined (the
    # JSON's throughputs were null); the window is then the open loop's: its arrival to its finish
    wl = make_workload(num_requests=4, isl=10, osl=1, concurrency=2, warmup=3)
    for streaming in (False, True):
        res = simulate(dep(), wl, streaming=streaming)
        s = res.summary
        assert s["num_requests"] == 1 and s["duration_s"] == pytest.approx(s["e2e_ms"]["mean"] / 1e3) and s["duration_s"] > 0
        assert s["output_tokens_per_s"] == pytest.approx(1 / s["duration_s"]) and s["requests_per_s"] == pytest.approx(1 / s["duration_s"])
        assert s["total_tokens_per_s"] == pytest.approx(11 / s["duration_s"]) and s["usd_per_million_output_tokens"] > 0


def test_sglang_attention_dp_expert_parallel_pools_run_the_grouped_gemm_efficiency():
    """SGLang reaches the experts by all-to-all where attention DP meets EP, and its grouped GEMMs
    there run at `A2A_MOE_EFFICIENCY` (measured), not the fused-MoE path's 0.2: such a pool's MoE
    prefill is faster, the summary reports each pool's value, and a Deployment override still
    sets every pool."""
    from llmsim.layout import Parallel
    from llmsim.serving.backends import A2A_MOE_EFFICIENCY, BACKENDS, MOE_EFFICIENCY

    sg = BACKENDS["sglang"]
    assert sg.moe_efficiency_for(Parallel(1, 1, 4, 4)) == A2A_MOE_EFFICIENCY["sglang"] == 0.71
    for par in (Parallel(4, 1, 1, 4), Parallel(1, 1, 4, 1), Parallel(4, 1, 1, 1), None):  # EP without DP, DP without EP, TP
        assert sg.moe_efficiency_for(par) == MOE_EFFICIENCY["sglang"]
    for name in ("vllm", "trtllm"):  # no a2a value: their own everywhere
        assert BACKENDS[name].moe_efficiency_for(Parallel(1, 1, 4, 4)) == MOE_EFFICIENCY[name]

    wl = make_workload(num_requests=6, isl=4000, osl=4, concurrency=1)
    kw = dict(model="mixtral-8x7b", backend="sglang", weight_dtype="fp8", kernels="none", max_num_batched_tokens=8192,
              decode=Pool("h100-sxm", tp=2))
    a2a = simulate(dep(prefill=Pool("h100-sxm", tp=1, dp=4, ep=4), **kw), wl).summary
    fused = simulate(dep(prefill=Pool("h100-sxm", tp=4, ep=4), **kw), wl).summary
    assert a2a["moe_efficiency"] == [0.71, MOE_EFFICIENCY["sglang"]]  # prefill pool first
    assert fused["moe_efficiency"] == [MOE_EFFICIENCY["sglang"]] * 2
    pinned = simulate(dep(prefill=Pool("h100-sxm", tp=1, dp=4, ep=4), moe_efficiency=0.5, **kw), wl).summary
    assert pinned["moe_efficiency"] == [0.5, 0.5]
    assert a2a["ttft_ms"]["mean"] < pinned["ttft_ms"]["mean"]  # 4k-token prompts: the expert GEMMs bind


def test_moe_efficiency_slows_moe_prefill_only():
    # the backend's fused-MoE efficiency (Backend.moe_efficiency, overridable per Deployment)
    # lengthens a MoE model's prefill, is reported in the summary, and leaves dense models alone
    from llmsim.serving.backends import BACKENDS

    wl = make_workload(num_requests=4, isl=8000, osl=8, concurrency=1)
    moe = dict(model="qwen3-235b-a22b", pool=Pool("h100-sxm", tp=8), weight_dtype="fp8", kernels="none", prefill_layer_s=0.0)
    slow = simulate(dep(moe_efficiency=0.3, **moe), wl).summary
    fast = simulate(dep(moe_efficiency=1.0, **moe), wl).summary
    assert (slow["moe_efficiency"], fast["moe_efficiency"]) == ([0.3], [1.0])
    assert slow["ttft_ms"]["mean"] > 1.12 * fast["ttft_ms"]["mean"]  # 231 vs 195 ms: the expert GEMMs are ~40% of it
    assert simulate(dep(**moe), wl).summary["moe_efficiency"] == [BACKENDS["vllm"].moe_efficiency]
    dense_slow = simulate(dep(moe_efficiency=0.3, kernels="none"), wl).summary
    dense_fast = simulate(dep(moe_efficiency=1.0, kernels="none"), wl).summary
    assert dense_slow["ttft_ms"] == dense_fast["ttft_ms"] and dense_slow["tpot_ms"] == dense_fast["tpot_ms"]


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, True, float("nan"), "0.5"])
def test_bad_moe_efficiency(bad):
    wl = make_workload(num_requests=4, isl=100, osl=10, concurrency=2)
    with pytest.raises(LlmsimError, match="moe_efficiency"):
        simulate(dep(moe_efficiency=bad), wl)


def test_closed_loop_first_round_breakdown():
    # c clients start together: the first c requests queue behind each other's prompts, so their
    # mean TTFT is above the later requests'; the two means recombine into the overall mean
    c, n = 32, 160
    res = simulate(dep(), make_workload(num_requests=n, isl=2000, osl=64, concurrency=c, seed=0))
    s = res.summary
    fr = s["closed_loop_first_round"]
    ttft_ms = (np.frombuffer(res.requests.t_first) - np.frombuffer(res.requests.arrival)) * 1e3
    assert fr["requests"] == c
    assert fr["ttft_ms_mean"] == pytest.approx(ttft_ms[:c].mean())
    assert fr["later_ttft_ms_mean"] == pytest.approx(ttft_ms[c:].mean())
    assert fr["ttft_ms_mean"] > 2 * fr["later_ttft_ms_mean"]
    assert (c * fr["ttft_ms_mean"] + (n - c) * fr["later_ttft_ms_mean"]) / n == pytest.approx(s["ttft_ms"]["mean"], rel=1e-9)
    assert fr["share_of_ttft_mean"] == pytest.approx(c * fr["ttft_ms_mean"] / (n * s["ttft_ms"]["mean"]), rel=1e-9)
    # not reported where it does not apply: warm-up excludes the first completions; open loop
    warm = simulate(dep(), make_workload(num_requests=n, isl=2000, osl=64, concurrency=c, warmup=c, seed=0)).summary
    assert "closed_loop_first_round" not in warm
    assert "closed_loop_first_round" not in simulate(dep(), make_workload(num_requests=50, isl=500, osl=20, rate=5.0, seed=0)).summary


def test_trtllm_kv_cache_is_its_fraction_of_the_memory_the_weights_leave():
    """TRT-LLM's free_gpu_memory_fraction is a share of the free memory after the weights (and a
    warm-up forward); vLLM's gpu_memory_utilization a share of the whole GPU. Where the weights
    fill most of the GPU the two engines' KV caches differ several-fold at the same 0.9."""
    from llmsim.serving.backends import BACKENDS

    assert [BACKENDS[b].memory_fraction_of for b in ("vllm", "sglang", "trtllm")] == ["capacity", "capacity", "free"]
    wl = make_workload(num_requests=4, isl=512, osl=4, concurrency=2, seed=0)
    kv = {}
    for be in ("vllm", "trtllm"):
        res = simulate(dep(model="deepseek-r1", backend=be, weight_dtype="fp8", kv_dtype="fp8", memory_fraction=0.9,
                           pool=Pool("b200", tp=4)), wl)
        check_conservation(res, 4)
        kv[be] = res.summary["kv_capacity_tokens_per_engine"]
    assert kv["trtllm"] > 6 * kv["vllm"] > 0, kv


def test_allreduce_norm_fusion_follows_each_engine():
    """TRT-LLM fuses the all-reduce with the residual RMSNorm whenever TP runs without attention DP,
    within its custom all-reduce's 8 MiB; SGLang only where it switches FlashInfer's fusion on itself
    (DeepSeek-V3 architecture and gpt-oss, Blackwell, one node, no attention DP; 2048 tokens); vLLM's
    default stays unfused. A deployment can force it either way."""
    from llmsim.hardware import get_gpu
    from llmsim.layout import Parallel
    from llmsim.models import get_model
    from llmsim.serving.backends import BACKENDS, Backend

    ds, qwen, oss = get_model("deepseek-r1"), get_model("qwen3.5-397b-a17b"), get_model("gpt-oss-120b")
    b200, gb200, h100 = get_gpu("b200"), get_gpu("gb200"), get_gpu("h100-sxm")
    trt, sgl, vll = BACKENDS["trtllm"], BACKENDS["sglang"], BACKENDS["vllm"]
    assert trt.fused_norm_tokens(ds, h100, Parallel(tp=8)) == (8 << 20) // (2 * 7168) == 585
    assert trt.fused_norm_tokens(ds, b200, Parallel(tp=1)) == 0 and trt.fused_norm_tokens(ds, b200, Parallel(tp=8, dp=2, ep=2)) == 0
    assert sgl.fused_norm_tokens(ds, gb200, Parallel(tp=4)) == 2048  # one 4-GPU GB200 tray
    assert sgl.fused_norm_tokens(ds, gb200, Parallel(tp=8)) == 0  # two trays: SGLang leaves it off
    assert sgl.fused_norm_tokens(oss, b200, Parallel(tp=8)) == 2048
    assert sgl.fused_norm_tokens(ds, h100, Parallel(tp=8)) == 0 and sgl.fused_norm_tokens(qwen, b200, Parallel(tp=8)) == 0
    assert vll.fused_norm_tokens(ds, b200, Parallel(tp=8)) == 0
    assert vll.fused_norm_tokens(ds, b200, Parallel(tp=8), force=True) == 585 and trt.fused_norm_tokens(ds, b200, Parallel(tp=8), force=False) == 0
    with pytest.raises(LlmsimError, match="allreduce_norm_fusion"):
        Backend("x", "vllm", 0.0, 1, 1, True, 0.9, allreduce_norm_fusion="always")

    # simulated: SGLang DeepSeek-R1 decoding on one GB200 tray (TP4) gets faster per token with the
    # fusion it runs; the same run with the fusion forced off is slower by the norms' launches
    wl = make_workload(num_requests=8, isl=256, osl=64, concurrency=4, seed=0)
    tpot = {}
    for fusion in (None, False):
        res = simulate(dep(model="deepseek-r1", backend="sglang", weight_dtype="fp8", kv_dtype="fp8",
                           pool=Pool("gb200", tp=4), allreduce_norm_fusion=fusion), wl)
        check_conservation(res, 8)
        tpot[fusion] = res.summary["tpot_ms"]["mean"]
        assert res.summary["fused_norm_tokens"] == (2048 if fusion is None else 0)  # the summary says which ran
    # 2 norms x 61 layers of ~3 us each: a few tenths of a ms per decode step
    assert 0.1 < tpot[False] - tpot[None] < 1.0, tpot


def test_ep_imbalance_slows_expert_parallel_moe_serving_and_rejects_bad_values():
    from llmsim.cost.ops import expected_ep_imbalance

    wl = make_workload(num_requests=64, isl=256, osl=32, concurrency=32, seed=3)

    def run(model="deepseek-v3", pool=Pool("b200", 1, 1, 8, 8), **kw):
        return simulate(Deployment(model=model, pool=pool, backend="sglang", weight_dtype="fp8", **kw), wl)

    base, hot, auto = run(), run(ep_imbalance=1.5), run(ep_imbalance="auto")
    check_conservation(hot, 64)
    assert base.summary["ep_imbalance"] == [1.0] and hot.summary["ep_imbalance"] == [1.5]
    assert auto.summary["ep_imbalance"] == [pytest.approx(expected_ep_imbalance(256, 8))]
    assert base.summary["tpot_ms"]["mean"] < auto.summary["tpot_ms"]["mean"] < hot.summary["tpot_ms"]["mean"]
    assert base.summary["ttft_ms"]["mean"] < hot.summary["ttft_ms"]["mean"]
    # a dense model or a pool without EP is unaffected
    dense = [run(model="llama-3.1-8b", pool=Pool("b200", 1), ep_imbalance=v).summary for v in (None, 1.5)]
    assert dense[0]["tpot_ms"] == dense[1]["tpot_ms"] and dense[1]["ep_imbalance"] == [1.0]
    for bad in (0.5, -1.0, float("nan"), "hot", True):
        with pytest.raises(LlmsimError, match="ep_imbalance"):
            run(ep_imbalance=bad)


def test_an_explicit_budget_under_a_prompt_without_chunking_is_refused_where_the_engine_refuses_it():
    # vLLM refuses to start with max_num_batched_tokens under its context length and TRT-LLM rejects a
    # longer context request; both used to run the 400-token prompts whole past a 100-token budget.
    # SGLang's prefill bound is the larger of its max prefill tokens and the context: it runs them.
    wl = make_workload(num_requests=3, isl=400, osl=4, concurrency=1)
    for backend in ("vllm", "trtllm"):
        with pytest.raises(LlmsimError, match="a prompt of 400 tokens exceeds max_num_batched_tokens = 100"):
            simulate(dep(backend=backend, chunked_prefill=False, max_num_batched_tokens=100), wl)
        simulate(dep(backend=backend, chunked_prefill=False, max_num_batched_tokens=400), wl)  # fits: runs
        simulate(dep(backend=backend, chunked_prefill=True, max_num_batched_tokens=100), wl)  # chunked: runs
    s = simulate(dep(backend="sglang", chunked_prefill=False, max_num_batched_tokens=100), wl).summary
    assert s["num_requests"] == 3


@pytest.mark.parametrize("kw", [dict(pool=Pool("h100-sxm", workers=2)),
                                dict(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm", workers=2))])
def test_closed_loop_clients_send_in_time_order_with_several_engines(kw):
    # engines report an iteration's completions when they step, so with several engines a later
    # completion could be reported first: the next request went to the wrong client, and at the end
    # an earlier-free client sat idle while a later one sent the last request (0.6234 s, not 0.5912)
    wl = make_workload(num_requests=40, input_dist="uniform:1,4000", output_dist="uniform:1,50", concurrency=4, seed=30)
    res = simulate(dep(**kw), wl)
    arr, fin = np.frombuffer(res.requests.arrival), np.frombuffer(res.requests.t_finish)
    assert np.all(np.diff(arr) >= 0)  # request i is sent no later than request i + 1
    assert np.allclose(arr[4:], np.sort(fin)[:36])  # each follow-up at one of the 36 earliest finishes


def test_collective_links_name_the_tier_each_parallel_group_uses():
    # tp 16 on 8-GPU H100 nodes all-reduces over the scale-out NIC; tp 8 stays on NVLink; an L40S
    # pair (no NVLink) over PCIe; a disaggregated run lists both pools, ep groups too
    wl = make_workload(num_requests=4, isl=256, osl=8, concurrency=2, seed=0)
    links = simulate(Deployment(model="llama-3.1-70b", pool=Pool("h100-sxm", tp=16)), wl).summary["collective_links"]
    assert links == [{"pool": "replica", "group": "tp", "gpus": 16, "link": "network", "bandwidth_gbps": 50.0}]
    assert simulate(Deployment(model="llama-3.1-70b", pool=Pool("h100-sxm", tp=8)), wl).summary["collective_links"][0]["link"] == "nvlink"
    assert simulate(Deployment(model=MODEL, pool=Pool("l40s", tp=2)), wl).summary["collective_links"][0]["link"] == "pcie"
    assert simulate(Deployment(model=MODEL, pool=Pool("h100-sxm", tp=1)), wl).summary["collective_links"] == []
    d = simulate(Deployment(model="mixtral-8x7b", prefill=Pool("h100-sxm", tp=2), decode=Pool("h100-sxm", tp=4, ep=4)), wl).summary
    assert [(c["pool"], c["group"], c["gpus"], c["link"]) for c in d["collective_links"]] == [
        ("prefill", "tp", 2, "nvlink"), ("decode", "tp", 4, "nvlink"), ("decode", "ep", 4, "nvlink")]


def test_serve_summary_names_collectives_that_leave_nvlink(capsys):
    from llmsim.cli import main

    main(["serve", "--model", "llama-3.1-70b", "--gpu", "h100", "--tp", "16", "--concurrency", "2", "--num-requests", "4",
          "--isl", "256", "--osl", "8"])
    text = " ".join(capsys.readouterr().out.split())
    assert "replica tp=16 all-reduces over the scale-out" in text and "links" in text  # (the table wraps the rest)
    main(["serve", "--model", "llama-3.1-70b", "--gpu", "h100", "--tp", "8", "--concurrency", "2", "--num-requests", "4",
          "--isl", "256", "--osl", "8"])
    assert "all-reduces over" not in capsys.readouterr().out


def _handoff_case():
    """2,000-token Llama-3.1-8B prompts with one output token after the first (bf16 KV)."""
    from llmsim.layout import Parallel, Precision
    from llmsim.memory.model import kv_bytes_per_token_per_gpu
    from llmsim.models import get_model

    wl = make_workload(num_requests=4, isl=2000, osl=2, concurrency=4, seed=0)
    return wl, kv_bytes_per_token_per_gpu(get_model(MODEL), Parallel(), Precision.make("bf16"))


def _handoff_ttfts(wl, prefill, decode, h=0.0):
    res = simulate(dep(prefill=prefill, decode=decode, first_token_from="decode", disagg_handoff_s=h,
                       max_num_batched_tokens=8192), wl)
    check_conservation(res, 4)
    t = res.per_request()
    assert (t["arrival_s"] == 0).all() and (t["queue_ms"] == 0).all()  # every prompt prefilled at once
    return np.sort(t["ttft_ms"]), float(t["tpot_ms"].max())


def test_disaggregated_handoffs_from_one_prefill_worker_take_turns_at_its_link():
    """Four 2,000-token prompts finish in one prefill iteration on one H100 and go to eight H100
    decode workers (nine workers: past one 8-GPU NVLink domain, so over the 400 Gb/s NICs, 5.3 ms
    each): they leave one after another, so the last reaches its decode worker three transfers
    after the first -- not all four at once, as when each hand-off had the whole link. The front
    end's fixed hand-off time holds no link: it delays every request alike and leaves the spread
    as it is. With four attention-DP ranks each prompt's KV sits on its own rank's GPU and leaves
    by that GPU's NIC: all four at once."""
    from llmsim.hardware import get_gpu
    from llmsim.serving.simulate import kv_handoff_s

    wl, kv = _handoff_case()
    h100 = get_gpu("h100-sxm")
    xfer_ms = 1e3 * kv_handoff_s(2001, h100, 1, kv, h100, 1, kv, domain_gpus=9)
    assert xfer_ms == pytest.approx(1e3 * (2001 * kv / 50e9) + 5e-3, rel=0.01)  # + NIC latency
    decode = Pool("h100-sxm", workers=8)
    (t0, step), (t1, _) = _handoff_ttfts(wl, Pool("h100-sxm"), decode), _handoff_ttfts(wl, Pool("h100-sxm"), decode, 0.25)
    assert t0[-1] - t0[0] >= 3 * xfer_ms - step  # the last arrives 3 transfers after the first
    assert t1 - t0 == pytest.approx(np.full(4, 250.0), abs=1e-6)
    t, _ = _handoff_ttfts(wl, Pool("h100-sxm", dp=4), Pool("h100-sxm", workers=5))  # 4 + 5 GPUs: NICs
    assert t.max() - t.min() < 1e-9


def test_disaggregated_handoffs_to_one_decode_worker_take_turns_at_its_links():
    """Four H100 prefill workers (one 2,000-token prompt each, all finishing together) hand off to
    one A100 decode worker: the A100's NIC (25 GB/s, 10.5 ms a prompt) is the slower end, and the
    transfers queue there, so the TTFTs spread over three transfers. With four decode workers the
    router sends each prompt to its own (the request counts as routed there while its KV is in
    flight) and all four arrive together; with four receiving attention-DP ranks, too. Each end is
    busy for its own bytes only: five tp1 H100 prefill workers sending to one tp4 H100 decode worker
    keep each receiving NIC busy a quarter as long as the sending one, so four hand-offs cross
    together, not one after another."""
    from llmsim.hardware import get_gpu
    from llmsim.serving.simulate import kv_handoff_parts, kv_handoff_s

    wl, kv = _handoff_case()
    h100, a100 = get_gpu("h100-sxm"), get_gpu("a100-sxm-80gb")
    xfer_ms = 1e3 * kv_handoff_s(2001, h100, 1, kv, a100, 1, kv)
    assert xfer_ms == pytest.approx(1e3 * (2001 * kv / 25e9) + 5e-3, rel=0.01)
    four_prefills = Pool("h100-sxm", workers=4)

    one, step = _handoff_ttfts(wl, four_prefills, Pool("a100-sxm-80gb"))
    # one transfer after another (each joins the decode engine at its next iteration boundary)
    assert (np.diff(one) >= xfer_ms - step).all() and (np.diff(one) <= xfer_ms + step).all()
    # the summary says so: four hand-offs over the NICs, the last waiting three transfers for the link;
    # and so does each request's row: 0, 1, 2 and 3 transfers' wait
    res = simulate(dep(prefill=four_prefills, decode=Pool("a100-sxm-80gb"), first_token_from="decode", disagg_handoff_s=0.0), wl)
    ho = res.summary["kv_handoff"]
    assert ho["link"] == "network" and ho["handoffs"] == 4 and ho["fixed_ms"] == 0.0
    assert ho["link_wait_ms"]["max"] == pytest.approx(3 * (xfer_ms - 5e-3), rel=1e-3)
    assert ho["link_wait_ms"]["mean"] == pytest.approx(1.5 * (xfer_ms - 5e-3), rel=1e-3)
    assert ho["transfer_ms"]["max"] == pytest.approx(4 * xfer_ms - 3 * 5e-3, rel=1e-3)
    rows = res.per_request()
    assert np.sort(rows["kv_link_wait_ms"]) == pytest.approx(np.arange(4) * (xfer_ms - 5e-3), rel=1e-3, abs=1e-9)
    assert rows["kv_handoff_ms"] - rows["kv_link_wait_ms"] == pytest.approx(np.full(4, xfer_ms), rel=1e-9)
    assert rows["kv_handoff_ms"].mean() == pytest.approx(ho["transfer_ms"]["mean"], rel=1e-12)
    assert "kv_handoff_ms" not in simulate(dep(), wl).per_request()  # aggregated: no hand-offs
    # the TTFT in parts, request by request and as the summary's means
    parts = rows["queue_ms"] + rows["prefill_ms"] + rows["kv_handoff_ms"] + rows["handoff_fixed_ms"] + rows["decode_first_ms"]
    assert parts == pytest.approx(rows["ttft_ms"], rel=1e-12)
    tp = res.summary["ttft_parts_ms"]
    assert tp["requests"] == 4 and tp["ttft"] == pytest.approx(res.summary["ttft_ms"]["mean"], rel=1e-12)
    assert tp["queue"] + tp["prefill"] + tp["kv_handoff"] + tp["handoff_fixed"] + tp["decode_first"] == pytest.approx(tp["ttft"], rel=1e-12)
    assert tp["decode_first"] >= step - 1e-9  # at least the request's own first decode iteration
    # TRT-LLM's server returns the prefill worker's token first: TTFT = queueing + prefill
    trt = simulate(dep(prefill=four_prefills, decode=Pool("a100-sxm-80gb"), backend="trtllm"), wl)
    rows = trt.per_request()
    assert "decode_first_ms" not in rows and "decode_first" not in trt.summary["ttft_parts_ms"]
    assert rows["queue_ms"] + rows["prefill_ms"] == pytest.approx(rows["ttft_ms"], rel=1e-12)
    # streaming mode keeps no per-request rows but sums the same parts
    streamed = simulate(dep(prefill=four_prefills, decode=Pool("a100-sxm-80gb"), first_token_from="decode",
                            disagg_handoff_s=0.0), wl, streaming=True).summary
    assert streamed["ttft_parts_ms"] == res.summary["ttft_parts_ms"] and streamed["kv_handoff"] == res.summary["kv_handoff"]
    for router in ("least_outstanding", "round_robin"):
        res = simulate(dep(prefill=four_prefills, decode=Pool("a100-sxm-80gb", workers=4), first_token_from="decode",
                           disagg_handoff_s=0.0, router=router), wl)
        check_conservation(res, 4)
        four = res.per_request()["ttft_ms"]
        assert four.max() - four.min() < 1e-9
        assert res.summary["kv_handoff"]["link_wait_ms"] == {"mean": 0.0, "max": 0.0}
        assert res.summary["kv_handoff"]["transfer_ms"]["max"] == pytest.approx(xfer_ms)
        assert four.min() == pytest.approx(one[0], abs=1e-9)
    dp4, _ = _handoff_ttfts(wl, four_prefills, Pool("a100-sxm-80gb", dp=4))
    assert dp4.max() - dp4.min() < 1e-9

    parts = kv_handoff_parts(h100, 1, kv, h100, 4, kv / 4, domain_gpus=9)
    assert parts.send_s_per_token == pytest.approx(4 * parts.recv_s_per_token)
    assert parts.latency_s == pytest.approx(h100.nic_latency_us * 1e-6) and parts.link == "network"
    tp4, _ = _handoff_ttfts(wl, Pool("h100-sxm", workers=5), Pool("h100-sxm", tp=4))
    assert tp4.max() - tp4.min() < 1e-9


def test_progress_reports_about_every_percent_and_at_the_end():
    # every 1,000 completions only: a 500-request run never reported, a 150-request one neither
    for n, every in ((150, 1), (500, 5)):
        seen = []
        simulate(dep(), make_workload(num_requests=n, isl=64, osl=4, concurrency=16, seed=0),
                 progress=lambda done, total: seen.append((done, total)))
        assert seen[-1] == (n, n)
        assert [d for d, _ in seen] == list(range(every, n + 1, every))


def test_disaggregated_ttft_parts_are_the_counted_requests_means():
    """`ttft_parts_ms` is the mean of the per-request parts over the requests the summary counts
    (not the warm-up), and its parts add up to the TTFT mean the summary reports."""
    wl = make_workload(num_requests=400, input_dist="uniform:200,3000", output_dist="uniform:1,60", concurrency=24,
                       seed=7, warmup=60)
    res = simulate(dep(prefill=Pool("h100-sxm", workers=2), decode=Pool("a100-sxm-80gb", workers=2)), wl)
    t, tp = res.per_request(), res.summary["ttft_parts_ms"]
    handed = ~t["warmup"] & ~np.isnan(t["kv_handoff_ms"])  # one-token requests finish on the prefill worker
    assert 0 < handed.sum() < (~t["warmup"]).sum() and tp["requests"] == handed.sum()
    for part, col in (("queue", "queue_ms"), ("prefill", "prefill_ms"), ("kv_handoff", "kv_handoff_ms"),
                      ("kv_link_wait", "kv_link_wait_ms"), ("decode_first", "decode_first_ms"), ("ttft", "ttft_ms")):
        assert tp[part] == pytest.approx(t[col][handed].mean(), rel=1e-9), part
    assert tp["handoff_fixed"] == pytest.approx(150.0)
    assert tp["queue"] + tp["prefill"] + tp["kv_handoff"] + tp["handoff_fixed"] + tp["decode_first"] == pytest.approx(tp["ttft"])
    assert (t["decode_first_ms"][handed] > 0).all() and (t["kv_link_wait_ms"][handed] >= 0).all()


def test_router_sees_a_full_engine_busy_until_its_request_really_finishes():
    """A full decode engine may run its decode stretch ahead to the next completion, but while a
    router compares the engines' outstanding requests that completion must not count before the
    event loop reaches it: four clients on four decode workers of one seat each never wait for a
    seat (before the fix, the router saw a seat freed up to a whole decode early, and a new request
    sat behind a running one for ~7 s)."""
    dep = Deployment("llama-3.1-8b", prefill=Pool("h100-sxm"), decode=Pool("h100-sxm", workers=4, max_num_seqs=1),
                     backend="vllm", kernels="none")
    from llmsim.serving.validate import closed_loop_workload

    wl = closed_loop_workload(4, 512, 600, rounds=6, range_ratio=0.8)  # lengths uniform in [0.8 L, L]: clients desynchronise
    r = simulate(dep, wl)
    ttft = np.frombuffer(r.requests.t_first) - np.frombuffer(r.requests.arrival)
    e2e = np.frombuffer(r.requests.t_finish) - np.frombuffer(r.requests.arrival)
    assert ttft.max() < 0.1 * e2e.mean(), (ttft.max(), e2e.mean())
    # round robin ignores the load, so it does send requests to busy seats: the check can fail
    rr = simulate(Deployment(**{**dep.__dict__, "router": "round_robin"}), wl)
    rr_ttft = np.frombuffer(rr.requests.t_first) - np.frombuffer(rr.requests.arrival)
    assert rr_ttft.max() > 2 * ttft.max()
