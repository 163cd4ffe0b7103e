"""`llmsim validate silicon`: row mapping, skip reasons, report shape (a handful of rows, fast)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from llmsim.cli import main
from llmsim.errors import LlmsimError
from llmsim.serving.validate import (
    SiliconReport,
    build_deployment,
    closed_loop_workload,
    plan_row,
    plan_rows,
    read_silicon_csv,
    reason_class,
    resolve_model,
    validate_silicon,
)

SILICON = Path(__file__).resolve().parents[2] / "shared" / "data" / "silicon" / "aiconfigurator_silicon_sample.csv"

COLUMNS = [
    "id", "silicon_data_source", "backend", "backend_version", "model_path", "system", "precision", "mode", "isl", "osl",
    "gemm_quant_mode", "moe_quant_mode", "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size",
    "prefill_batch_size", "prefill_num_workers", "prefill_tp_size", "prefill_pp_size", "prefill_attention_dp_size",
    "prefill_moe_tp_size", "prefill_moe_ep_size", "decode_batch_size", "decode_num_workers", "decode_tp_size", "decode_pp_size",
    "decode_attention_dp_size", "decode_moe_tp_size", "decode_moe_ep_size", "silicon_ttft_ms", "silicon_tpot_ms",
]


def row(**kw) -> dict:
    r = {c: "" for c in COLUMNS}
    r.update(id="x_c8_cfg1", silicon_data_source="db; silicon_concurrency=8; measured=x", backend="vllm", model_path="meta-llama/Llama-3.1-8B-Instruct",
             system="h100_sxm", mode="agg", isl="512", osl="64", batch_size="8", tp_size="1", pp_size="1", attention_dp_size="1",
             moe_tp_size="1", moe_ep_size="1", silicon_ttft_ms="50", silicon_tpot_ms="8")
    r.update({k: str(v) for k, v in kw.items()})
    return r


ROWS = [
    row(id="llama8b_agg_c8_cfg1"),
    row(id="llama70b_fp8_agg_c4_cfg2", model_path="meta-llama/Llama-3.1-70B", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
        tp_size="4", batch_size="4", silicon_data_source="db; silicon_concurrency=4", backend="trtllm", isl="1024", osl="32"),
    row(id="qwen235_c16_cfg3", model_path="Qwen/Qwen3-235B-A22B-FP8", precision="fp8", gemm_quant_mode="fp8_block", moe_quant_mode="fp8_block",
        tp_size="4", moe_tp_size="1", moe_ep_size="4", batch_size="16", silicon_data_source="db; silicon_concurrency=16", backend="sglang", osl="32"),
    row(id="dsv3_disagg_c8_cfg4", model_path="deepseek-ai/DeepSeek-V3", system="b200_sxm", mode="disagg", precision="fp4", gemm_quant_mode="nvfp4",
        moe_quant_mode="nvfp4", backend="trtllm", batch_size="", tp_size="", pp_size="", attention_dp_size="", moe_tp_size="", moe_ep_size="",
        prefill_num_workers="1", prefill_tp_size="4", prefill_pp_size="1", prefill_attention_dp_size="1", prefill_moe_tp_size="1", prefill_moe_ep_size="4",
        decode_num_workers="2", decode_tp_size="4", decode_pp_size="1", decode_attention_dp_size="1", decode_moe_tp_size="1", decode_moe_ep_size="4",
        decode_batch_size="4", silicon_data_source="db; silicon_concurrency=8", isl="1024", osl="32", silicon_ttft_ms="120", silicon_tpot_ms="9"),
    # skipped: model not in catalog (a name no catalog will hold)
    row(id="unknown_model_c8_cfg5", model_path="example-org/No-Such-Model-7B"),
    # skipped: disagg without worker counts
    row(id="dsr1_disagg_noworkers_c8_cfg6", model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", mode="disagg", precision="fp8", gemm_quant_mode="fp8",
        moe_quant_mode="fp8", backend="trtllm", tp_size="", prefill_tp_size="8", prefill_moe_tp_size="1", prefill_moe_ep_size="8",
        decode_tp_size="8", decode_moe_tp_size="1", decode_moe_ep_size="8"),
    # skipped: concurrency != batch_size x attention_dp
    row(id="ambiguous_c16_cfg7", batch_size="8", silicon_data_source="db; silicon_concurrency=16"),
    # skipped: does not fit (70B bf16 on one H100)
    row(id="nofit_c8_cfg8", model_path="meta-llama/Llama-3.1-70B"),
]


@pytest.fixture(scope="module")
def report() -> SiliconReport:
    return validate_silicon(None, rows=ROWS)


def test_rows_kept_and_statuses(report):
    assert [r["id"] for r in report.rows] == [r["id"] for r in ROWS]  # nothing dropped, order kept
    by = {r["id"]: r for r in report.rows}
    for i in ("llama8b_agg_c8_cfg1", "llama70b_fp8_agg_c4_cfg2", "qwen235_c16_cfg3", "dsv3_disagg_c8_cfg4"):
        r = by[i]
        assert r["status"] == "ok", r["reason"]
        assert r["predicted_ttft_ms"] > 0 and r["predicted_tpot_ms"] > 0
        assert r["ttft_ape"] == pytest.approx(abs(r["predicted_ttft_ms"] - r["measured_ttft_ms"]) / r["measured_ttft_ms"] * 100)
        assert r["tpot_ape"] == pytest.approx(abs(r["predicted_tpot_ms"] - r["measured_tpot_ms"]) / r["measured_tpot_ms"] * 100)
    assert by["unknown_model_c8_cfg5"]["reason"] == "model not in catalog: example-org/No-Such-Model-7B"
    assert "worker counts not recorded" in by["dsr1_disagg_noworkers_c8_cfg6"]["reason"]
    assert "ambiguous layout" in by["ambiguous_c16_cfg7"]["reason"]
    assert "KV cache" in by["nofit_c8_cfg8"]["reason"] or "fit" in by["nofit_c8_cfg8"]["reason"]
    for i in ("unknown_model_c8_cfg5", "dsr1_disagg_noworkers_c8_cfg6", "ambiguous_c16_cfg7", "nofit_c8_cfg8"):
        assert by[i]["status"] == "skipped" and by[i]["predicted_tpot_ms"] is None


def test_mapping():
    p = plan_row(ROWS[2])
    # the row's fp8_block names the block-scaled Qwen3-FP8 release: the catalog model served 128x128-block
    m = p.dep_kwargs["model"]
    assert m.name == "qwen3-235b-a22b" and m.block_scaled("fp8") and p.dep_kwargs["pools"]["pool"] == (4, 1, 1, 4, 1)
    assert "block-scaled" in p.note
    plain = plan_row(row(model_path="Qwen/Qwen3-235B-A22B-FP8", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                         tp_size="4", moe_tp_size="1", moe_ep_size="4", batch_size="8"))
    assert plain.dep_kwargs["model"] == "qwen3-235b-a22b" and "block-scaled" not in plain.note  # per-tensor fp8
    ds = plan_row(row(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8",
                      moe_quant_mode="fp8", tp_size="8", moe_tp_size="1", moe_ep_size="8", batch_size="8"))
    assert ds.dep_kwargs["model"] == "deepseek-r1" and "block-scaled" in ds.note  # its own release is 128x128-block fp8
    assert (p.dep_kwargs["weight_dtype"], p.dep_kwargs["act_dtype"], p.dep_kwargs["kv_dtype"]) == ("fp8", "fp8", "fp8")
    assert p.concurrency == 16 and p.dep_kwargs["max_num_seqs"] >= 16
    d = plan_row(ROWS[3])
    assert d.dep_kwargs["pools"] == {"prefill": (4, 1, 1, 4, 1), "decode": (4, 1, 1, 4, 2)}
    assert d.dep_kwargs["weight_dtype"] == "fp4" and d.base["layout"].startswith("P 1x(tp4 ep4) + D 2x(tp4 ep4)")
    assert d.base["num_gpus"] == 12
    # rule 8b: the rows' front ends (Dynamo, SGLang's PD router, vLLM's proxy) stream every
    # token from the decode worker, TRT-LLM rows included (trtllm-serve's own default is 'prefill')
    dd = build_deployment(d.dep_kwargs)
    assert dd.first_token_from == "decode" and dd.disagg_handoff_s is None  # hand-off: the backend's
    assert build_deployment(p.dep_kwargs).first_token_from is None
    # dense model: MoE columns ignored, bf16 everything
    q = plan_row(ROWS[0])
    assert q.dep_kwargs["pools"]["pool"] == (1, 1, 1, 1, 1) and q.dep_kwargs["weight_dtype"] == "bf16" and q.dep_kwargs["kv_dtype"] == "bf16"
    # concurrency: silicon_concurrency wins; attention-DP batch is per rank
    r = plan_row(row(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4",
                     tp_size="1", attention_dp_size="8", moe_tp_size="1", moe_ep_size="8", batch_size="32",
                     silicon_data_source="s; silicon_concurrency=256", id="d_c256_cfg9"))
    assert r.concurrency == 256 and r.dep_kwargs["pools"]["pool"] == (1, 1, 8, 8, 1)
    assert r.dep_kwargs.get("max_num_batched_tokens") is None  # each pool's engine default (Backend.batched_tokens)
    # fp4 on Hopper runs weight-only
    g = plan_row(row(model_path="openai/gpt-oss-120b", precision="fp4", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", tp_size="2",
                     moe_tp_size="2", moe_ep_size="1"))
    assert (g.dep_kwargs["weight_dtype"], g.dep_kwargs["act_dtype"]) == ("fp4", "bf16") and "weight-only" in g.note
    # concurrency from the id when the source does not say
    n = plan_row(row(silicon_data_source="src", id="m_c8_x", batch_size="8"))
    assert n.concurrency == 8


def test_layout_checks():
    # moe_tp x moe_ep must equal tp x dp
    bad = plan_row(row(model_path="deepseek-ai/DeepSeek-V3", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                       tp_size="8", moe_tp_size="2", moe_ep_size="8"))
    assert "moe_tp 2 x moe_ep 8 != tp 8" in bad.reason
    # id says tp8/ep8 but the columns say tp 64
    art = plan_row(row(id="2026_04_06_deepseek_r1_b200_sxm_trtllm_fp8_agg_1024x1024_c4_tp8_ep8_940", model_path="deepseek-ai/DeepSeek-R1",
                       system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8", tp_size="64", moe_tp_size="8",
                       moe_ep_size="8", batch_size="4", silicon_data_source="s; silicon_concurrency=4"))
    assert "disagree with the id" in art.reason
    art2 = plan_row(row(id="dsr1_c4_cfg1", model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8",
                        moe_quant_mode="fp8", tp_size="64", moe_tp_size="8", moe_ep_size="8", batch_size="4", silicon_data_source="s; silicon_concurrency=4"))
    assert "suspect layout" in art2.reason
    # mixed quantisation classes
    mix = plan_row(row(precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="nvfp4"))
    assert "differ" in mix.reason


def test_model_resolution():
    assert resolve_model("nvidia/DeepSeek-R1-NVFP4").name == "deepseek-r1"
    assert resolve_model("nvidia/DeepSeek-V3.1-NVFP4").name == "deepseek-v3"
    assert resolve_model("nvidia/Qwen3-32B-NVFP4").name == "qwen3-32b"
    assert resolve_model("Qwen/Qwen3-235B-A22B-FP8").name == "qwen3-235b-a22b"
    with pytest.raises(LlmsimError, match="model not in catalog: example-org/No-Such-Model-7B-FP8"):
        resolve_model("example-org/No-Such-Model-7B-FP8")


def test_closed_loop_workload():
    # default protocol: InferenceMAX's 10 x concurrency requests, none excluded
    w = closed_loop_workload(8, 100, 50)
    assert len(w) == 80 and w.concurrency == 8 and w.warmup == 0 and set(w.output_len) == {50}
    d = w.send_delay_s  # client turnaround: seeded, within [0, 5 ms), not all equal
    assert d is not None and len(d) == 80 and d.min() >= 0 and d.max() < 0.005 and d.std() > 0
    assert np.array_equal(d, closed_loop_workload(8, 100, 50).send_delay_s)
    s = closed_loop_workload(8, 100, 50, stagger=True)
    assert sorted(s.output_len[:8]) == sorted(1 + i * 50 // 8 for i in range(8)) and set(s.output_len[8:]) == {50}
    assert len(closed_loop_workload(1, 10, 10)) == 10
    w = closed_loop_workload(8, 100, 50, rounds=8, warmup_rounds=4)  # a steady-state protocol
    assert len(w) == 64 and w.warmup == 32


@pytest.mark.parametrize("rounds, warmup", [(0, 0), (3, 3), (3, -1), (2.5, 0), (4, 1.0)])
def test_closed_loop_protocol_rejects_bad_values(rounds, warmup):
    with pytest.raises(LlmsimError, match="rounds"):
        closed_loop_workload(4, 100, 10, rounds=rounds, warmup_rounds=warmup)


def test_burst_protocol_raises_mean_ttft():
    """All clients start together: counting the first round (its prompts queue behind each other
    for prefill) raises the mean TTFT over a steady-state measurement of the same deployment."""
    from llmsim.serving.simulate import simulate

    plan = plan_row(row(id="burst_c32_cfg9", silicon_data_source="db; silicon_concurrency=32", batch_size="32", isl="4096", osl="64"))
    assert plan.dep_kwargs is not None, plan.reason
    dep = build_deployment(plan.dep_kwargs)
    full = simulate(dep, closed_loop_workload(32, 4096, 64), keep_itl=False).summary["ttft_ms"]["mean"]
    steady = simulate(dep, closed_loop_workload(32, 4096, 64, rounds=8, warmup_rounds=4), keep_itl=False).summary["ttft_ms"]["mean"]
    assert full > 1.05 * steady


def test_report_dict_render_and_rows(report, tmp_path):
    d = report.to_dict()
    assert set(d) >= {"groups", "overall", "skipped", "rows"}
    keys = {"ttft_median_ape", "tpot_median_ape", "ttft_p90_ape", "tpot_p90_ape", "rows_modelled", "rows_skipped"}
    assert keys <= set(d["overall"])
    assert d["overall"]["rows_modelled"] == 4 and d["overall"]["rows_skipped"] == 4
    g = d["groups"]["h100_sxm/vllm/agg"]
    assert keys <= set(g) and g["rows_modelled"] == 1
    assert "b200_sxm/trtllm/disagg" in d["groups"]
    assert {s["id"] for s in d["skipped"]} == {"unknown_model_c8_cfg5", "dsr1_disagg_noworkers_c8_cfg6", "ambiguous_c16_cfg7", "nofit_c8_cfg8"}
    json.dumps(d)  # serialisable
    con = Console(record=True, width=200)
    report.render(con)
    text = con.export_text()
    assert "h100_sxm/vllm/agg" in text and "model not in catalog: example-org/No-Such-Model-7B" in text
    out = tmp_path / "rows.csv"
    report.write_rows(out)
    got = list(csv.DictReader(out.open()))
    assert len(got) == len(ROWS) and {"predicted_ttft_ms", "measured_tpot_ms", "status", "reason"} <= set(got[0])


def test_jobs_two_matches_one():
    a = validate_silicon(None, rows=ROWS[:3])
    b = validate_silicon(None, rows=ROWS[:3], jobs=2)
    for x, y in zip(a.rows, b.rows):
        assert x["id"] == y["id"] and x["predicted_tpot_ms"] == pytest.approx(y["predicted_tpot_ms"])


@pytest.mark.skipif(not SILICON.is_file(), reason="shared silicon CSV not present")
def test_cli_on_shared_csv(capsys, tmp_path):
    out = tmp_path / "rows.csv"
    main(["validate", "silicon", str(SILICON), "--limit", "6", "--json", "--rows", str(out)])
    d = json.loads(capsys.readouterr().out)
    assert len(d["rows"]) == 6 and d["overall"]["rows_modelled"] + d["overall"]["rows_skipped"] == 6
    assert out.is_file()


def test_bad_input(tmp_path):
    with pytest.raises(LlmsimError, match="not found"):
        validate_silicon(tmp_path / "nope.csv")
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(LlmsimError, match="lacks columns"):
        validate_silicon(p)
    with pytest.raises(LlmsimError, match="jobs"):
        validate_silicon(None, rows=ROWS[:1], jobs=0)


def test_cli_protocol_defaults_are_the_module_defaults():
    # the CLI keeps literals (no simulator import for --help); they must be rule 6's protocol
    from llmsim import cli
    from llmsim.serving import validate

    assert (cli.VALIDATE_ROUNDS, cli.VALIDATE_WARMUP_ROUNDS) == (validate.ROUNDS, validate.WARMUP_ROUNDS) == (10, 0)
    assert validate.RANGE_RATIO == 1.0 and validate.INFERENCEX_RANGE_RATIO == 0.8


def test_each_row_is_simulated_with_its_benchmarks_length_spread():
    # rule 6: InferenceMAX / InferenceX rows ran --random-range-ratio 0.8, any other row fixed lengths
    from llmsim.serving.validate import plan_row, row_data_source, row_range_ratio

    assert row_data_source({"silicon_data_source": "source_file=2026-03-25.csv; model=DeepSeek-R1"}) == "InferenceX 2026-03-25.csv"
    assert row_data_source({"silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/q.csv"}) == "AIConfigurator gap analysis"

    assert row_range_ratio({"silicon_data_source": "source_file=2026-04-06.csv; model=GPT-OSS-120B; silicon_concurrency=4"}) == 0.8
    assert row_range_ratio({"silicon_data_source": "db-dump/2026-04-27; config_id=8; silicon_concurrency=16"}) == 0.8
    # AIConfigurator's gap analyses of InferenceX measurements repeat InferenceX rows: InferenceX's recipe
    kimi = {"silicon_data_source": "source_file=kimi-k2.5-gap-analysis.csv; silicon_concurrency=64"}
    assert row_data_source(kimi) == "InferenceX via AIConfigurator gap analysis" and row_range_ratio(kimi) == 0.8
    assert row_range_ratio({"silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/q.csv"}) == 1.0
    assert row_range_ratio({"silicon_data_source": "db; silicon_concurrency=8"}) == 1.0 == row_range_ratio({})
    ix = dict(ROWS[0], silicon_data_source="source_file=2026-03-25.csv; silicon_concurrency=8")
    assert plan_row(ix).range_ratio == 0.8 and plan_row(ROWS[0]).range_ratio == 1.0
    per_row = validate_silicon(None, rows=[ix, ROWS[0]])
    a, b = per_row.rows
    assert (a["range_ratio"], b["range_ratio"]) == (0.8, 1.0) and a["status"] == b["status"] == "ok"
    # desynchronised clients rarely share a prefill: the recipe's row has the shorter simulated TTFT
    assert a["predicted_ttft_ms"] < b["predicted_ttft_ms"]
    assert per_row.to_dict()["meta"]["protocol"]["range_ratio"] == "per row"
    forced = validate_silicon(None, rows=[ix, ROWS[0]], range_ratio=1.0)
    assert [r["range_ratio"] for r in forced.rows] == [1.0, 1.0]
    assert forced.rows[0]["predicted_ttft_ms"] == pytest.approx(b["predicted_ttft_ms"])


def test_range_ratio_draws_lengths_like_benchmark_serving():
    from llmsim.serving.validate import closed_loop_workload

    wl = closed_loop_workload(8, 1000, 500, range_ratio=0.8)
    assert wl.input_len.min() >= 800 and wl.input_len.max() <= 1000 and wl.output_len.min() >= 400
    assert len(set(wl.input_len.tolist())) > 40  # 80 requests, ~200 possible lengths
    again = closed_loop_workload(8, 1000, 500, range_ratio=0.8)
    assert np.array_equal(wl.input_len, again.input_len)  # seeded
    fixed = closed_loop_workload(8, 1000, 500)
    assert set(fixed.input_len.tolist()) == {1000} and set(fixed.output_len.tolist()) == {500}
    for bad in (0, 1.5, -0.2, True):
        with pytest.raises(LlmsimError, match="range_ratio"):
            closed_loop_workload(8, 1000, 500, range_ratio=bad)


def test_kernels_option_applies_to_matching_gpus_only(tmp_path):
    rows = [ROWS[0], ROWS[3]]  # an H100 row and a B200 row
    auto = validate_silicon(None, rows=rows)
    prof = validate_silicon(None, rows=rows, kernels="profile")
    assert prof.meta["kernels"] == "profile" and auto.meta["kernels"] == "auto"
    # the H100 row is simulated on the bundled H100 profile (PyTorch kernels), so its prediction moves;
    # no profile of the B200 is bundled, so that row keeps 'auto' and is unchanged
    assert prof.rows[0]["predicted_tpot_ms"] != pytest.approx(auto.rows[0]["predicted_tpot_ms"], rel=1e-6)
    assert prof.rows[1]["predicted_tpot_ms"] == auto.rows[1]["predicted_tpot_ms"]
    with pytest.raises(LlmsimError, match="does not exist"):
        validate_silicon(None, rows=rows, kernels=str(tmp_path / "no-such-dir"))


def test_aiconfigurator_gap_analysis_rows_run_the_generators_benchmark_recipe():
    # rule 8d: AIConfigurator's benchmark-mode rules size an aggregated worker's token budget to
    # max_batch_size + ISL + 1500 per attention-DP rank; applied to vLLM and TRT-LLM gap-analysis rows
    from llmsim.serving.validate import AIC_RECIPE_BACKENDS, aiconfigurator_engine_settings, build_deployment, plan_row

    gap = "source_file=/x/aic-auto-gap-analysis/data/h100_sxm/vllm/0.12.0/Qwen_Qwen3-32B.csv; silicon_concurrency=8"
    base = dict(model_path="Qwen/Qwen3-32B", system="h100_sxm", precision="bf16", backend="vllm", batch_size="8", tp_size="2",
                isl="1024", osl="1024", silicon_data_source=gap, silicon_ttft_ms="154", silicon_tpot_ms="15.9")
    p = plan_row(row(id="q32_gap_c8", **base))
    assert not p.reason and p.dep_kwargs["engine"] == {"max_num_batched_tokens": 8 + 1024 + 1500}
    assert "AIConfigurator benchmark recipe" in p.note
    assert build_deployment(p.dep_kwargs).max_num_batched_tokens == 2532
    assert plan_row(row(id="q32_gap_4k_c64", **dict(base, isl="4096", batch_size="64",
                                                    silicon_data_source=gap.replace("=8", "=64")))).dep_kwargs["engine"] == {
        "max_num_batched_tokens": 64 + 4096 + 1500}
    # per attention-DP rank: (batch_size + ISL + 1500) x dp
    assert aiconfigurator_engine_settings({"silicon_data_source": gap}, "vllm", "agg", 1024, 64, 4) == {
        "max_num_batched_tokens": (16 + 1024 + 1500) * 4}
    # other sources, disaggregated rows and backends outside AIC_RECIPE_BACKENDS keep the defaults
    ix = "source_file=2026-04-06.csv; model=Qwen3-32B; silicon_concurrency=8"
    assert plan_row(row(id="q32_ix_c8", **dict(base, silicon_data_source=ix))).dep_kwargs["engine"] == {}
    copy = "source_file=qwen3-32b-gap-analysis.csv; silicon_concurrency=8"  # a gap analysis of InferenceX rows
    assert plan_row(row(id="q32_copy_c8", **dict(base, silicon_data_source=copy))).dep_kwargs["engine"] == {}
    assert aiconfigurator_engine_settings({"silicon_data_source": gap}, "vllm", "disagg", 1024, 8) == {}
    assert AIC_RECIPE_BACKENDS == ("vllm", "trtllm")
    assert aiconfigurator_engine_settings({"silicon_data_source": gap}, "trtllm", "agg", 1024, 8) == {"max_num_batched_tokens": 8 + 1024 + 1500}
    assert aiconfigurator_engine_settings({"silicon_data_source": gap}, "trtllm", "disagg", 1024, 8) == {}
    assert aiconfigurator_engine_settings({"silicon_data_source": gap}, "sglang", "agg", 1024, 8) == {}
    # the smaller budget splits the clients' lock-step prefill: the simulated TTFT falls against the
    # same benchmark (fixed lengths) from a source without the recipe
    own = "source_file=my_bench.csv; silicon_concurrency=8"
    assert plan_row(row(id="q32_own_c8", **dict(base, silicon_data_source=own))).dep_kwargs["engine"] == {}
    rep = validate_silicon(None, rows=[row(id="q32_gap_c8", **base), row(id="q32_own_c8", **dict(base, silicon_data_source=own))])
    recipe, default = rep.rows
    assert recipe["status"] == default["status"] == "ok"
    assert recipe["predicted_ttft_ms"] < 0.6 * default["predicted_ttft_ms"]


def test_inferencex_rows_run_their_launch_scripts_settings():
    # rule 8c: TRT-LLM Llama-3.1-70B InferenceX rows run --max_num_tokens 16384, and batch waiting
    # (20 iterations, ratio 0.9) exactly where the script switches it on: ISL = OSL = 1024, TP < 8
    from llmsim.serving.validate import build_deployment, inferencex_engine_settings, plan_row

    ix = "source_file=2026-04-06.csv; model=Llama-3.1-70B; silicon_concurrency=4"
    base = dict(model_path="meta-llama/Llama-3.1-70B", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                backend="trtllm", batch_size="4", isl="1024", osl="1024", silicon_data_source=ix, silicon_ttft_ms="383", silicon_tpot_ms="14.6")
    waits = plan_row(row(id="l70_tp1_c4", tp_size="1", **base))
    assert waits.dep_kwargs["engine"] == {"max_num_batched_tokens": 16384, "batch_wait_iters": 20, "batch_wait_tokens_ratio": 0.9}
    assert "InferenceX launch script" in waits.note
    dep = build_deployment(waits.dep_kwargs)
    assert (dep.max_num_batched_tokens, dep.batch_wait_iters, dep.batch_wait_tokens_ratio) == (16384, 20, 0.9)
    assert plan_row(row(id="l70_tp8_c4", tp_size="8", **base)).dep_kwargs["engine"] == {"max_num_batched_tokens": 16384}
    assert plan_row(row(id="l70_tp1_8k_c4", tp_size="1", **dict(base, isl="8192"))).dep_kwargs["engine"] == {"max_num_batched_tokens": 16384}
    # not an InferenceX row, or another backend: the backend's defaults
    assert plan_row(row(id="l70_gap_c4", tp_size="1", **dict(base, silicon_data_source="db; silicon_concurrency=4"))).dep_kwargs["engine"] == {}
    # vLLM Llama-70B and gpt-oss measured in 2025 (InferenceMAX's 2025 scripts): async scheduling, one
    # more iteration before a new request runs; later gpt-oss runs (v0.15.1 on) and other models: not
    ix25 = ix + "; measured=2025-10-21T00:00:00.000Z"
    assert inferencex_engine_settings({"silicon_data_source": ix25}, "llama-3.1-70b", "vllm", "agg", 1024, 1024, 1) == {"overlap_scheduling": True}
    assert inferencex_engine_settings({"silicon_data_source": ix25}, "gpt-oss-120b", "vllm", "agg", 1024, 1024, 8) == {"overlap_scheduling": True}
    ix26 = ix + "; measured=2026-02-10T00:00:00.000Z"
    assert inferencex_engine_settings({"silicon_data_source": ix26}, "gpt-oss-120b", "vllm", "agg", 1024, 1024, 8) == {}
    assert inferencex_engine_settings({"silicon_data_source": ix}, "llama-3.1-70b", "vllm", "agg", 1024, 1024, 1) == {}  # (undated)
    assert inferencex_engine_settings({"silicon_data_source": ix25}, "minimax-m2.5", "vllm", "agg", 1024, 1024, 1) == {}
    assert inferencex_engine_settings({"silicon_data_source": ix}, "gpt-oss-120b", "trtllm", "agg", 1024, 1024, 1) == {"max_num_batched_tokens": 20000}
    # TRT-LLM with DP attention: the scripts' attention_dp_config (enable_balance; DeepSeek
    # timeout_iters 60, batching_wait_iters 0; gpt-oss TRT-LLM's defaults 50 / 10); not without DP
    # (max_num_tokens is each attention-DP rank's: llmsim's pooled engine of 4 ranks gets 4 x 20000)
    assert inferencex_engine_settings({"silicon_data_source": ix}, "gpt-oss-120b", "trtllm", "agg", 1024, 1024, 1, 64, "fp4", 4) == {
        "max_num_batched_tokens": 80000, "adp_balance_timeout_iters": 50, "adp_balance_batching_iters": 10}
    assert inferencex_engine_settings({"silicon_data_source": ix}, "deepseek-r1", "trtllm", "agg", 1024, 1024, 1, 256, "fp4", 8) == {
        "adp_balance_timeout_iters": 60, "adp_balance_batching_iters": 0}
    assert inferencex_engine_settings({"silicon_data_source": ix}, "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 64, "fp4", 1) == {}
    # TRT-LLM DeepSeek on B200 measured on 1.2.0rc6.post2 (dsr1_fp{4,8}_b200_trt.sh after PRs #620 / #594):
    # --max_num_tokens max(8192, (CONC + ISL + 127) // 64 * 64) per rank, free_gpu_memory_fraction 0.8;
    # fp8 1k/1k from CONC 64 batch waiting (40 iterations, 0.8), 1k/8k from CONC 256 0.7, 8k/1k TP4 0.75
    r6 = {"silicon_data_source": "db-dump/2026-04-27; measured=2026-02-03; nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post2",
          "system": "b200_sxm"}
    assert inferencex_engine_settings(r6, "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 64, "fp4", 1) == {
        "max_num_batched_tokens": 8192, "memory_fraction": 0.8}
    assert inferencex_engine_settings(r6, "deepseek-r1", "trtllm", "agg", 8192, 1024, 8, 256, "fp4", 1) == {
        "max_num_batched_tokens": 8512, "memory_fraction": 0.8}
    assert inferencex_engine_settings(r6, "deepseek-r1", "trtllm", "agg", 1024, 1024, 1, 256, "fp4", 4) == {
        "max_num_batched_tokens": 4 * 8192, "memory_fraction": 0.8, "adp_balance_timeout_iters": 60, "adp_balance_batching_iters": 0}
    assert inferencex_engine_settings(r6, "deepseek-v3", "trtllm", "agg", 1024, 1024, 8, 64, "fp8", 1) == {
        "max_num_batched_tokens": 8192, "memory_fraction": 0.8, "batch_wait_iters": 40, "batch_wait_tokens_ratio": 0.8}
    assert inferencex_engine_settings(r6, "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 32, "fp8", 1) == {
        "max_num_batched_tokens": 8192, "memory_fraction": 0.8}
    assert inferencex_engine_settings(r6, "deepseek-r1", "trtllm", "agg", 1024, 8192, 8, 256, "fp8", 1)["memory_fraction"] == 0.7
    assert inferencex_engine_settings(r6, "deepseek-r1", "trtllm", "agg", 8192, 1024, 4, 8, "fp8", 1)["memory_fraction"] == 0.75
    # the backend_version column names the image too; other images and GPUs keep TRT-LLM's defaults
    v6 = {"silicon_data_source": ix, "system": "b200_sxm", "backend_version": "1.2.0rc6.post2"}
    assert inferencex_engine_settings(v6, "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 4, "fp4", 1)["max_num_batched_tokens"] == 8192
    assert inferencex_engine_settings(dict(v6, backend_version="1.1.0rc2.post2"), "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 4, "fp4") == {}
    assert inferencex_engine_settings(dict(v6, system="b300_sxm"), "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 4, "fp4") == {}
    # the MTP entries' image (rule 4c, 1.2.0rc6.post3: dsr1_fp{8,4}_b200_trt_mtp.sh since PRs #632 / #642):
    # --max_num_tokens ((MTP+1) x MAX_BATCH_SIZE + ISL + 127) // 64 x 64, no floor, less the MTP draft tokens
    # llmsim's engine does not charge; MTP 3 (1 with DP attention), batch CONC (CONC / 8 for fp8 with DP)
    r3 = {"silicon_data_source": ix + "; image=nvcr.io#nvidia#tensorrt-llm#release:1.2.0rc6.post3", "system": "b200_sxm"}
    assert inferencex_engine_settings(r3, "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 64, "fp8", 1) == {
        "max_num_batched_tokens": 1344 - 3 * 64, "memory_fraction": 0.8}
    assert inferencex_engine_settings(r3, "deepseek-r1", "trtllm", "agg", 1024, 1024, 1, 256, "fp8", 8) == {
        "max_num_batched_tokens": 8 * (1152 - 32), "memory_fraction": 0.7, "adp_balance_timeout_iters": 60, "adp_balance_batching_iters": 0}
    # the version column alone does not make a row speculative (rule 4c reads the image), so no MTP budget
    assert inferencex_engine_settings(dict(v6, backend_version="1.2.0rc6.post3"), "deepseek-r1", "trtllm", "agg", 1024, 1024, 8, 64, "fp8") == {}
    # SGLang DeepSeek (dsr1_fp4_b200.sh / dsr1_fp8_b200.sh): --scheduler-recv-interval 10, or 30
    # from CONC 16 (fp8 TP4: 10), and fp8's chunk sizes; nothing for other SGLang models or disagg
    sx = {"silicon_data_source": ix, "system": "b200_sxm"}  # the scripts are B200 ones (reused for B300)
    assert inferencex_engine_settings(sx, "deepseek-r1", "sglang", "agg", 1024, 1024, 8, 4, "fp4") == {"recv_interval_iters": 10}
    assert inferencex_engine_settings(sx, "deepseek-v3", "sglang", "agg", 1024, 1024, 8, 16, "fp4") == {"recv_interval_iters": 30}
    assert inferencex_engine_settings(sx, "deepseek-r1", "sglang", "agg", 1024, 1024, 8, 64, "fp8") == {
        "recv_interval_iters": 30, "max_num_batched_tokens": 32768}
    assert inferencex_engine_settings(sx, "deepseek-r1", "sglang", "agg", 8192, 1024, 4, 32, "fp8") == {
        "recv_interval_iters": 10, "max_num_batched_tokens": 8192}
    assert inferencex_engine_settings(sx, "qwen3-32b", "sglang", "agg", 1024, 1024, 8, 64, "fp8") == {}
    assert inferencex_engine_settings(dict(sx, system="gb200"), "deepseek-r1", "sglang", "agg", 1024, 1024, 8, 64, "fp8") == {}
    # SGLang Qwen3.5 (qwen3.5_*_b200.sh / _b300.sh): 10, or 30 from CONC 16, with 32768-token chunks;
    # the B300 fp8 script polls every 10 iterations at any CONC and keeps SGLang's default chunk
    q200, q300 = dict(sx, system="b200_sxm"), dict(sx, system="b300_sxm")
    for w in ("bf16", "fp8", "fp4"):
        assert inferencex_engine_settings(q200, "qwen3.5-397b-a17b", "sglang", "agg", 8192, 1024, 4, 8, w) == {
            "recv_interval_iters": 10, "max_num_batched_tokens": 32768}
        assert inferencex_engine_settings(q200, "qwen3.5-397b-a17b", "sglang", "agg", 8192, 1024, 4, 16, w) == {
            "recv_interval_iters": 30, "max_num_batched_tokens": 32768}
    assert inferencex_engine_settings(q300, "qwen3.5-397b-a17b", "sglang", "agg", 1024, 1024, 8, 64, "fp4") == {
        "recv_interval_iters": 30, "max_num_batched_tokens": 32768}
    assert inferencex_engine_settings(q300, "qwen3.5-397b-a17b", "sglang", "agg", 1024, 1024, 4, 64, "fp8") == {"recv_interval_iters": 10}
    assert inferencex_engine_settings(dict(sx, system="h100_sxm"), "qwen3.5-397b-a17b", "sglang", "agg", 1024, 1024, 8, 64, "fp8") == {}
    assert inferencex_engine_settings(q200, "qwen3.5-397b-a17b", "sglang", "disagg", 1024, 1024, 8, 64, "fp8") == {}
    # SGLang GLM-5 (glm5_fp8_b200.sh, glm5_fp4_b200.sh): 32768-token chunks; fp4 also polls every 10 iterations
    assert inferencex_engine_settings(q200, "glm-5", "sglang", "agg", 8192, 1024, 8, 64, "fp8") == {"max_num_batched_tokens": 32768}
    assert inferencex_engine_settings(q300, "glm-5", "sglang", "agg", 8192, 1024, 8, 4, "fp4") == {
        "recv_interval_iters": 10, "max_num_batched_tokens": 32768}
    assert inferencex_engine_settings(dict(sx, system="h100_sxm"), "glm-5", "sglang", "agg", 8192, 1024, 8, 4, "fp4") == {}
    assert inferencex_engine_settings(sx, "deepseek-r1", "sglang", "disagg", 1024, 1024, 8, 64, "fp8") == {}
    dsr1 = dict(base, model_path="deepseek-ai/DeepSeek-R1", backend="sglang", moe_tp_size="8", moe_ep_size="1",
                silicon_data_source="source_file=2026-04-06.csv; model=DeepSeek-R1; silicon_concurrency=32", batch_size="32")
    p = plan_row(row(id="dsr1_tp8_c32", tp_size="8", **dsr1))
    assert not p.reason and build_deployment(p.dep_kwargs).recv_interval_iters == 30
    # the held prompts wait ~20 decode steps: the simulated TTFT grows by about that much
    rep = validate_silicon(None, rows=[row(id="l70_tp1_c4", tp_size="1", **base), row(id="l70_tp8_c4", tp_size="8", **base)])
    held, free = rep.rows
    assert held["status"] == free["status"] == "ok"
    assert held["predicted_ttft_ms"] > 10 * held["predicted_tpot_ms"] + free["predicted_ttft_ms"]


def test_inferencex_speculative_decoding_rows_run_with_their_scripts_drafts_and_a_published_acceptance():
    # rule 4c: InferenceX's DeepSeek-R1 B200 TRT-LLM MTP benchmarks ran on their own image
    # (1.2.0rc6.post3; the plain ones on post2), with MTP=3 drafts, or 1 with attention DP (their
    # launch scripts); the acceptance is DeepSeek's published one (`specdecode`), nothing fitted
    from llmsim.serving.specdecode import DEEPSEEK_MTP_ACCEPTANCE, chain_acceptance
    from llmsim.serving.validate import plan_rows, row_speculative_decoding

    src = ("source_file=2026-03-25.csv; model=DeepSeek-R1; silicon_concurrency=4; measured=2026-02-06T17:21:58Z; "
           "wip=False; image=nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post{}")
    base = dict(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                backend="trtllm", tp_size="8", moe_tp_size="8", batch_size="4", isl="1024", osl="1024", silicon_ttft_ms="90", silicon_tpot_ms="5")
    mtp = plan_row(row(id="dsr1_mtp_c4", **dict(base, silicon_data_source=src.format(3))))
    sd = mtp.dep_kwargs["engine"]["spec_decoding"]
    assert not mtp.reason and "dsr1-fp8-b200-trt-mtp" in mtp.note and "not fitted" in mtp.note
    assert (sd.method, sd.num_draft_tokens) == ("mtp", 3) and sd.accepted_per_step == round(chain_acceptance(DEEPSEEK_MTP_ACCEPTANCE, 3), 3)
    assert build_deployment(mtp.dep_kwargs).spec_decoding == sd
    dp = plan_row(row(id="dsr1_mtp_dp", **dict(base, tp_size="1", attention_dp_size="8", moe_tp_size="1", moe_ep_size="8",
                                                 silicon_data_source=src.format(3).replace("concurrency=4", "concurrency=32"))))
    assert dp.base["layout"] == "tp1 dp8 ep8" and dp.dep_kwargs["engine"]["spec_decoding"].num_draft_tokens == 1
    stp = plan_row(row(id="dsr1_stp_c4", **dict(base, silicon_data_source=src.format(2))))
    assert not stp.reason and stp.dep_kwargs and "spec_decoding" not in stp.dep_kwargs["engine"]
    # the image -> configuration fact is InferenceX's: a user's own benchmark on that image is modelled as written
    own = plan_row(row(id="own_c4", **dict(base, silicon_data_source="source_file=mine.csv; silicon_concurrency=4; "
                                                                        "image=nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3")))
    assert not own.reason and "spec_decoding" not in own.dep_kwargs["engine"]
    assert row_speculative_decoding({"silicon_data_source": "db-dump/2026-04-27; silicon_concurrency=4"}) is None
    # Qwen3.5's fp8 SGLang MTP entry had an image of its own among Qwen3.5's entries (v0.5.9-cu130; the
    # plain one -amd64), which DeepSeek's plain SGLang entries also ran: the key is (model, image)
    qsrc = "source_file=2026-03-25.csv; model=Qwen3.5-397B; silicon_concurrency=4; wip=False; image=lmsysorg/sglang:v0.5.9-cu130{}"
    assert "qwen3.5-fp8-b200-sglang-mtp" in row_speculative_decoding(
        {"silicon_data_source": qsrc.format(""), "model_path": "Qwen/Qwen3.5-397B-A17B-FP8"})
    assert row_speculative_decoding({"silicon_data_source": qsrc.format("-amd64"), "model_path": "Qwen/Qwen3.5-397B-A17B"}) is None
    assert row_speculative_decoding({"silicon_data_source": qsrc.format(""), "model_path": "deepseek-ai/DeepSeek-R1"}) is None
    # no published acceptance for Qwen3.5's MTP module: skipped, and so is a copy that names no image
    # (the database dump's); a plain row is kept
    qb = dict(model_path="Qwen/Qwen3.5-397B-A17B", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
              backend="sglang", tp_size="4", moe_tp_size="4", batch_size="4", isl="1024", osl="1024", silicon_ttft_ms="338.336414",
              silicon_tpot_ms="6.33271925")
    plans = plan_rows([row(id="q_mtp_c4", **dict(qb, silicon_data_source=qsrc.format(""))),
                       row(id="q_dump_c4", **dict(qb, silicon_data_source="db-dump/2026-04-27; config_id=1; silicon_concurrency=4")),
                       row(id="q_plain_c4", **dict(qb, silicon_ttft_ms="297.44", silicon_tpot_ms="9.94",
                                                   silicon_data_source="db-dump/2026-04-27; config_id=2; silicon_concurrency=4"))])
    assert "qwen3.5-fp8-b200-sglang-mtp" in plans[0].reason and "no published acceptance rate" in plans[0].reason
    assert plans[0].dep_kwargs is None
    assert "repeats the measurement of q_mtp_c4" in plans[1].reason and plans[1].dep_kwargs is None
    assert not plans[2].reason and plans[2].dep_kwargs is not None
    # a copy of a simulated MTP row (no image named) takes its speculative decoding, and rule 10 counts them once
    dump = row(id="dsr1_dump_c4", **dict(base, silicon_data_source="db-dump/2026-04-27; config_id=9; silicon_concurrency=4"))
    both = plan_rows([row(id="dsr1_mtp_c4", **dict(base, silicon_data_source=src.format(3))), dump], count_repeats=True)
    assert both[1].dep_kwargs["engine"]["spec_decoding"] == sd and "speculative decoding" in both[1].note
    once = plan_rows([row(id="dsr1_mtp_c4", **dict(base, silicon_data_source=src.format(3))), dump])
    assert once[0].dep_kwargs is not None and once[1].dep_kwargs is None and "dsr1_mtp_c4" in once[1].reason
    # a run its own measurements show to be speculative (SPEC_DECODING_RUNS): the image and the date
    # together; its draft count is not recorded, so it stays skipped
    run = "source_file=2026-04-06.csv; model=DeepSeek-R1; silicon_concurrency=4; measured={}T00:00:00.000Z; wip=False; image={}"
    post2 = "nvcr.io/nvidia/tensorrt-llm/release:1.1.0rc2.post2"
    assert "2026-01-14" in row_speculative_decoding({"silicon_data_source": run.format("2026-01-14", post2)})
    jan = plan_row(row(id="dsr1_jan_c4", **dict(base, silicon_data_source=run.format("2026-01-14", post2))))
    assert "speculative decoding" in jan.reason and "draft count is not recorded" in jan.reason and jan.dep_kwargs is None
    assert row_speculative_decoding({"silicon_data_source": run.format("2025-12-15", post2)}) is None
    assert row_speculative_decoding({"silicon_data_source": run.format("2026-01-14", post2.replace("1.1.0rc2", "1.2.0rc6"))}) is None
    # listed, not dropped
    rep = validate_silicon(None, rows=[row(id="dsr1_jan_c4", **dict(base, silicon_data_source=run.format("2026-01-14", post2)))])
    assert rep.rows[0]["status"] == "skipped" and "speculative decoding" in rep.rows[0]["reason"]


def test_inferencex_sglang_mtp_only_cells_run_with_mtp():
    # rule 4c: InferenceX's plain SGLang DeepSeek-R1 fp8 B200 entry ran TP8 up to CONC 64 (1k/1k,
    # 1k/8k) and CONC 4 (8k/1k); its MTP entry, on the same image, TP8 up to 512 -- so a TP8 row
    # above the plain range can only be MTP's (2 drafts per step, its launch script); rows inside
    # it run as written
    src = "source_file=2026-03-25.csv; model=DeepSeek-R1; silicon_concurrency={}; wip=False; image=lmsysorg/sglang:v0.5.9-cu130"
    base = dict(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                backend="sglang", tp_size="8", moe_tp_size="8", moe_ep_size="1", batch_size="", isl="1024", osl="1024",
                silicon_ttft_ms="900", silicon_tpot_ms="30")

    def drafts(c, **kw):
        p = plan_row(row(id=f"dsr1_sgl_c{c}", **dict(base, silicon_data_source=src.format(c), **kw)))
        assert not p.reason
        sd = p.dep_kwargs["engine"].get("spec_decoding")
        assert sd is None or ("dsr1-fp8-b200-sglang-mtp" in p.note and "<= " in p.note)
        return sd.num_draft_tokens if sd else 0

    assert drafts(128) == 2
    assert drafts(64) == 0  # inside the plain entry's range: either entry, as written
    assert drafts(8, isl="8192") == 2 and drafts(4, isl="8192") == 0
    assert drafts(128, tp_size="4", moe_tp_size="4") == 0  # TP4: not the MTP entry's layout
    assert drafts(128, precision="fp4", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4") == 0  # no fp4 MTP entry
    own = plan_row(row(id="own", **dict(base, silicon_data_source="source_file=mine.csv; silicon_concurrency=128")))
    assert not own.reason and "spec_decoding" not in own.dep_kwargs["engine"]


def test_inferencex_sglang_mtp_twin_inside_the_plain_range_runs_with_mtp():
    # rule 4c inside the plain range: the database dump's config-87 row is the plain entry's
    # measurement of its cell; a row of the same cell (DeepSeek-R1 or -V3) measuring anything else
    # is the MTP entry's. Without the config-87 row nothing tells them apart and both run as written.
    from llmsim.serving.validate import plan_rows

    base = dict(system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8", backend="sglang", tp_size="8",
                moe_tp_size="8", moe_ep_size="1", batch_size="", isl="1024", osl="1024")
    img = "image=lmsysorg/sglang:v0.5.9-cu130"
    plain = row(id="dsr1_b200_sglang_fp8_agg_1024x1024_c16_cfg87", model_path="deepseek-ai/DeepSeek-V3", silicon_ttft_ms="402.45",
                silicon_tpot_ms="13.18", silicon_data_source=f"db-dump/2026-04-27; config_id=87; silicon_concurrency=16; {img}", **base)
    src = f"source_file=2026-03-25.csv; model=DeepSeek-R1; silicon_concurrency={{}}; wip=False; {img}"
    copy = row(id="r1_c16_a", model_path="deepseek-ai/DeepSeek-R1", silicon_ttft_ms="402.45", silicon_tpot_ms="13.18",
               silicon_data_source=src.format(16), **base)
    twin = row(id="r1_c16_b", model_path="deepseek-ai/DeepSeek-R1", silicon_ttft_ms="586.3", silicon_tpot_ms="11.71",
               silicon_data_source=src.format(16), **base)
    other_cell = row(id="r1_c32", model_path="deepseek-ai/DeepSeek-R1", silicon_ttft_ms="642.3", silicon_tpot_ms="14.78",
                     silicon_data_source=src.format(32), **base)
    tp4 = row(id="r1_c16_tp4", model_path="deepseek-ai/DeepSeek-R1", silicon_ttft_ms="586.3", silicon_tpot_ms="11.71",
              silicon_data_source=src.format(16), **dict(base, tp_size="4", moe_tp_size="4"))
    plans = {p.base["id"]: p for p in plan_rows([plain, copy, twin, other_cell, tp4], count_repeats=True)}
    for kept in ("dsr1_b200_sglang_fp8_agg_1024x1024_c16_cfg87", "r1_c16_a", "r1_c32", "r1_c16_tp4"):
        assert plans[kept].dep_kwargs is not None and not plans[kept].reason, kept
        assert "spec_decoding" not in plans[kept].dep_kwargs["engine"], kept
    r = plans["r1_c16_b"]
    assert not r.reason and r.dep_kwargs["engine"]["spec_decoding"].num_draft_tokens == 2
    assert "speculative decoding" in r.note and "config_id=87" in r.note and "TTFT 402.4 ms / TPOT 13.18 ms" in r.note
    # without the plain series in the rows, both measurements of the cell run as written
    assert all(p.dep_kwargs is not None and "spec_decoding" not in p.dep_kwargs["engine"] for p in plan_rows([copy, twin]))
    # a plain row with only a TTFT: a twin with the same TTFT and no TPOT is the same measurement
    p1 = dict(plain, silicon_tpot_ms="")
    assert plan_rows([p1, dict(copy, silicon_tpot_ms="")])[1].dep_kwargs is not None
    # validate simulates the twin with MTP: fewer, longer decode steps, a lower TPOT than the plain row's
    rep = validate_silicon(None, rows=[plain, twin])
    assert [x["status"] for x in rep.rows] == ["ok", "ok"] and "speculative decoding" in rep.rows[1]["note"]
    assert rep.rows[1]["predicted_tpot_ms"] < 0.8 * rep.rows[0]["predicted_tpot_ms"]


def test_a_measurement_listed_twice_counts_once():
    # rule 10: the same benchmark with bit-identical TTFT and TPOT is one measurement exported twice
    # (InferenceX's database dump lists DeepSeek-R1 runs as DeepSeek-V3); the copy is skipped naming
    # the first row, listed, and left out of the statistics unless count_repeats=True
    from llmsim.serving.validate import REPEAT_REASON, plan_rows

    base = dict(system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8", backend="trtllm", tp_size="8",
                moe_tp_size="8", moe_ep_size="1", batch_size="8", isl="1024", osl="64", silicon_ttft_ms="181.474005",
                silicon_tpot_ms="11.08465")
    dump = row(id="dump_c8", model_path="deepseek-ai/DeepSeek-V3", silicon_data_source="db-dump/2026-04-27; silicon_concurrency=8", **base)
    export = row(id="export_c8", model_path="deepseek-ai/DeepSeek-R1", silicon_data_source="source_file=2026-03-25.csv; silicon_concurrency=8", **base)
    rerun = row(id="rerun_c8", model_path="deepseek-ai/DeepSeek-R1", silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=8",
                **dict(base, silicon_ttft_ms="181.4741"))  # another run of the same benchmark
    other_conc = row(id="c16", model_path="deepseek-ai/DeepSeek-R1", **dict(base, batch_size="16"),
                     silicon_data_source="db; silicon_concurrency=16")
    # an export that differs in the last float digit is still the same measurement
    last_digit = row(id="export2_c8", model_path="deepseek-ai/DeepSeek-R1", silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=8",
                     **dict(base, silicon_ttft_ms="181.47400499999998"))
    plans = plan_rows([dump, export, rerun, other_conc, last_digit])
    assert [p.dep_kwargs is not None for p in plans] == [True, False, True, True, False]
    assert plans[1].reason.startswith(REPEAT_REASON) and "dump_c8" in plans[1].reason
    assert all(p.dep_kwargs is not None for p in plan_rows([dump, export, rerun, other_conc, last_digit], count_repeats=True))
    rep = validate_silicon(None, rows=[dump, export, rerun])
    assert [x["status"] for x in rep.rows] == ["ok", "skipped", "ok"]
    d = rep.to_dict()
    assert d["overall"]["rows_modelled"] == 2 and d["overall"]["rows_skipped"] == 1
    assert any(k.startswith(REPEAT_REASON) for k in d["skipped_reasons"])
    both = validate_silicon(None, rows=[dump, export], count_repeats=True)
    assert [x["status"] for x in both.rows] == ["ok", "ok"]
    assert both.rows[0]["predicted_ttft_ms"] == both.rows[1]["predicted_ttft_ms"]  # one architecture, one prediction


def test_a_copy_rounded_to_hundredths_counts_once():
    # rule 10: AIConfigurator's gap analyses of InferenceX rows repeat its TTFT / TPOT rounded to
    # 0.01 ms; such a copy (before or after its original) is the same measurement, a value that
    # rounds differently is not
    from llmsim.serving.validate import REPEAT_REASON, plan_rows

    base = dict(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                backend="trtllm", tp_size="8", moe_tp_size="8", moe_ep_size="1", batch_size="8", isl="1024", osl="64")
    orig = row(id="orig_c8", silicon_data_source="source_file=2026-03-25.csv; silicon_concurrency=8",
               silicon_ttft_ms="231.847882", silicon_tpot_ms="8.06520640", **base)
    gap = row(id="gap_c8", silicon_data_source="source_file=qwen3.5-397b-gap-analysis.csv; silicon_concurrency=8",
              silicon_ttft_ms="231.85", silicon_tpot_ms="8.07", **base)
    off = row(id="off_c8", silicon_data_source="source_file=qwen3.5-397b-gap-analysis.csv; silicon_concurrency=8",
              silicon_ttft_ms="231.86", silicon_tpot_ms="8.07", **base)
    plans = plan_rows([orig, gap, off])
    assert [p.dep_kwargs is not None for p in plans] == [True, False, True]
    assert plans[1].reason.startswith(REPEAT_REASON) and "orig_c8" in plans[1].reason
    later = plan_rows([gap, orig])  # the rounded copy listed first: the full-precision one is the repeat
    assert [p.dep_kwargs is not None for p in later] == [True, False] and "gap_c8" in later[1].reason


def test_cli_count_repeats(tmp_path, capsys):
    f = tmp_path / "twice.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows([row(id="a_c8"), row(id="b_c8")])
    main(["validate", "silicon", str(f), "--json"])
    assert json.loads(capsys.readouterr().out)["overall"]["rows_modelled"] == 1
    main(["validate", "silicon", str(f), "--json", "--count-repeats"])
    assert json.loads(capsys.readouterr().out)["overall"]["rows_modelled"] == 2


def test_inferencex_dp_attention_layout_encoded_as_tp_times_dp_gpus_runs_as_tp_ep():
    # rule 4b(iii): InferenceX's {tp: T, ep: T, dp-attn: true} ran as tp T ep T on T GPUs; the
    # database dump writes it tp T x attention_dp T, moe_ep T*T (T*T GPUs), batch_size per DP rank
    base = dict(model_path="MiniMaxAI/MiniMax-M2.5", system="b200_sxm", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
                tp_size="2", attention_dp_size="2", moe_tp_size="1", moe_ep_size="4", batch_size="64", isl="1024", osl="1024",
                silicon_ttft_ms="300", silicon_tpot_ms="28")
    dump = plan_row(row(id="minimaxm2_5_b200_vllm_fp8_agg_1024x1024_c128_cfg691",
                        silicon_data_source="db-dump/2026-04-27; config_id=691; silicon_concurrency=128", **base))
    assert dump.dep_kwargs is not None, dump.reason
    assert dump.dep_kwargs["pools"]["pool"][:4] == (2, 1, 1, 2) and dump.base["num_gpus"] == 2 and dump.base["layout"] == "tp2 ep2"
    assert dump.concurrency == 128 and "dp-attn: true" in dump.note
    # its 2026-04-06 copy, whose id says tp2 ep2, now agrees with the columns (rule 4b(i)) and is modelled the same way
    copy = plan_row(row(id="2026_04_06_minimaxm2_5_b200_sxm_vllm_fp8_agg_1024x1024_c128_tp2_ep2_7",
                        silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=128", **base))
    assert copy.dep_kwargs is not None and copy.dep_kwargs["pools"] == dump.dep_kwargs["pools"], copy.reason
    # the same columns from a user's own benchmark are a real 4-GPU layout (tp2 x dp2, ep4)
    own = plan_row(row(id="mine_c128", silicon_data_source="source_file=mine.csv; silicon_concurrency=128", **base))
    assert own.dep_kwargs is not None and own.dep_kwargs["pools"]["pool"][:4] == (2, 1, 2, 4) and own.base["num_gpus"] == 4
    # InferenceX's TRT-LLM attention-DP encoding (tp 1, attention_dp D, moe_ep D) is not this artefact
    trt = plan_row(row(id="dsr1_trt_c64_cfg9", model_path="deepseek-ai/DeepSeek-R1", precision="fp4", gemm_quant_mode="nvfp4",
                       moe_quant_mode="nvfp4", backend="trtllm", tp_size="1", attention_dp_size="8", moe_tp_size="1", moe_ep_size="8",
                       silicon_data_source="db-dump/2026-04-27; config_id=9; silicon_concurrency=64", isl="1024", osl="1024",
                       batch_size="", silicon_ttft_ms="300", silicon_tpot_ms="20"))
    assert trt.dep_kwargs is not None and trt.dep_kwargs["pools"]["pool"][:4] == (1, 1, 8, 8), trt.reason


def test_inferencex_square_layout_encoding_runs_on_t_gpus():
    # rule 4b(ii'): InferenceX's single-node {tp: T, ep: T} written as tp T*T (= moe_tp T x moe_ep T), and
    # {tp: T, ep: T, dp-attn: true} as tp 1 x attention_dp T*T, ran on T GPUs
    base = dict(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", precision="fp4", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4",
                isl="1024", osl="1024", silicon_ttft_ms="300", silicon_tpot_ms="20")
    copy = plan_row(row(id="2026_04_06_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x1024_c16_tp4_ep4_21", backend="sglang", tp_size="16",
                        moe_tp_size="4", moe_ep_size="4", batch_size="16",
                        silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=16", **base))
    assert copy.dep_kwargs is not None, copy.reason
    assert copy.dep_kwargs["pools"]["pool"][:4] == (4, 1, 1, 4) and copy.base["num_gpus"] == 4 and copy.base["layout"] == "tp4 ep4"
    assert "{tp: 4, ep: 4}" in copy.note
    # the database dump's ids name no layout: tp 64 = 8 x 8 on an 8-GPU B200 node is the same artefact
    dump = plan_row(row(id="dsv3_b200_sglang_fp4_agg_1024x1024_c16_cfg201", backend="sglang", tp_size="64", moe_tp_size="8",
                        moe_ep_size="8", batch_size="16", silicon_data_source="db-dump/2026-04-27; config_id=201; silicon_concurrency=16",
                        **base))
    assert dump.dep_kwargs is not None and dump.dep_kwargs["pools"]["pool"][:4] == (8, 1, 1, 8) and dump.base["num_gpus"] == 8, dump.reason
    # the attention-DP form: tp 1 x attention_dp 16, batch_size per rank of the columns (4 x 16 = 64 clients)
    adp = plan_row(row(id="2026_04_06_deepseek_r1_b200_sxm_trtllm_fp4_agg_1024x1024_c64_tp4_ep4_3", backend="trtllm", tp_size="1",
                       attention_dp_size="16", moe_tp_size="4", moe_ep_size="4", batch_size="4",
                       silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=64", **base))
    assert adp.dep_kwargs is not None, adp.reason
    assert adp.dep_kwargs["pools"]["pool"][:4] == (1, 1, 4, 4) and adp.base["num_gpus"] == 4 and adp.concurrency == 64
    assert "dp-attn: true" in adp.note
    # an id naming another layout still disagrees (rule 4b(i)), and tp 16 = 4 x 4 from a dump row fits a
    # 72-GPU NVLink domain (GB200), where nothing says it is not 16 GPUs
    other = plan_row(row(id="2026_04_06_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x1024_c16_tp8_ep8_21", backend="sglang",
                         tp_size="16", moe_tp_size="4", moe_ep_size="4", batch_size="16",
                         silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=16", **base))
    assert "disagree with the id" in other.reason
    # rule 10: the dump row listed first repeats its copy written tp4 ep4; the copy is the one kept
    from llmsim.serving.validate import plan_rows
    plans = plan_rows([row(id="dsv3_b200_sglang_fp4_agg_1024x1024_c16_cfg202", backend="sglang", tp_size="16", moe_tp_size="4",
                           moe_ep_size="4", batch_size="16", silicon_data_source="db-dump/2026-04-27; config_id=202; silicon_concurrency=16",
                           **base),
                       row(id="2026_04_06_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x1024_c16_tp4_0_ep4_0_9", backend="sglang", tp_size="4",
                           moe_tp_size="1", moe_ep_size="4", batch_size="16",
                           silicon_data_source="source_file=2026-04-06.csv; silicon_concurrency=16", **base)])
    assert plans[0].remapped and "another row (2026_04_06_" in plans[0].reason and plans[0].dep_kwargs is None
    assert not plans[1].reason and plans[1].dep_kwargs is not None
    # (Kimi-K2.5: InferenceMAX's GB200 DeepSeek-R1 rows written as aggregated are rule 4b(v)'s skips)
    nvl = plan_row(row(id="kimik2.5_gb200_sglang_fp4_agg_c16_cfg7", backend="sglang", tp_size="16", moe_tp_size="4", moe_ep_size="4",
                       batch_size="16", silicon_data_source="db-dump/2026-04-27; config_id=7; silicon_concurrency=16",
                       **{**base, "system": "gb200", "model_path": "moonshotai/Kimi-K2.5"}))
    assert nvl.dep_kwargs is not None and nvl.dep_kwargs["pools"]["pool"][:4] == (16, 1, 1, 4) and nvl.base["num_gpus"] == 16, nvl.reason


def test_inferencex_sglang_disagg_rows_run_their_srt_slurm_recipes():
    # rule 8c for disaggregated rows: InferenceX's SGLang DeepSeek-R1 entries on the v0.5.8 images ran
    # srt-slurm recipes whose prefill workers set chunked-prefill-size = 16384 x DP (SGLang divides it
    # by the DP size), against a default of 16384 per worker; tied to a row by GPU, precision,
    # ISL/OSL and both pools' layouts
    from llmsim.serving.simulate import Deployment, Pool, _build_pool, pool_batched_tokens
    from llmsim.serving.backends import get_backend
    from llmsim.serving.validate import build_deployment, inferencex_disagg_settings, plan_row
    from llmsim.models import get_model
    from llmsim.layout import Precision

    def disagg(image: str, pw: int, pdp: int, dw: int, ddp: int, conc: int, system: str = "gb300", precision: str = "fp8") -> dict:
        q = "nvfp4" if precision == "fp4" else "fp8"
        return row(id=f"dsr1_{system}_sglang_{precision}_disagg_1024x1024_c{conc}_cfg9", model_path="deepseek-ai/DeepSeek-R1-0528",
                   system=system, precision=precision, gemm_quant_mode=q, moe_quant_mode=q, backend="sglang", mode="disagg",
                   isl="1024", osl="1024", batch_size="", tp_size="", attention_dp_size="", moe_tp_size="", moe_ep_size="",
                   silicon_data_source=f"db-dump/2026-04-27; config_id=9; silicon_concurrency={conc}; measured=2026-02-12; {image}",
                   prefill_num_workers=str(pw), prefill_tp_size="1", prefill_attention_dp_size=str(pdp), prefill_moe_tp_size="1",
                   prefill_moe_ep_size=str(pdp), decode_num_workers=str(dw), decode_tp_size="1", decode_attention_dp_size=str(ddp),
                   decode_moe_tp_size="1", decode_moe_ep_size=str(ddp), silicon_ttft_ms="3000", silicon_tpot_ms="40")

    img = "lmsysorg/sglang:v0.5.8.post1-cu130"
    mid = plan_row(disagg(img, 2, 8, 1, 32, 4096))  # recipes/gb300-fp8/1k1k/stp/mid.yaml
    assert mid.dep_kwargs is not None, mid.reason
    assert mid.dep_kwargs["pool_settings"] == {"prefill": {"max_num_batched_tokens": 131072}} and "gb300-fp8/1k1k/stp/mid.yaml" in mid.note
    dep = build_deployment(mid.dep_kwargs)
    assert dep.prefill is not None and dep.decode is not None
    assert (dep.prefill.max_num_batched_tokens, dep.decode.max_num_batched_tokens, dep.max_num_batched_tokens) == (131072, None, None)
    # the prefill engine's ranks each take 16384 tokens an iteration (the default would give 2048)
    spec, be = get_model("deepseek-r1"), get_backend("sglang")
    build = _build_pool(spec, dep.prefill, dep, be, Precision("fp8", "fp8", "fp8"), "prefill")
    assert build.cfg.max_chunk_tokens == 16384
    default = _build_pool(spec, Pool("gb300", 1, 1, 8, 8, 2), dep, be, Precision("fp8", "fp8", "fp8"), "prefill")
    assert default.cfg.max_chunk_tokens == 2048
    assert pool_batched_tokens(Pool("gb300"), Deployment(max_num_batched_tokens=4096)) == 4096
    # the low-latency recipe also switches FlashInfer's all-reduce fusion off
    low = inferencex_disagg_settings(disagg(img, 1, 1, 4, 1, 8), "deepseek-r1", "sglang", "gb300", "fp8", 1024, 1024,
                                     {"prefill": (4, 1, 1, 1, 1), "decode": (4, 1, 1, 1, 4)})
    assert low == ("gb300-fp8/1k1k/stp/low-latency.yaml", {"prefill": {"max_num_batched_tokens": 8192}}, {"allreduce_norm_fusion": False})
    # an unknown topology, the December 2025 image, another backend or a user's CSV: the engine's defaults
    for other in (disagg(img, 3, 8, 1, 32, 4096), disagg("lmsysorg/sglang:v0.5.5.post2", 2, 8, 1, 32, 4096),
                  {**disagg(img, 2, 8, 1, 32, 4096), "silicon_data_source": f"source_file=mine.csv; silicon_concurrency=4096; {img}"}):
        p = plan_row(other)
        assert p.dep_kwargs is not None and "pool_settings" not in p.dep_kwargs, p.reason
    assert inferencex_disagg_settings(disagg(img, 2, 8, 1, 32, 4096), "deepseek-r1", "trtllm", "gb300", "fp8", 1024, 1024,
                                      {"prefill": (1, 1, 8, 8, 2), "decode": (1, 1, 32, 32, 1)}) == ("", {}, {})
    # a pool's own budget is checked like the deployment's
    with pytest.raises(LlmsimError, match="max_num_batched_tokens must be an integer >= 1"):
        _build_pool(spec, Pool("gb300", 1, 1, 8, 8, 1, max_num_batched_tokens=0), Deployment(), be, Precision("fp8", "fp8", "fp8"), "prefill")


def test_inferencex_trtllm_disagg_rows_run_their_srt_slurm_recipes():
    # rule 8c, TRT-LLM: the context server's max_num_tokens / max_batch_size and the generation server's
    # max_batch_size, per attention-DP rank, and chunked context off (the recipes never turn it on); a
    # generation batch below the clients' share keeps the rest waiting at the decode worker
    from dataclasses import replace

    from llmsim.serving.simulate import simulate
    from llmsim.serving.validate import build_deployment, closed_loop_workload, plan_row

    def disagg(conc: int, image: str = "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1.post2") -> dict:
        return row(id=f"dsr1_gb200_trtllm_fp4_disagg_1024x1024_c{conc}_cfg9", model_path="deepseek-ai/DeepSeek-R1-0528",
                   system="gb200", precision="fp4", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", backend="trtllm", mode="disagg",
                   isl="1024", osl="1024", batch_size="", tp_size="", attention_dp_size="", moe_tp_size="", moe_ep_size="",
                   silicon_data_source=f"db-dump/2026-04-27; config_id=9; silicon_concurrency={conc}; measured=2026-02-12; {image}",
                   prefill_num_workers="1", prefill_tp_size="1", prefill_attention_dp_size="4", prefill_moe_tp_size="1",
                   prefill_moe_ep_size="4", decode_num_workers="4", decode_tp_size="8", decode_attention_dp_size="1",
                   decode_moe_tp_size="1", decode_moe_ep_size="8", silicon_ttft_ms="4790", silicon_tpot_ms="10.6")

    p = plan_row(disagg(192))  # recipes/trtllm/gb200-fp4/1k1k/stp/ctx1_gen4_tep8_batch32_eplb0_mtp0.yaml
    assert p.dep_kwargs is not None, p.reason
    assert p.dep_kwargs["pool_settings"] == {"prefill": {"max_num_seqs": 4 * 16, "max_num_batched_tokens": 4 * 16384},
                                             "decode": {"max_num_seqs": 32}}
    assert p.dep_kwargs["engine"] == {"chunked_prefill": False} and "ctx1_gen4_tep8_batch32" in p.note
    dep = build_deployment(p.dep_kwargs)
    assert dep.decode is not None and dep.decode.max_num_seqs == 32 and dep.max_num_seqs >= 192  # (the deployment-wide cap)
    # 192 clients on 4 decode workers of 32: 64 wait at the decode workers for a slot (measured TTFT 4.8 s)
    wl = closed_loop_workload(192, 1024, 512, rounds=1)
    capped = simulate(dep, wl).summary
    uncapped = simulate(replace(dep, decode=replace(dep.decode, max_num_seqs=None)), wl).summary
    assert capped["ttft_ms"]["mean"] > 1.5 * uncapped["ttft_ms"]["mean"]
    # a concurrency outside the recipe's list: no recipe (each file names the concurrencies it ran)
    assert "pool_settings" not in plan_row(disagg(4)).dep_kwargs
    # the file holds every stp recipe, one key per concurrency
    from llmsim.serving.validate import trtllm_disagg_recipes
    table = trtllm_disagg_recipes()
    r = table[("gb200", "fp8", 8192, 1024, 6, (1, 8, 8, 1), (8, 1, 8, 3))]
    assert r["recipe"] == "gb200-fp8/8k1k/stp/ctx1_gen3_tep8_batch1_eplb0_mtp0_6.yaml" and r["gen_max_batch_size"] == "1"
    assert len(table) > 100
    # another image: TRT-LLM's defaults
    other = plan_row(disagg(192, "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.5.1-rc0.pre3"))
    assert other.dep_kwargs is not None and "pool_settings" not in other.dep_kwargs and other.dep_kwargs["engine"] == {}


def test_inferencemax_gb200_sglang_labelled_layouts_run_as_their_launch_scripts():
    # rule 4b(iv): the December 2025 GB200 SGLang disagg runs (image v0.5.5.post2) wrote every worker as
    # tp 1 x attention_dp N, moe_tp N; the scripts ran low-latency modes (4-GPU decode workers) at tp N
    # and max-throughput modes with attention DP + DeepEP over all of a worker's GPUs
    def disagg(cid: str, image: str, pw: int, ddp: int, dw: int, conc: int, system: str = "gb200", **kw) -> dict:
        return row(id=f"dsr1_{system}_sglang_fp4_disagg_1024x1024_c{conc}_{cid}", model_path="deepseek-ai/DeepSeek-R1-0528",
                   system=system, precision="fp4", gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", backend="sglang", mode="disagg",
                   isl="1024", osl="1024", batch_size="", tp_size="", attention_dp_size="", moe_tp_size="", moe_ep_size="",
                   silicon_data_source=f"db-dump/2026-04-27; {cid.replace('cfg', 'config_id=')}; silicon_concurrency={conc}; "
                                       f"measured=2025-12-21T00:00:00.000Z; {image}",
                   prefill_num_workers=str(pw), prefill_tp_size="1", prefill_attention_dp_size="4",
                   prefill_moe_tp_size="4", prefill_moe_ep_size="1", decode_num_workers=str(dw), decode_tp_size="1",
                   decode_attention_dp_size=str(ddp), decode_moe_tp_size=str(ddp), decode_moe_ep_size="1",
                   silicon_ttft_ms="300", silicon_tpot_ms="8", **kw)

    old = "lmsysorg/sglang:v0.5.5.post2"
    low = plan_row(disagg("cfg252", old, 1, 4, 2, 8))
    assert low.dep_kwargs is not None, low.reason
    assert low.dep_kwargs["pools"] == {"prefill": (4, 1, 1, 1, 1), "decode": (4, 1, 1, 1, 2)}
    assert low.base["layout"] == "P 1x(tp4) + D 2x(tp4)" and low.base["num_gpus"] == 12 and "InferenceMAX labels" in low.note
    high = plan_row(disagg("cfg259", old, 4, 32, 1, 8192))
    assert high.dep_kwargs is not None, high.reason
    assert high.dep_kwargs["pools"] == {"prefill": (1, 1, 4, 4, 4), "decode": (1, 1, 32, 32, 1)}
    assert "attention DP + DeepEP" in high.note and high.base["num_gpus"] == 48
    # a later image, another GPU, or a user's own CSV: the columns are the layout
    for other in (disagg("cfg486", "lmsysorg/sglang:v0.5.8-cu130", 1, 4, 2, 8),
                  disagg("cfg252", "lmsysorg/sglang:v0.5.5.post2.dev1", 1, 4, 2, 8),
                  disagg("cfg9", old, 1, 4, 2, 8, system="gb300"),
                  {**disagg("cfg252", old, 1, 4, 2, 8), "silicon_data_source": f"source_file=mine.csv; silicon_concurrency=8; {old}"}):
        p = plan_row(other)
        assert p.dep_kwargs is not None, p.reason
        assert p.dep_kwargs["pools"]["decode"][:4] == (1, 1, 4, 1) and "InferenceMAX labels" not in p.note


def test_inferencemax_gb200_deepseek_disagg_runs_written_as_aggregated_are_skipped():
    # rule 4b(v): InferenceMAX ran GB200 DeepSeek-R1 only as multi-node Dynamo disaggregated deployments;
    # the 2026-04-06 source writes some as aggregated rows whose tp is the deployment's GPU count
    def agg(tp: int, system: str = "gb200", source: str = "source_file=2026-04-06.csv; model=DeepSeek-R1; ") -> dict:
        return row(id=f"2026_04_06_deepseek_r1_{system}_trtllm_fp4_agg_8192x1024_c2150_tp{tp}_ep1_121",
                   model_path="deepseek-ai/DeepSeek-R1", system=system, precision="fp4", gemm_quant_mode="nvfp4",
                   moe_quant_mode="nvfp4", backend="trtllm", mode="agg", isl="8192", osl="1024", batch_size="2150",
                   tp_size=str(tp), pp_size="1", attention_dp_size="1", moe_tp_size=str(tp), moe_ep_size="1",
                   silicon_data_source=source + "silicon_concurrency=2150; measured=2025-11-17T00:00:00.000Z; wip=False",
                   silicon_ttft_ms="5755.3", silicon_tpot_ms="43.9")

    for tp in (32, 28):  # tp 32 divides the heads and used to run as one TP32 engine; tp 28 names a 4 + 3 x 8 deployment
        p = plan_row(agg(tp))
        assert p.dep_kwargs is None and "Dynamo disaggregated run written as aggregated" in p.reason, p.reason
        assert f"tp {tp} = the deployment's GPU count" in p.reason
    # another GPU, one GB200 tray, or a user's own CSV of the same columns: the columns are the layout
    assert plan_row(agg(8, system="b200_sxm")).dep_kwargs is not None
    assert "written as aggregated" not in plan_row(agg(4)).reason
    own = plan_row(agg(32, source="source_file=mine.csv; "))
    assert "written as aggregated" not in own.reason


# ------------------------------------------------------------------ bad input: never a traceback, never a guess


def test_a_binary_silicon_csv_is_a_clear_error(tmp_path):
    p = tmp_path / "binary.csv"
    p.write_bytes(b"id,backend\n\x9c\xff\xfe\x00\x81 not text" * 20)
    with pytest.raises(LlmsimError, match=r"binary\.csv is not UTF-8 text"):
        validate_silicon(p)
    d = tmp_path / "adir.csv"
    d.mkdir()
    with pytest.raises(LlmsimError, match="is not a regular file"):
        validate_silicon(d)


def _disagg(**kw) -> dict:
    return {**ROWS[3], **{k: str(v) for k, v in kw.items()}}


_MOE = dict(model_path="Qwen/Qwen3-235B-A22B-FP8", precision="fp8", gemm_quant_mode="fp8", moe_quant_mode="fp8",
            tp_size="4", moe_tp_size="1", moe_ep_size="4", batch_size="8")


@pytest.mark.parametrize("r, reason", [
    # non-finite / unparsable numbers (osl=inf used to raise OverflowError; isl=abc said "got 0/64")
    (row(osl="inf"), "osl 'inf' is not a finite number"),
    (row(osl="1e400"), "osl '1e400' is not a finite number"),
    (row(isl="abc"), "isl 'abc' is not a number"),
    (row(isl="nan"), "isl 'nan' is not a finite number"),
    (row(isl="512.5"), "isl must be a whole number, got '512.5'"),
    (row(isl=""), "isl/osl must be >= 1, got (empty)/64"),
    # layout sizes: negative or unparsable used to run as 1
    (row(tp_size="-1"), "tp_size must be an integer >= 1 (empty or 0 = 1), got '-1'"),
    (row(tp_size="abc"), "tp_size 'abc' is not a number"),
    (row(pp_size="-1"), "pp_size must be an integer >= 1 (empty or 0 = 1), got '-1'"),
    (row(attention_dp_size="two"), "attention_dp_size 'two' is not a number"),
    (row(tp_size="2.5"), "tp_size must be a whole number, got '2.5'"),
    (row(**{**_MOE, "moe_ep_size": "-4"}), "moe_ep_size must be an integer >= 1, got '-4'"),
    (row(**{**_MOE, "moe_tp_size": "x"}), "moe_tp_size 'x' is not a number"),
    (_disagg(prefill_tp_size="-1"), "prefill_tp_size must be an integer >= 1 (empty or 0 = 1), got '-1'"),
    (_disagg(decode_attention_dp_size="abc"), "decode_attention_dp_size 'abc' is not a number"),
    (_disagg(decode_moe_ep_size="-4"), "decode_moe_ep_size must be an integer >= 1, got '-4'"),
    (_disagg(prefill_num_workers="-1"), "prefill_num_workers must be an integer >= 1, got '-1'"),
    # batch sizes: bad values used to be ignored (concurrency from silicon_data_source) or rounded
    (row(batch_size="abc"), "batch_size 'abc' is not a number"),
    (row(batch_size="nan"), "batch_size 'nan' is not a finite number"),
    (row(batch_size="0"), "batch_size must be an integer >= 1 (per attention-DP rank; leave it empty if not recorded), got '0'"),
    (row(batch_size="8.7"), "batch_size must be a whole number, got '8.7'"),
    (_disagg(decode_batch_size="nan"), "decode_batch_size 'nan' is not a finite number"),
    # measured values: inf made the medians NaN, <= 0 dropped the row from the statistics silently
    (row(silicon_ttft_ms="inf"), "silicon_ttft_ms 'inf' is not a finite number"),
    (row(silicon_ttft_ms="-5"), "silicon_ttft_ms must be > 0 ms, got '-5'"),
    (row(silicon_ttft_ms="0"), "silicon_ttft_ms must be > 0 ms, got '0'"),
    (row(silicon_tpot_ms="inf"), "silicon_tpot_ms 'inf' is not a finite number"),
    (row(silicon_tpot_ms="-5"), "silicon_tpot_ms must be > 0 ms, got '-5'"),
])
def test_a_bad_cell_skips_the_row_naming_the_column_and_value(r, reason):
    p = plan_row(r)
    assert p.dep_kwargs is None and p.reason == reason
    rep = validate_silicon(None, rows=[r])  # listed with the reason, never dropped, never a traceback
    (out,) = rep.rows
    assert out["status"] == "skipped" and out["reason"] == reason
    json.dumps(rep.to_dict(), allow_nan=False)  # no inf / NaN leaks into the report


@pytest.mark.parametrize("r", [
    row(tp_size="", pp_size="0", attention_dp_size="0"),  # empty or 0 -> 1 (rule 4; the shared CSV has such rows)
    row(batch_size=""),  # not recorded: concurrency from silicon_data_source
    row(silicon_tpot_ms=""),  # one measured metric is enough
    row(osl="1", silicon_tpot_ms="0"),  # TPOT undefined for one output token: not measured
    row(isl="512.0"),
])
def test_empty_and_zero_cells_keep_their_documented_meaning(r):
    p = plan_row(r)
    assert p.dep_kwargs is not None, p.reason
    assert p.dep_kwargs["pools"]["pool"] == (1, 1, 1, 1, 1) and p.concurrency == 8 and p.isl == 512


@pytest.mark.skipif(not SILICON.is_file(), reason="shared silicon CSV not present")
def test_no_row_of_the_shared_csv_is_skipped_for_a_bad_cell():
    from llmsim.serving.validate import plan_rows, read_silicon_csv

    plans = plan_rows(read_silicon_csv(SILICON))
    bad = [p.reason for p in plans if re.search(r"is not a (finite )?number|whole number|must be an integer >= 1|must be > 0 ms",
                                                 p.reason)]
    assert not bad, bad[:5]
    assert sum(p.dep_kwargs is not None for p in plans) > 2000


def test_write_rows_to_a_directory_is_a_clear_error(report, tmp_path):
    with pytest.raises(LlmsimError, match="is a directory"):
        report.write_rows(tmp_path)


def _copy_rows(tmp_path, edit) -> Path:
    """A copy of the silicon CSV's header and first two data rows, passed through `edit(header, rows)`."""
    with SILICON.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))[:3]
    header, data = edit(rows[0], rows[1:])
    out = tmp_path / "rows.csv"
    with out.open("w", newline="") as f:
        csv.writer(f).writerows([header, *data])
    return out


