"""Serving summary metrics audit: per-pool energy, ITL without the warm-up, per-token energy / cost
over the throughput's window, and the per-DP-rank default max_num_seqs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmsim.errors import LlmsimError
from llmsim.hardware.catalog import get_gpu
from llmsim.serving.metrics import GpuGroup, ItlHistogram, summarize
from llmsim.serving.simulate import Deployment, Pool, busy_fraction_between, simulate
from llmsim.serving.workload import Workload, make_workload

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
    run = float(np.nanmax(pr["finish_s"]) - pr["arrival_s"].min())  # engine_busy_fraction's window: the whole run
    counted = ~np.asarray(pr["warmup"], dtype=bool)
    start, end = float(pr["arrival_s"][counted].min()), float(np.nanmax(pr["finish_s"]))  # the counted window (open loop)
    assert s["duration_s"] == pytest.approx(end - start, rel=1e-12)
    watts = busy_gpus = run_busy_gpus = 0.0
    for pool, role in ((prefill, "prefill"), (decode, "decode")):
        g = get_gpu(pool.gpu)
        engines = [e for e in res.engines if e.cfg.role == role]
        run_busy_gpus += pool.gpus_per_worker * pool.workers * sum(e.busy_s for e in engines) / (len(engines) * run)
        busy = busy_fraction_between(engines, start, end)
        watts += pool.gpus_per_worker * pool.workers * (g.idle_power_w + (g.tdp_w - g.idle_power_w) * busy)
        busy_gpus += pool.gpus_per_worker * pool.workers * busy
    assert s["num_gpus"] == 3
    assert s["energy_j"] == pytest.approx(watts * s["duration_s"], rel=1e-9)
    assert s["gpu_avg_power_w"] == pytest.approx(watts / 3, rel=1e-9)
    assert s["busy_fraction"] == pytest.approx(busy_gpus / 3, rel=1e-9)  # GPU-weighted, over the counted window
    assert s["engine_busy_fraction"] == pytest.approx(run_busy_gpus / 3, rel=1e-9)  # over the whole run
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


def test_energy_after_a_warm_up_is_the_counted_windows():
    # 10 warm-up requests, then 1,000 s of silence, then 50 requests: the counted window is the
    # last 10 s, busy throughout. Its energy per token is that of the 50 requests alone -- not the
    # whole run's busy share (1%) applied to the counted window (audit 2026-11-24, W1)
    rows = [(i * 0.1, 500, 100) for i in range(10)] + [(1000 + i * 0.2, 500, 100) for i in range(50)]
    both = Workload(np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), np.array([r[0] for r in rows]), warmup=10)
    alone = Workload(np.full(50, 500), np.full(50, 100), np.array([r[0] for r in rows[10:]]))
    for streaming in (False, True):
        a = simulate(dep(pool=Pool("h100-sxm")), both, streaming=streaming).summary
        b = simulate(dep(pool=Pool("h100-sxm")), alone, streaming=streaming).summary
        assert a["num_requests"] == 50 and a["duration_s"] == pytest.approx(b["duration_s"], rel=1e-9)
        assert a["engine_busy_fraction"] < 0.05 < 0.95 < a["busy_fraction"]
        assert a["energy_j_per_output_token"] == pytest.approx(b["energy_j_per_output_token"], rel=0.01)
        assert a["gpu_avg_power_w"] > 0.9 * get_gpu("h100-sxm").tdp_w


# ---------------------------------------------------------------------------- workload / trace audit (2026-11-24)


@pytest.mark.parametrize("name, text, match", [
    # a count past int64 wrapped negative in input + output and the simulation never ended
    ("ovf.csv", "arrival_s,input_tokens,output_tokens\n0,10,5\n1,9000000000000000000,9000000000000000000\n",
     r"line 3: input_tokens is 9,000,000,000,000,000,000 tokens, more than any model's context"),
    ("huge.csv", "arrival_s,input_tokens,output_tokens\n0,10,5\n1,100,99999999999999999999\n", r"line 3: output_tokens is"),
    ("mc.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 5}\n'
                 '{"timestamp": 1, "input_length": 99999999999999999999, "output_length": 5}\n', r"line 2: input_length is"),
    ("dup.csv", "arrival_s,input_tokens,output_tokens,input_tokens\n0,10,5,7\n", r"line 1: column\(s\) input_tokens appear more than once"),
    ("miss.csv", "arrival_s,input_tokens\n0,10\n", r"line 1: .* llmsim CSV trace but lacks column\(s\) output_tokens"),
    ("miss.jsonl", '{"timestamp": 0, "input_length": 10}\n', r"line 1: .* Mooncake JSONL trace but lack output_length"),
])
def test_bad_trace_rows_name_file_and_line(tmp_path, name, text, match):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(LlmsimError, match=match):
        make_workload(trace=f)


def test_too_many_requests_refused_before_allocating():
    with pytest.raises(LlmsimError, match="more than one simulation handles"):
        make_workload(num_requests=10**10, rate=1e6, isl=1, osl=1)
    with pytest.raises(LlmsimError, match="osl = 9,223,372,036,854,775,807 tokens is more than any model's context"):
        make_workload(num_requests=2, concurrency=1, isl=100, osl=2**63 - 1)


def test_context_error_says_how_many_requests_and_which():
    wl = make_workload(num_requests=5, concurrency=1, isl=100, osl=10)
    wl.input_len[3] = 200_000
    with pytest.raises(LlmsimError, match=r"1 of the 5 requests exceed the 131,072-token context .* request 3 \(200,000 \+ 10 tokens\)"):
        simulate(dep(pool=Pool("h100-sxm")), wl)


def test_disaggregated_summary_reports_each_pools_settings():
    wl = make_workload(num_requests=40, isl=200, osl=50, concurrency=20, seed=0)
    s = simulate(dep(prefill=Pool("h100-sxm"), decode=Pool("a100-sxm-80gb")), wl).summary
    pre, dec = s["pools"]
    assert (pre["role"], pre["gpu"], dec["role"], dec["gpu"]) == ("prefill", "h100-sxm", "decode", "a100-sxm-80gb")
    # vLLM's default max_num_seqs: 1024 on an H100, 256 on an A100
    assert (pre["max_num_seqs"], dec["max_num_seqs"]) == (1024, 256) and s["max_num_seqs"] == 1024
    assert dec["kv_capacity_tokens_per_engine"] == s["kv_capacity_tokens_per_engine"]
    assert s["workload"]["num_requests"] == 40 and s["workload"]["concurrency"] == 20
    assert "pools" not in simulate(dep(pool=Pool("h100-sxm")), wl).summary


def test_kv_handoff_over_nvlink_only_when_every_worker_shares_the_domain():
    from llmsim.serving.simulate import kv_handoff_s

    h100 = get_gpu("h100-sxm")
    pair = kv_handoff_s(8192, h100, 4, 1e5, h100, 4, 1e5)  # one 4-GPU prefill and one 4-GPU decode worker: one node
    assert pair == pytest.approx(h100.nvlink_latency_us * 1e-6 + 8192 * 1e5 / (h100.nvlink_bandwidth_gbps * 1e9))
    # two prefill workers and a decode worker (12 GPUs) span two 8-GPU nodes: over the NICs
    spread = kv_handoff_s(8192, h100, 4, 1e5, h100, 4, 1e5, domain_gpus=12)
    assert spread == pytest.approx(h100.nic_latency_us * 1e-6 + 8192 * 1e5 / (h100.nic_bandwidth_gbps * 1e9))
    wl = make_workload(num_requests=8, isl=4096, osl=4, concurrency=1, seed=0)
    ttft = {n: simulate(dep(model="llama-3.1-70b", prefill=Pool("h100-sxm", 4, workers=n), decode=Pool("h100-sxm", 4)), wl)
            .summary["ttft_ms"]["mean"] for n in (1, 2)}
    # one request at a time: the same prefill, a slower hand-off (TTFT includes it: the first token comes from decode)
    kv = 80 * 2 * 2 * 128 * 2  # Llama-3.1-70B on tp4: 2 of 8 KV heads per GPU, bf16
    extra_s = kv_handoff_s(4097, h100, 4, kv, h100, 4, kv, domain_gpus=12) - kv_handoff_s(4097, h100, 4, kv, h100, 4, kv)
    assert (ttft[2] - ttft[1]) * 1e-3 == pytest.approx(extra_s, rel=0.05)


def test_prefix_router_needs_prefix_caching_and_hash_ids(tmp_path):
    from llmsim.serving.simulate import check_unused_settings

    wl = make_workload(num_requests=4, isl=100, osl=4, concurrency=2)
    with pytest.raises(LlmsimError, match="prefix caching is off"):
        check_unused_settings(dep(pool=Pool("h100-sxm", workers=2), router="prefix", prefix_caching=False), wl)
    with pytest.raises(LlmsimError, match="this workload has none"):
        check_unused_settings(dep(pool=Pool("h100-sxm", workers=2), router="prefix"), wl)
    f = tmp_path / "t.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n')
    check_unused_settings(dep(pool=Pool("h100-sxm", workers=2), router="prefix"), make_workload(trace=f))


def test_serve_cli_checks_output_suffix_and_names_the_pool(capsys, tmp_path):
    from llmsim.cli import main

    def err(*argv):
        with pytest.raises(SystemExit) as ei:
            main(["serve", "--concurrency", "2", "--num-requests", "4", *argv])
        return ei.value.code, capsys.readouterr().err

    code, text = err("-o", str(tmp_path / "x.txt"))
    assert code == 2 and "is written as CSV or PARQUET" in " ".join(text.split())
    code, text = err("--prefill-tp", "3")
    assert code == 2 and "the prefill pool (--prefill-* options): tp=3 does not divide" in " ".join(text.split())
    code, text = err("--concurrency", "0")
    assert "--concurrency must be an integer" in text
    main(["serve", "--trace", "../shared/data/traces/azure2023_conv.csv", "--num-requests", "50", "--time-scale", "0.5", "--json"])
    import json

    d = json.loads(capsys.readouterr().out)
    assert "inter-arrival times x0.5" in d["workload"]["name"]


def test_any_pool_option_makes_the_deployment_disaggregated_even_at_its_default(capsys):
    import json

    from llmsim.cli import main

    main(["serve", "--gpu", "h200", "--prefill-tp", "1", "--decode-tp", "1", "--concurrency", "2", "--num-requests", "4", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["num_gpus"] == 2 and [p["role"] for p in d["pools"]] == ["prefill", "decode"]
    with pytest.raises(SystemExit):
        main(["serve", "--tp", "1", "--prefill-tp", "2", "--concurrency", "2", "--num-requests", "4"])
    assert "make this deployment disaggregated" in " ".join(capsys.readouterr().err.split())
    # flag names already written as flags are not prefixed again ("----isl")
    with pytest.raises(SystemExit):
        main(["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:1", "--rate", "1"])
    err = capsys.readouterr().err
    assert "give --isl, --input-dist or a --trace" in err and "----" not in err


# ---------------------------------------------------------------------------- Python API audit (2026-11-24)


def test_numpy_integers_are_taken_as_python_ints():
    # an int16 tp overflowed in the KV-token products (OverflowError) and an int32 tp in estimate's byte counts
    from llmsim import estimate

    wl = make_workload(num_requests=30, isl=256, osl=8, rate=4)
    base = simulate(dep(pool=Pool("h100-sxm", tp=2, dp=2)), wl).summary
    for T in (np.int8, np.uint8, np.int16, np.int32):
        s = simulate(dep(pool=Pool("h100-sxm", tp=T(2), dp=T(2)), max_num_seqs=T(100)), wl).summary
        assert type(Pool(tp=T(2)).tp) is int
        assert s["kv_capacity_tokens_per_engine"] == base["kv_capacity_tokens_per_engine"]
        assert s["ttft_ms"]["mean"] == pytest.approx(simulate(dep(pool=Pool("h100-sxm", tp=2, dp=2), max_num_seqs=100), wl).summary["ttft_ms"]["mean"])
    a = estimate("llama-3.1-405b", "h200-sxm", tp=8, batch=4096, isl=16000, osl=100, kernels="none").to_dict(explain=True)
    b = estimate("llama-3.1-405b", "h200-sxm", tp=np.int32(8), batch=4096, isl=16000, osl=100, kernels="none").to_dict(explain=True)
    assert a["prefill_ops"] == b["prefill_ops"] and a["memory"] == b["memory"]
    import json

    assert json.loads(json.dumps(b))["tp"] == 8  # numpy degrees come back as plain ints


def test_api_type_errors_are_llmsim_errors(tmp_path):
    from llmsim import estimate
    from llmsim.serving.metrics import write_per_request

    wl = make_workload(num_requests=4, isl=64, osl=4, concurrency=2)
    for bad, match in ((dep(pool="h100"), "Deployment.pool must be a Pool"), (dep(prefill="h100", decode=Pool()), "Deployment.prefill must be a Pool")):
        with pytest.raises(LlmsimError, match=match):
            simulate(bad, wl)
    with pytest.raises(LlmsimError, match="simulate needs a Workload"):
        simulate(dep(), [1, 2])
    with pytest.raises(LlmsimError, match="simulate needs a Deployment"):
        simulate(None, wl)
    with pytest.raises(LlmsimError, match="kernels must be"):
        estimate("llama-3.1-8b", "h100-sxm", kernels=3)
    with pytest.raises(LlmsimError, match="cost_model must be a CostModel"):
        estimate("llama-3.1-8b", "h100-sxm", cost_model="x")
    with pytest.raises(LlmsimError, match="written to a file path"):
        write_per_request(simulate(dep(), wl).per_request(), 3)
    with pytest.raises(LlmsimError, match="lengths_from must be a path"):
        make_workload(num_requests=4, lengths_from=3, concurrency=1)
    for h, match in ((5, "must be a list"), ([["a"]] * 2, r"hash_ids\[0\] must be a 1-D array of integers"),
                     ([None, [1]], r"hash_ids\[0\]"), ([np.ones((2, 2), int)] * 2, r"hash_ids\[0\]")):
        with pytest.raises(LlmsimError, match=match):
            Workload(np.array([64, 64]), np.array([4, 4]), np.array([0.0, 1.0]), hash_ids=h)
    w = Workload(np.array([64, 64]), np.array([4, 4]), np.array([0.0, 1.0]), hash_ids=[[1, 2], []])
    assert [list(x) for x in w.hash_ids] == [[1, 2], []]


def test_a_gpu_spec_takes_the_deployments_price():
    from llmsim import estimate

    wl = make_workload(num_requests=40, isl=256, osl=16, rate=4)
    by_name = simulate(dep(pool=Pool("h100-sxm"), price_per_hour_usd=10.0), wl).summary
    by_spec = simulate(dep(pool=Pool(get_gpu("h100-sxm")), price_per_hour_usd=10.0), wl).summary
    assert by_spec["cost_usd"] == pytest.approx(by_name["cost_usd"]) and by_name["cost_usd"] == pytest.approx(10.0 * by_name["duration_s"] / 3600)
    e1 = estimate("llama-3.1-8b", get_gpu("h100-sxm"), price_per_hour_usd=10.0).to_dict()
    e2 = estimate("llama-3.1-8b", "h100-sxm", price_per_hour_usd=10.0).to_dict()
    assert e1 == e2


def test_energy_does_not_depend_on_when_the_arrivals_start():
    # the busy time between samples is packed against the later one: an idle start stays idle
    w = lambda shift: Workload(np.array([20000, 100, 100]), np.array([2, 40, 2]), np.array([0.0, 30.0, 60.0]) + shift)  # noqa: E731
    runs = [simulate(dep(model="llama-3.1-70b", pool=Pool("h100-sxm", tp=8)), w(shift)).summary for shift in (0, 5, 1000)]
    for key in ("busy_fraction", "engine_busy_fraction", "energy_j"):
        assert [r[key] for r in runs] == pytest.approx([runs[0][key]] * 3, rel=1e-9)
    assert runs[0]["busy_fraction"] < 0.2  # mostly idle between the three requests


def test_more_api_inputs_are_checked():
    from llmsim import estimate
    from llmsim.serving.simulate import check_unused_settings

    with pytest.raises(LlmsimError, match=r"arrival_s must be >= 0"):
        Workload(np.array([10, 10]), np.array([2, 2]), np.array([-100.0, 1.0]))
    with pytest.raises(LlmsimError, match="a GPU is a catalog name"):
        get_gpu(3)
    with pytest.raises(LlmsimError, match="memory_fraction must be in"):
        estimate("llama-3.1-8b", "h100-sxm", memory_fraction="0.9")
    wl = make_workload(num_requests=4, isl=64, osl=4, concurrency=2)
    with pytest.raises(LlmsimError, match="streaming"):
        simulate(dep(), wl, streaming="no")
    # a fixed prefill time cannot act where kernel tables time the GPU: refused, not ignored
    with pytest.raises(LlmsimError, match="prefill_layer_s applies to GPUs timed by the roofline"):
        check_unused_settings(Deployment(model=MODEL, pool=Pool("h100-sxm"), prefill_layer_s=1e-3, kernels="auto"), wl)
    check_unused_settings(Deployment(model=MODEL, pool=Pool("h100-sxm"), prefill_layer_s=1e-3, kernels="none"), wl)
