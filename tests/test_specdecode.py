"""Speculative decoding: the verify batch, the per-token step time, the simulated TPOT and bad input."""

from __future__ import annotations

import pytest

from llmsim.cost.ops import Batch, build_ops
from llmsim.errors import LlmsimError
from llmsim.layout import Parallel, Precision
from llmsim.models import get_model
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.specdecode import DEEPSEEK_MTP_ACCEPTANCE, SpecDecoding, chain_acceptance, draft_kv_tokens
from llmsim.serving.workload import make_workload


def test_acceptance_prior_reproduces_its_published_anchors():
    # DeepSeek-V3 report: 85-90% for the first draft; Nebius: mean acceptance length 3.20 for 7 drafts
    assert chain_acceptance(DEEPSEEK_MTP_ACCEPTANCE, 1) == pytest.approx(0.875)
    assert 1.0 + chain_acceptance(DEEPSEEK_MTP_ACCEPTANCE, 7) == pytest.approx(3.20, abs=0.01)
    # geometric chain with a constant rate: a(1 - a^k) / (1 - a)
    assert chain_acceptance([0.5], 3) == pytest.approx(0.5 + 0.25 + 0.125)
    assert chain_acceptance([1.0], 4) == 4.0


def test_verify_batch_reads_each_kv_once_and_multiplies_the_queries():
    m = get_model("llama-3.1-8b")
    par, prec = Parallel(1, 1, 1, 1), Precision.make("bf16")
    one = {o.name: o for o in build_ops(m, par, prec, Batch([], [2048] * 8))}
    four = {o.name: o for o in build_ops(m, par, prec, Batch([], [2048] * 8, 4))}
    kv_bytes = 2048 * 8 * 2 * m.num_kv_heads * m.head_dim * 2  # context x sequences x (K, V) x bf16
    a1, a4 = one["attn_decode"], four["attn_decode"]
    assert a4.flops == pytest.approx(4 * a1.flops)
    # the KV part is read once; only the queries' and outputs' bytes grow
    assert a1.bytes > kv_bytes and a4.bytes - kv_bytes == pytest.approx(4 * (a1.bytes - kv_bytes))
    assert four["lm_head"].flops == pytest.approx(4 * one["lm_head"].flops)
    assert four["qkv_proj"].shape[0] == 4 * one["qkv_proj"].shape[0]


def _step_time(spec: SpecDecoding | None):
    from llmsim.serving.backends import get_backend

    m = get_model("deepseek-r1")
    be = get_backend("trtllm")
    from llmsim.hardware.catalog import get_gpu

    gpu = get_gpu("b200")
    par = Parallel(8, 1, 1, 8).validate(m)
    k, e = (spec.num_draft_tokens, spec.tokens_per_step) if spec else (0, 1.0)
    return be.step_time(m, gpu, par, Precision.make("fp8"), None, spec_draft_tokens=k, spec_tokens_per_step=e)


def test_decode_step_is_the_verify_step_per_token_it_yields():
    plain = _step_time(None)
    zero = _step_time(SpecDecoding("mtp", 3, 0.0))
    some = _step_time(SpecDecoding("mtp", 3, 1.5))
    n, ctx = 32, 32 * 2000
    # nothing accepted: a 4-token verify plus 3 draft passes costs more than one plain step
    assert zero.decode_step(n, ctx) > 1.1 * plain.decode_step(n, ctx)
    # the per-tick time is the step's / (1 + accepted), exactly
    assert some.decode_step(n, ctx) == pytest.approx(zero.decode_step(n, ctx) / 2.5)
    # an iteration with prefill work is charged in full: its decodes' verify and drafts included
    assert some.iteration([(512, 0)], n, ctx, n) == pytest.approx(zero.iteration([(512, 0)], n, ctx, n))
    assert some.iteration([(512, 0)], n, ctx, n) > plain.iteration([(512, 0)], n, ctx, n)


def test_simulated_tpot_falls_with_acceptance_and_every_token_is_delivered():
    wl = make_workload(concurrency=8, isl=512, osl=256, num_requests=32, seed=1)

    def run(sd):
        dep = Deployment("deepseek-r1", Pool("b200", tp=8, ep=8), backend="trtllm", weight_dtype="fp8", spec_decoding=sd)
        return simulate(dep, wl)

    plain, zero, high = run(None), run(SpecDecoding("mtp", 3, 0.0)), run(SpecDecoding("mtp", 3, 2.0))
    for r in (plain, zero, high):
        s = r.summary
        assert s["num_completed"] == 32 and s["total_output_tokens"] == 32 * 256
    assert high.summary["spec_decoding"] == {"method": "mtp", "num_draft_tokens": 3, "accepted_per_step": 2.0, "tokens_per_step": 3.0}
    assert plain.summary["spec_decoding"] is None
    t0, t2 = zero.summary["tpot_ms"]["mean"], high.summary["tpot_ms"]["mean"]
    # 3 tokens per step instead of 1: TPOT about a third, less where prompts' iterations interleave
    assert 2.4 < t0 / t2 < 3.05
    assert t0 > plain.summary["tpot_ms"]["mean"] > t2
    # deterministic
    again = run(SpecDecoding("mtp", 3, 2.0)).summary
    assert {k: v for k, v in again.items() if k != "simulation_wall_s"} == {k: v for k, v in high.summary.items() if k != "simulation_wall_s"}


