"""Streaming mode of the serving simulator: the same trajectory as exact mode, the same summary
(percentiles within the histograms' resolution), in memory bounded by the requests in flight."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import llmsim.serving.simulate as sim
from llmsim import cli
from llmsim.errors import LlmsimError
from llmsim.serving.metrics import SLO, StreamingSummary, summarize
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.workload import Workload, load_trace, make_workload

MODEL = "llama-3.1-8b"
TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
MOONCAKE = TRACES / "mooncake_conversation.jsonl"
PCT = ("p50", "p90", "p95", "p99")


def dep(**kw) -> Deployment:
    kw.setdefault("model", MODEL)
    kw.setdefault("kernels", "none")
    return Deployment(**kw)


def mooncake(n: int, warmup: int = 0, time_scale: float = 1.0) -> Workload:
    """The first n rows of the Mooncake trace (at its own pace it overloads one H100: preemptions)."""
    if not MOONCAKE.exists():
        pytest.skip(f"trace not found: {MOONCAKE}")
    return replace(load_trace(MOONCAKE, limit=n, time_scale=time_scale), warmup=warmup)


def run_both(d: Deployment, wl: Workload, slo: SLO | None, monkeypatch) -> tuple[dict, dict, list, object]:
    """Exact and streaming summaries, plus every completion the streaming run recorded (in
    batches of 7, so that slots are reused as soon as possible)."""
    monkeypatch.setattr(sim, "_RECORD_BATCH", 7)
    seen: list[tuple] = []
    add = StreamingSummary.add

    def spy(self, *cols):
        seen.extend(zip(*cols))
        add(self, *cols)

    exact = simulate(d, wl, slo=slo)
    monkeypatch.setattr(StreamingSummary, "add", spy)
    stream = simulate(d, wl, slo=slo, streaming=True)
    return exact.summary, stream.summary, seen, exact


def assert_same(exact: dict, stream: dict) -> None:
    """Streaming summary == exact summary: exact for counts and trajectory facts, 1e-12 for sums,
    within the stated histogram resolution for percentiles."""
    res = stream["percentiles"]
    rel, abs_ms = res["relative_resolution"], res["absolute_resolution_ms"]
    assert rel <= 0.005
    assert set(stream) == set(exact) | {"percentiles"}
    for k, v in exact.items():
        if k == "simulation_wall_s":
            continue
        s = stream[k]
        if k in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"):
            assert set(s) == set(v)
            for q, x in v.items():
                if x is None:
                    assert s[q] is None, (k, q)
                elif q in PCT:
                    assert abs(s[q] - x) <= rel * abs(x) + abs_ms + 1e-12, (k, q, s[q], x)
                elif q == "mean":
                    assert s[q] == pytest.approx(x, rel=1e-12, abs=1e-12), (k, q)
                else:  # min, max: the same floats
                    assert s[q] == x, (k, q)
        elif isinstance(v, float):
            assert s == pytest.approx(v, rel=1e-12, abs=1e-15), k
        elif k == "closed_loop_first_round" and v is not None:  # sums in another order: to rounding
            assert set(s) == set(v) and s["requests"] == v["requests"]
            for q, x in v.items():
                assert s[q] == pytest.approx(x, rel=1e-12, abs=1e-12), (k, q)
        else:  # ints, None, strings, the ITL stats and the KV timeline (same trajectory: identical)
            assert s == v, k


def assert_same_completions(seen: list, res) -> None:
    """Every request completed in streaming mode with the same times and tokens as in exact mode."""
    r = res.requests
    exact = np.stack([np.frombuffer(r.arrival), np.frombuffer(r.t_first), np.frombuffer(r.t_finish), np.frombuffer(r.t_sched),
                      np.frombuffer(r.inp, dtype=np.int64), np.frombuffer(r.out, dtype=np.int64)], axis=1)
    got = np.array(seen, dtype=np.float64)
    assert got.shape == exact.shape
    got, exact = (x[np.lexsort(x.T[::-1])] for x in (got, exact))
    assert np.array_equal(got, exact)


def _open(n=1500, warmup=0):
    return make_workload(num_requests=n, input_dist="lognormal:900,600", output_dist="uniform:1,300", rate=9.0, cv=1.5,
                         seed=3, warmup=warmup, max_len=8192)


CASES = {
    "open_poisson": lambda: (dep(), make_workload(num_requests=1500, input_dist="uniform:16,3000", output_dist="uniform:1,400", rate=8.0, seed=1)),
    "open_gamma_warmup": lambda: (dep(), _open(warmup=200)),
    "open_whole_prefill": lambda: (dep(chunked_prefill=False), _open(warmup=50)),
    "closed_jitter_warmup": lambda: (dep(), make_workload(num_requests=1200, input_dist="uniform:100,2000", output_dist="uniform:2,300",
                                                          concurrency=24, client_jitter_s=0.005, seed=4, warmup=100)),
    "offline_ties_warmup": lambda: (dep(), make_workload(num_requests=256, isl=512, osl=64, concurrency=256, seed=0, warmup=100)),
    "preempt_recompute": lambda: (dep(memory_fraction=0.225), make_workload(num_requests=300, isl=900, osl=600, concurrency=40, seed=2, warmup=20)),
    "preempt_swap": lambda: (dep(memory_fraction=0.225, preemption="swap"),
                             make_workload(num_requests=300, input_dist="uniform:400,1200", output_dist="uniform:200,800", concurrency=40, seed=2)),
    "prefix_cache_mooncake": lambda: (dep(), mooncake(600, warmup=30)),
    "prefix_router_3_replicas": lambda: (dep(pool=Pool("h100-sxm", workers=3), router="prefix"), mooncake(900, warmup=100)),
    "round_robin_2_replicas": lambda: (dep(pool=Pool("h100-sxm", workers=2), router="round_robin"), _open(warmup=10)),
    "disaggregated": lambda: (dep(prefill=Pool("h100-sxm"), decode=Pool("h100-sxm"), max_num_batched_tokens=512), _open(warmup=40)),
    "disaggregated_closed": lambda: (dep(prefill=Pool("h100-sxm", workers=2), decode=Pool("h100-sxm")),
                                     make_workload(num_requests=600, isl=1500, osl=100, concurrency=32, seed=5, warmup=50)),
    # SGLang's attention-DP prefill: a queue per rank, each request on a random rank (slots recycle)
    "sglang_dp_prefill_rank_queues": lambda: (dep(model="gpt-oss-20b", backend="sglang", max_num_batched_tokens=4096,
                                                  prefill=Pool("h100-sxm", dp=4, ep=4, workers=2), decode=Pool("h100-sxm", tp=2, ep=2)),
                                              mooncake(600, warmup=30)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_streaming_matches_exact(case, monkeypatch):
    d, wl = CASES[case]()
    slo = SLO(ttft_ms=400.0, tpot_ms=40.0)
    exact, stream, seen, res = run_both(d, wl, slo, monkeypatch)
    assert exact["num_completed"] == len(wl)
    assert_same(exact, stream)
    assert_same_completions(seen, res)


def test_streaming_trajectory_features_are_exercised():
    # the cases above do what they claim: preemptions, prefix hits, warm-up, ties at the warm-up cut
    d, wl = CASES["preempt_recompute"]()
    assert simulate(d, wl, streaming=True).summary["preemptions"] > 0
    d, wl = CASES["prefix_router_3_replicas"]()
    s = simulate(d, wl, streaming=True).summary
    assert s["prefix_cache_hit_rate"] > 0.01 and s["preemptions"] > 0
    d, wl = CASES["offline_ties_warmup"]()
    res = simulate(d, wl)
    fin = np.sort(np.frombuffer(res.requests.t_finish))
    assert fin[wl.warmup - 1] == fin[wl.warmup]  # the warm-up boundary falls inside a group of equal finish times


def test_streaming_slots_stay_bounded():
    # a stable open loop: only requests in flight (and a batch of completed ones whose metrics
    # are taken together) hold slots, however many requests there are
    slots = {}
    for n in (5_000, 50_000):
        wl = make_workload(num_requests=n, isl=200, osl=20, rate=40.0, seed=0, warmup=100)
        res = simulate(dep(), wl, streaming=True, keep_itl=False)
        r = res.requests
        assert res.summary["num_completed"] == n and res.summary["num_requests"] == n - 100
        assert len(r.arrival) == len(r.ver) == len(r.t_sched) == r.n and r.in_flight == 0
        slots[n] = r.n
    assert slots[50_000] == slots[5_000] <= 2 * (sim._RECORD_BATCH + 64), slots


def test_recycled_slots_keep_prefix_hashes_per_slot(monkeypatch):
    monkeypatch.setattr(sim, "_RECORD_BATCH", 16)
    wl = mooncake(600, time_scale=10.0)
    res = simulate(dep(), wl, streaming=True)
    r = res.requests
    assert res.summary["prefix_cache_hit_rate"] > 0.01
    assert r.hash_ids is not None and len(r.hash_ids) == r.n <= 64
    assert all(h is None for h in r.hash_ids)  # released with their slots


def test_streaming_per_request_is_a_clear_error():
    wl = make_workload(num_requests=20, isl=64, osl=8, rate=5.0, seed=0)
    res = simulate(dep(), wl, streaming=True)
    with pytest.raises(LlmsimError, match="exact mode"):
        res.per_request()


def test_streaming_summary_unit_matches_summarize():
    # StreamingSummary alone, with completions added out of time order, against summarize
    rng = np.random.default_rng(0)
    n = 10_000
    arr = np.sort(rng.uniform(0, 100, n))
    sched = arr + rng.exponential(0.05, n) * (rng.random(n) < 0.7)
    ft = sched + rng.exponential(0.2, n)
    out = rng.integers(1, 300, n)
    inp = rng.integers(1, 4000, n)
    fin = ft + (out - 1) * rng.uniform(0.01, 0.05, n)
    fin = np.ceil(fin * 10) / 10  # many ties
    slo = SLO(ttft_ms=250.0, tpot_ms=30.0)
    for closed, warm in ((False, 0), (False, 1234), (True, 1234), (True, n - 1)):
        exact = summarize(arr, ft, fin, inp, out, first_scheduled_s=sched, warmup=warm, slo=slo, closed_loop=closed, num_gpus=2)
        s = StreamingSummary(warm, slo, closed_loop=closed)
        order = np.argsort(fin, kind="stable")
        # reported in blocks, out of order inside a block; `now` trails the block's earliest finish
        for b in range(0, n, 50):
            idx = order[b:b + 50]
            s.now = fin[idx[0]]
            idx = idx[::-1] if b % 100 else idx
            s.add(arr[idx], ft[idx], fin[idx], sched[idx], inp[idx], out[idx])
        assert_same(exact, s.summary(n, num_gpus=2))


def test_streaming_summary_edge_cases():
    s = StreamingSummary(warmup=5)
    empty = s.summary(3)
    assert empty["num_requests"] == 0 and empty["num_incomplete"] == 3 and empty["ttft_ms"]["p50"] is None
    # fewer completions than the warm-up: the last one counts, as in summarize
    s = StreamingSummary(warmup=5, closed_loop=True)
    for i in range(3):
        s.add([0.0], [1.0 + i], [2.0 + i], [0.5], [10], [5])
    r = s.summary(4)
    exact = summarize(np.zeros(4), [1.0, 2.0, 3.0, math.nan], [2.0, 3.0, 4.0, math.nan], [10] * 4, [5] * 4,
                      first_scheduled_s=np.full(4, 0.5), warmup=2, closed_loop=True)
    assert_same(exact, r)
    with pytest.raises(LlmsimError):
        StreamingSummary(warmup=-1)


def test_cli_streaming_json_and_output_conflict(capsys, tmp_path):
    argv = ["serve", "--model", MODEL, "--kernels", "none", "--num-requests", "300", "--rate", "4", "--isl", "512", "--osl", "64", "--json"]
    cli.main(argv)
    exact = json.loads(capsys.readouterr().out)
    cli.main([*argv, "--streaming"])
    stream = json.loads(capsys.readouterr().out)
    assert_same(exact, stream)
    with pytest.raises(SystemExit) as ei:
        cli.main([*argv, "--streaming", "-o", str(tmp_path / "r.csv")])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "per-request" in err and "--streaming" in err
    assert not (tmp_path / "r.csv").exists()


def test_cli_streams_large_runs_unless_per_request_output(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "STREAMING_FROM", 200)
    argv = ["serve", "--model", MODEL, "--kernels", "none", "--num-requests", "200", "--rate", "4", "--isl", "256", "--osl", "16", "--json"]
    cli.main(argv)
    assert "percentiles" in json.loads(capsys.readouterr().out)  # streaming
    cli.main([*argv, "-o", str(tmp_path / "r.csv")])
    assert "percentiles" not in json.loads(capsys.readouterr().out)  # exact, to write the rows
    assert (tmp_path / "r.csv").exists()
    cli.main([*argv, "--exact"])
    assert "percentiles" not in json.loads(capsys.readouterr().out)


def test_open_loop_arrivals_read_in_chunks(monkeypatch):
    # arrival times are turned into Python floats a chunk at a time: chunk boundaries change nothing
    d, wl = CASES["open_gamma_warmup"]()
    whole = simulate(d, wl)
    monkeypatch.setattr(sim, "_ARRIVAL_CHUNK", 97)
    chunked = simulate(d, wl)
    for k in ("arrival", "t_first", "t_finish", "t_sched"):
        assert np.array_equal(np.frombuffer(getattr(whole.requests, k)), np.frombuffer(getattr(chunked.requests, k)))
    assert_same(whole.summary, simulate(d, wl, streaming=True).summary)