@pytest.mark.skipif(not SILICON.exists(), reason="shared silicon CSV not present")
def test_malformed_silicon_rows_are_listed_and_duplicated_columns_refused(tmp_path):
    # a duplicated column silently used its last copy (an isl of 99999); a short row read as
    # "unknown mode ''" and a row with extra fields was simulated as if nothing were wrong
    dup = _copy_rows(tmp_path, lambda h, d: (h + ["isl"], [r + ["99999"] for r in d]))
    with pytest.raises(LlmsimError, match=r"names column\(s\) \['isl'\] more than once"):
        read_silicon_csv(dup)
    bad = _copy_rows(tmp_path, lambda h, d: (h, [d[0][:5], d[1] + ["extra"]]))
    rows = read_silicon_csv(bad)
    plans = plan_rows(rows)
    reasons = [p.reason for p in plans]
    assert reasons == [f"malformed CSV row: line 2 has 5 fields, the header {len(rows[0]) - 1}",
                       f"malformed CSV row: line 3 has {len(rows[0])} fields, the header {len(rows[0]) - 1}"]
    assert all(p.dep_kwargs is None for p in plans)


def test_skip_reason_classes_keep_the_digits_of_names():
    assert reason_class("unknown GPU 'h900_sxm'") == "unknown GPU 'h900_sxm'"
    assert reason_class("llama-3.1-8b: tp 3 does not divide 32 heads") == "llama-3.1-8b: tp N does not divide N heads"


def test_cli_fails_when_no_row_can_be_modelled(tmp_path, capsys):
    # a report that compares nothing is a failed check: the skip reasons are printed (or in the
    # JSON's skipped[]) and the exit status is 1, not 0
    f = tmp_path / "unknown.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows([row(id="a_c8", model_path="nobody/NoSuchModel-7B")])
    for extra in ([], ["--json"]):
        with pytest.raises(SystemExit) as e:
            main(["validate", "silicon", str(f), *extra])
        assert e.value.code == 1
        cap = capsys.readouterr()
        assert "none of the 1 rows could be modelled" in " ".join(cap.err.split())
        assert "model not in catalog" in cap.out
    ok = tmp_path / "one.csv"
    with ok.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows([row(id="a_c8", model_path="nobody/NoSuchModel-7B"), row(id="b_c8")])
    main(["validate", "silicon", str(ok), "--json"])  # one row modelled: a normal report, status 0
    assert json.loads(capsys.readouterr().out)["overall"]["rows_modelled"] == 1