def test_itl_is_one_gap_per_verify_step_as_benchmark_clients_record_it():
    # a verify step's accepted tokens stream together: benchmark_serving records one ITL per chunk,
    # so the ITL is the step's time, whatever the acceptance, while TPOT is per token
    wl = make_workload(concurrency=8, isl=512, osl=256, num_requests=32, seed=1)

    def run(sd):
        dep = Deployment("deepseek-r1", Pool("b200", tp=8, ep=8), backend="trtllm", weight_dtype="fp8", spec_decoding=sd)
        return simulate(dep, wl).summary

    plain, zero, high = run(None), run(SpecDecoding("mtp", 3, 0.0)), run(SpecDecoding("mtp", 3, 2.0))
    # one token per chunk: ITL and TPOT agree (no speculation, or nothing accepted)
    for s in (plain, zero):
        assert s["itl_ms"]["mean"] == pytest.approx(s["tpot_ms"]["mean"], rel=0.05)
    # three tokens per chunk: the mean gap is about three token times; the median gap is a verify step
    assert 2.6 < high["itl_ms"]["mean"] / high["tpot_ms"]["mean"] < 3.1
    assert high["itl_ms"]["p50"] == pytest.approx(zero["itl_ms"]["p50"], rel=0.1)


def test_draft_head_takes_kv_room():
    # a 61-layer pool: the draft layer's KV is one layer more per token, its weights one mean layer's
    assert draft_kv_tokens(1_000_000, 61e3, 1e3, 0.0, 1) == int(1_000_000 * 61 / 62)
    assert draft_kv_tokens(1_000_000, 61e3, 1e3, 62e6, 2) == int(1_000_000 * 61 / 62) - 2000
    # in a simulation: the pool shrinks by about a 62nd and the weights' share
    wl = make_workload(concurrency=2, isl=128, osl=16, num_requests=4)
    dep = Deployment("deepseek-r1", Pool("b200", tp=8, ep=8), backend="trtllm", weight_dtype="fp8")
    plain = simulate(dep, wl).summary["kv_capacity_tokens_per_engine"]
    mtp = simulate(Deployment("deepseek-r1", Pool("b200", tp=8, ep=8), backend="trtllm", weight_dtype="fp8",
                              spec_decoding=SpecDecoding("mtp", 1, 0.8)), wl).summary["kv_capacity_tokens_per_engine"]
    assert 0.90 * plain < mtp < plain * 61 / 62


@pytest.mark.parametrize("kw, msg", [
    (dict(method="medusa"), "unknown speculative-decoding method"),
    (dict(num_draft_tokens=0), "num_draft_tokens"),
    (dict(num_draft_tokens=2, accepted_per_step=2.5), "accepted_per_step"),
    (dict(accepted_per_step=-0.1), "accepted_per_step"),
])
def test_bad_speculative_settings_are_clear_errors(kw, msg):
    with pytest.raises(LlmsimError, match=msg):
        SpecDecoding(**kw)


def test_mtp_needs_a_model_with_an_mtp_module_and_no_pipeline():
    wl = make_workload(concurrency=2, isl=128, osl=16, num_requests=4)
    with pytest.raises(LlmsimError, match="no multi-token-prediction module"):
        simulate(Deployment("llama-3.1-8b", Pool("h100-sxm"), spec_decoding=SpecDecoding("mtp", 2, 1.0)), wl)
    r = simulate(Deployment("llama-3.1-8b", Pool("h100-sxm"), spec_decoding=SpecDecoding("eagle", 2, 1.0)), wl)
    assert r.summary["num_requests"] == 4
    with pytest.raises(LlmsimError, match="pipeline parallelism"):
        simulate(Deployment("llama-3.1-8b", Pool("h100-sxm", pp=2), spec_decoding=SpecDecoding("eagle", 2, 1.0)), wl)


def test_cli_spec_decoding_flags(capsys):
    import json

    from llmsim.cli import main

    base = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--concurrency", "2", "--isl", "128", "--osl", "16",
            "--num-requests", "4"]
    for extra, msg in ((["--spec-decoding", "eagle", "--num-draft-tokens", "2"], "--accepted-per-step"),
                       (["--accepted-per-step", "1"], "need --spec-decoding"),
                       (["--spec-decoding", "mtp", "--num-draft-tokens", "2", "--accepted-per-step", "1"], "multi-token-prediction")):
        with pytest.raises(SystemExit) as ei:
            main(base + extra)
        cap = capsys.readouterr()
        assert ei.value.code != 0 and msg in cap.out + cap.err and "Traceback" not in cap.out + cap.err
    main(base + ["--spec-decoding", "eagle", "--num-draft-tokens", "2", "--accepted-per-step", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["spec_decoding"]["tokens_per_step"] == 2.0 and out["num_completed"] == 4
