"""The command line: `llmsim estimate | models | gpus`, JSON output and error exits."""

from __future__ import annotations

import json

import pytest
import yaml

from rich.console import Console

from llmsim import cli
from llmsim.cli import main


def run_json(capsys, *argv):
    main(list(argv))
    out = capsys.readouterr().out
    return json.loads(out)


def run_error(capsys, *argv):
    with pytest.raises(SystemExit) as ei:
        main(list(argv))
    cap = capsys.readouterr()
    return ei.value.code, cap.out, cap.err


# ------------------------------------------------------------------ estimate


def test_estimate_json(capsys):
    d = run_json(capsys, "estimate", "--model", "meta-llama/Llama-3.1-70B", "--gpu", "h100-sxm", "--tp", "4", "--json")
    assert d["model"] == "llama-3.1-70b"
    assert d["gpu"] == "h100-sxm"
    assert d["tp"] == 4 and d["num_gpus"] == 4
    assert d["fits"] is True
    for k in ("prefill_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s", "max_concurrency", "memory"):
        assert k in d
    for k in ("weights_bytes", "kv_cache_bytes", "activation_bytes", "total_bytes"):
        assert k in d["memory"]
    # defaults: batch 1, isl 1024, osl 128
    assert (d["batch"], d["isl"], d["osl"]) == (1, 1024, 128)
    assert d["e2e_ms"] == pytest.approx(d["prefill_ms"] + 127 * d["tpot_ms"], rel=1e-9)
    assert "prefill_ops" not in d


def test_estimate_explain_json(capsys):
    d = run_json(capsys, "estimate", "--model", "llama-3.1-8b", "--explain", "--json", "--isl", "256", "--osl", "8")
    assert d["prefill_ops"] and d["decode_ops"]
    for o in d["prefill_ops"]:
        assert o["bound"] in ("compute", "memory", "network", "latency")
        assert o["source"].split(":")[0] in ("measured", "roofline", "none")
        for k in ("name", "count", "time_ms", "flops", "bytes", "efficiency"):
            assert k in o
    names = {o["name"] for o in d["prefill_ops"]}
    assert {"qkv_proj", "attn_prefill", "mlp_up", "lm_head"} <= names


def test_estimate_text(capsys):
    main(["estimate", "--model", "llama-3.1-8b", "--isl", "256", "--osl", "8"])
    out = capsys.readouterr().out
    assert "TPOT" in out
    assert "fits" in out
    assert "llama-3.1-8b" in out


def test_estimate_text_explain(capsys, monkeypatch):
    # a wide console so that rich does not truncate the per-operator table's cells
    monkeypatch.setattr(cli, "out", Console(width=250))
    main(["estimate", "--model", "llama-3.1-8b", "--isl", "256", "--osl", "8", "--explain", "--kernels", "none"])
    out = capsys.readouterr().out
    assert "qkv_proj" in out and "roofline" in out


def test_estimate_options_reach_the_model(capsys):
    d = run_json(
        capsys, "estimate", "--model", "llama-3.1-8b", "--batch", "4", "--isl", "300", "--osl", "20",
        "--weight-dtype", "fp8", "--kv-dtype", "fp8", "--kernels", "none", "--price", "10", "--json",
    )
    assert (d["batch"], d["isl"], d["osl"]) == (4, 300, 20)
    assert (d["weight_dtype"], d["act_dtype"], d["kv_dtype"]) == ("fp8", "fp8", "fp8")
    assert d["kernel_source"] == "roofline"
    assert d["usd_per_million_output_tokens"] == pytest.approx(10 / 3600 / d["output_tokens_per_s"] * 1e6, rel=1e-9)


def test_estimate_not_fitting_is_not_an_error(capsys):
    d = run_json(capsys, "estimate", "--model", "llama-3.1-70b", "--json", "--kernels", "none")
    assert d["fits"] is False
    assert "does not fit" in d["message"]


# ------------------------------------------------------------------ catalogs


def test_models_list_json(capsys):
    d = run_json(capsys, "models", "list", "--json")
    by = {m["name"]: m for m in d}
    assert "llama-3.1-70b" in by
    assert 70.0e9 < by["llama-3.1-70b"]["total_params"] < 71.0e9
    assert by["llama-3.1-70b"]["hf_id"] == "meta-llama/Llama-3.1-70B"
    # MoE: active < total
    assert by["mixtral-8x7b"]["active_params"] < by["mixtral-8x7b"]["total_params"]


def test_models_list_text(capsys):
    main(["models", "list"])
    assert "llama-3.1-70b" in capsys.readouterr().out


def test_models_show_gpt3(capsys):
    d = run_json(capsys, "models", "show", "gpt3-175b", "--json")
    assert d["name"] == "gpt3-175b"
    assert d["hidden_size"] == 12288 and d["num_layers"] == 96 and d["num_heads"] == 96
    # 96 layers x 12 d^2 (attention 4 d^2 + MLP 8 d^2) = 173.9B, plus embeddings: ~175B
    assert 174e9 < d["total_params"] < 176e9
    assert d["kv_cache_elements_per_token"] == 96 * 2 * 96 * 128


def test_gpus_list_json(capsys):
    d = run_json(capsys, "gpus", "list", "--json")
    names = {g["name"] for g in d}
    assert {"h100-sxm", "a100-sxm-80gb"} <= names
    h = next(g for g in d if g["name"] == "h100-sxm")
    assert h["peak_tflops"]["bf16"] == pytest.approx(989.4)
    assert "efficiency" not in h


def test_gpus_show_json(capsys):
    d = run_json(capsys, "gpus", "show", "h100", "--json")
    assert d["name"] == "h100-sxm"
    assert d["memory_bytes"] == pytest.approx(79.65 * 1024**3)
    assert d["memory_bandwidth_bytes_per_s"] == pytest.approx(3.35e12)


# ------------------------------------------------------------------ errors


def test_unknown_model_exit_2(capsys):
    code, out, err = run_error(capsys, "estimate", "--model", "no-such-model-xyz", "--json")
    assert code == 2
    assert "unknown model" in err
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""


def test_tp3_exit_2(capsys):
    code, _, err = run_error(capsys, "estimate", "--tp", "3")
    assert code == 2
    assert "tp=3" in err
    assert "Traceback" not in err


def test_unknown_gpu_exit_2(capsys):
    code, _, err = run_error(capsys, "gpus", "show", "h999")
    assert code == 2
    assert "unknown GPU" in err


def test_bad_batch_exit_2(capsys):
    code, _, err = run_error(capsys, "estimate", "--batch", "0")
    assert code == 2
    assert "batch" in err


@pytest.mark.parametrize(
    "argv",
    [["estimate", "--tp", "three"], ["estimate", "--no-such-option"], ["models", "show"]],
    ids=["bad-int", "unknown-option", "missing-argument"],
)
def test_usage_error_exit_2(capsys, argv):
    code, _, err = run_error(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err


# ------------------------------------------------------------------ custom GPU files


def test_custom_gpu_file_double_bandwidth(capsys, tmp_path):
    f = tmp_path / "h100-2xbw.yaml"
    f.write_text(yaml.safe_dump({"base": "h100-sxm", "memory_bandwidth_gbps": 6700}))
    common = ["--model", "llama-3.1-8b", "--batch", "1", "--isl", "512", "--osl", "64", "--kernels", "none", "--json"]
    fast = run_json(capsys, "estimate", "--gpu", str(f), *common)
    base = run_json(capsys, "estimate", "--gpu", "h100-sxm", *common)
    assert fast["gpu"] == "h100-2xbw"
    # batch-1 decode streams the weights: doubling HBM bandwidth cuts TPOT substantially (not fully: launches)
    assert fast["tpot_ms"] < 0.75 * base["tpot_ms"]
    assert fast["tpot_ms"] > 0.5 * base["tpot_ms"]

    shown = run_json(capsys, "gpus", "show", str(f), "--json")
    assert shown["memory_bandwidth_bytes_per_s"] == pytest.approx(6.7e12)
    assert shown["peak_tflops"]["bf16"] == pytest.approx(989.4)  # inherited


def test_custom_gpu_file_default_kernels(capsys, tmp_path):
    # with kernels=auto the custom chip is not the measured H100: it falls back to the roofline
    f = tmp_path / "fastchip.yaml"
    f.write_text("base: h100-sxm\nmemory_bandwidth_gbps: 6700\n")
    d = run_json(capsys, "estimate", "--gpu", str(f), "--model", "llama-3.1-8b", "--isl", "256", "--osl", "8", "--json")
    assert d["kernel_source"] == "roofline"


def test_bad_gpu_file_exit_2(capsys, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("base: h100-sxm\nmemory_bandwith_gbps: 6700\n")  # typo
    code, _, err = run_error(capsys, "estimate", "--gpu", str(f))
    assert code == 2
    assert "memory_bandwith_gbps" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["estimate", "serve", "plan", "train", "profile", "calibrate", "validate silicon",
                                     "models list", "gpus list"])
def test_every_command_help_renders(command, capsys):
    # help texts go through rich markup: a stray "[...]" in one crashed `llmsim plan --help`
    main([*command.split(), "--help"])  # exits 0 (main returns); a markup error would raise
    assert "Usage" in capsys.readouterr().out


def test_no_help_text_is_eaten_by_rich_markup():
    # typer renders help through rich markup, which silently drops a "[...]" it reads as a tag
    # (`validate silicon --range-ratio` lost "[int(L x ratio), L]" and `profile` told users to
    # `pip install 'llmsim'` instead of 'llmsim[profile]'): every command's and option's help must
    # come out exactly as written
    import typer
    from rich.text import Text

    from llmsim.cli import app

    eaten, seen = [], []

    def walk(cmd, path):
        texts = [(path, cmd.help or "")] + [(f"{path} {p.opts[0] if p.opts else p.name}", getattr(p, "help", None) or "")
                                             for p in cmd.params]
        seen.extend(where for where, t in texts if t)
        eaten.extend((where, t) for where, t in texts if t and Text.from_markup(t).plain != t.replace("\\[", "["))  # "\\[": a literal "["
        for name, sub in (getattr(cmd, "commands", None) or {}).items():  # groups (typer vendors its own click)
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "llmsim")
    assert "llmsim validate silicon --range-ratio" in seen and len(seen) > 100  # the walk reaches every subcommand
    assert eaten == []


def test_serve_disaggregated_handoff_option(capsys):
    """--handoff-ms reaches the simulation and the JSON says which value made the numbers."""
    base = ["serve", "--model", "llama-3.1-8b", "--kernels", "none", "--prefill-gpu", "h100-sxm", "--decode-gpu", "h100-sxm",
            "--backend", "sglang", "--concurrency", "1", "--num-requests", "4", "--isl", "256", "--osl", "8", "--json"]
    slow = run_json(capsys, *base, "--handoff-ms", "100")
    fast = run_json(capsys, *base, "--handoff-ms", "0")
    assert (slow["disagg_handoff_s"], fast["disagg_handoff_s"]) == (0.1, 0.0)
    assert slow["ttft_ms"]["mean"] - fast["ttft_ms"]["mean"] == pytest.approx(100.0, abs=1e-6)


def test_serve_pool_options_alone_make_a_disaggregated_deployment(capsys):
    """--prefill-* / --decode-* layout options without --prefill-gpu / --decode-gpu still describe
    two pools (on --gpu); they are never dropped for a single aggregated replica."""
    base = ["serve", "--model", "llama-3.1-8b", "--kernels", "none", "--gpu", "h100-sxm", "--backend", "sglang",
            "--concurrency", "2", "--num-requests", "4", "--isl", "256", "--osl", "8", "--json"]
    named = run_json(capsys, *base, "--prefill-gpu", "h100-sxm", "--decode-gpu", "h100-sxm", "--decode-tp", "2", "--prefill-workers", "2")
    implied = run_json(capsys, *base, "--decode-tp", "2", "--prefill-workers", "2")
    agg = run_json(capsys, *base)
    assert implied["num_gpus"] == named["num_gpus"] == 4 and agg["num_gpus"] == 1  # 2 x tp1 prefill + 1 x tp2 decode
    assert implied["ttft_ms"] == named["ttft_ms"] and implied["tpot_ms"] == named["tpot_ms"]


def test_serve_pool_own_budget_and_request_cap(capsys):
    """--prefill-max-num-batched-tokens / --decode-max-num-seqs set one pool's own settings (the summary's
    `pools` say so); a decode cap below the clients keeps the rest waiting for a slot, so TTFT grows."""
    base = ["serve", "--model", "llama-3.1-8b", "--kernels", "none", "--gpu", "h100-sxm", "--backend", "vllm", "--prefill-tp", "1",
            "--decode-workers", "2", "--concurrency", "32", "--num-requests", "64", "--isl", "512", "--osl", "128", "--json"]
    own = run_json(capsys, *base, "--prefill-max-num-batched-tokens", "2048", "--decode-max-num-seqs", "8")
    plain = run_json(capsys, *base)
    pre, dec = own["pools"]
    assert (pre["role"], pre["max_num_batched_tokens"], dec["role"], dec["max_num_seqs"]) == ("prefill", 2048, "decode", 8)
    assert plain["pools"][1]["max_num_seqs"] > 8 and plain["pools"][0]["max_num_batched_tokens"] != 2048
    assert own["ttft_ms"]["mean"] > 2 * plain["ttft_ms"]["mean"]
    code, out, err = run_error(capsys, *base, "--decode-max-num-seqs", "0")
    assert code != 0 and "--decode-max-num-seqs" in out + err


def test_serve_prefill_layer_option(capsys):
    """--prefill-layer-us reaches the simulation (one client: each TTFT grows by layers x it)
    and the JSON says which value made the numbers."""
    base = ["serve", "--model", "llama-3.1-8b", "--kernels", "none", "--backend", "vllm", "--concurrency", "1",
            "--num-requests", "4", "--isl", "2000", "--osl", "8", "--json"]
    slow = run_json(capsys, *base, "--prefill-layer-us", "500")
    off = run_json(capsys, *base, "--prefill-layer-us", "0")
    assert (slow["prefill_layer_s"], off["prefill_layer_s"]) == (5e-4, 0.0)
    assert slow["ttft_ms"]["mean"] - off["ttft_ms"]["mean"] == pytest.approx(32 * 0.5, abs=1e-6)  # 32 layers
    code, out, err = run_error(capsys, *base, "--prefill-layer-us", "-5")
    assert code != 0 and "--prefill-layer-us must be a number of µs, at least 0" in out + err


def test_serve_summary_names_each_pools_layout(capsys):
    """The terminal summary's title names both pools' full layout (dp / ep as well as tp)."""
    main(["serve", "--model", "mixtral-8x7b", "--kernels", "none", "--weight-dtype", "fp8", "--backend", "sglang",
          "--prefill-gpu", "h100-sxm", "--prefill-dp", "2", "--prefill-ep", "2", "--decode-gpu", "h100-sxm", "--decode-tp", "2",
          "--concurrency", "2", "--num-requests", "4", "--isl", "256", "--osl", "8"])
    out = " ".join(capsys.readouterr().out.split())  # the title wraps at the table's width
    assert "prefill 1x (tp=1 pp=1 dp=2 ep=2) on h100-sxm + decode 1x (tp=2 pp=1 dp=1 ep=1) on h100-sxm" in out


def test_serve_moe_efficiency_option(capsys):
    """--moe-efficiency reaches the simulation (a MoE model's long prompt takes longer) and the JSON."""
    base = ["serve", "--model", "mixtral-8x7b", "--weight-dtype", "fp8", "--kernels", "none", "--backend", "vllm",
            "--concurrency", "1", "--num-requests", "2", "--isl", "8000", "--osl", "4", "--json"]
    slow = run_json(capsys, *base, "--moe-efficiency", "0.25")
    full = run_json(capsys, *base, "--moe-efficiency", "1")
    assert (slow["moe_efficiency"], full["moe_efficiency"]) == ([0.25], [1.0])
    assert slow["ttft_ms"]["mean"] > full["ttft_ms"]["mean"]
    code, out, err = run_error(capsys, *base, "--moe-efficiency", "0")
    assert code != 0 and "--moe-efficiency must be in (0, 1]" in out + err


def test_serve_prefill_a2a_option(capsys):
    """--prefill-a2a-gbps holds an attention-DP + EP pool's prefill all-to-alls to that bandwidth
    (a slower one: longer TTFT, the same decode steps) and is reported in the JSON, in bytes/s."""
    base = ["serve", "--model", "mixtral-8x7b", "--weight-dtype", "fp8", "--kernels", "none", "--backend", "sglang", "--gpu", "h100-sxm",
            "--tp", "1", "--dp", "4", "--ep", "4", "--concurrency", "1", "--num-requests", "3", "--isl", "4000", "--osl", "4", "--json"]
    slow, off, default = (run_json(capsys, *base, "--prefill-a2a-gbps", "20"), run_json(capsys, *base, "--prefill-a2a-gbps", "0"),
                          run_json(capsys, *base))
    assert (slow["prefill_a2a_bw_bytes_s"], off["prefill_a2a_bw_bytes_s"], default["prefill_a2a_bw_bytes_s"]) == ([20e9], [0.0], [300e9])
    assert slow["ttft_ms"]["mean"] > default["ttft_ms"]["mean"] >= off["ttft_ms"]["mean"]
    assert slow["tpot_ms"]["mean"] == pytest.approx(off["tpot_ms"]["mean"], rel=1e-9)
    code, out, err = run_error(capsys, *base, "--prefill-a2a-gbps", "-5")
    assert code != 0 and "--prefill-a2a-gbps must be a number of GB/s, at least 0" in " ".join((out + err).split())
    tp_only = base[:base.index("--dp")] + ["--dp", "1"] + base[base.index("--dp") + 2:]  # ep 4 without attention DP: no all-to-all
    code, out, err = run_error(capsys, *tp_only, "--prefill-a2a-gbps", "20")
    assert code != 0 and "no pool has dp > 1 and ep > 1" in " ".join((out + err).split())


def test_serve_adp_balance_options(capsys):
    """--adp-balance-timeout-iters holds prompts on an attention-DP pool (longer TTFT) and is reported in the JSON."""
    base = ["serve", "--model", "mixtral-8x7b", "--weight-dtype", "fp8", "--kernels", "none", "--backend", "trtllm", "--gpu", "h100-sxm",
            "--tp", "1", "--dp", "4", "--ep", "4", "--concurrency", "16", "--num-requests", "64", "--input-dist", "uniform:700,900",
            "--output-dist", "uniform:100,200",
            "--client-jitter-ms", "5", "--json"]
    held = run_json(capsys, *base, "--adp-balance-timeout-iters", "40", "--adp-balance-batching-iters", "2")
    free = run_json(capsys, *base)
    assert (held["adp_balance_timeout_iters"], held["adp_balance_batching_iters"]) == (40, 2)
    assert free["adp_balance_timeout_iters"] == 0
    assert held["ttft_ms"]["mean"] > free["ttft_ms"]["mean"]
    code, out, err = run_error(capsys, *base, "--adp-balance-timeout-iters", "-1")
    assert code != 0 and "--adp-balance-timeout-iters must be an integer >= 0" in out + err


def test_serve_prefill_moe_layer_option(capsys):
    """--prefill-moe-layer-us reaches the simulation (a MoE model's TTFT grows) and the JSON; a negative value is an error."""
    base = ["serve", "--model", "mixtral-8x7b", "--weight-dtype", "fp8", "--kernels", "none", "--backend", "vllm",
            "--concurrency", "1", "--num-requests", "2", "--isl", "1000", "--osl", "4", "--json"]
    slow = run_json(capsys, *base, "--prefill-moe-layer-us", "500")
    off = run_json(capsys, *base, "--prefill-moe-layer-us", "0")
    assert (slow["prefill_moe_layer_s"], off["prefill_moe_layer_s"]) == (5e-4, 0.0)
    assert slow["ttft_ms"]["mean"] - off["ttft_ms"]["mean"] == pytest.approx(32 * 0.5, rel=1e-6)  # 32 MoE layers
    code, out, err = run_error(capsys, *base, "--prefill-moe-layer-us", "-5")
    assert code != 0 and "--prefill-moe-layer-us must be a number of µs, at least 0" in out + err


def test_estimate_ep_imbalance_option(capsys):
    """`llmsim estimate --ep-imbalance` reaches the op builder (a slower MoE prefill) and the JSON; bad values are errors."""
    base = ["estimate", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--kernels", "none", "--dp", "4", "--ep", "4",
            "--batch", "32", "--isl", "1024", "--osl", "8", "--json"]
    hot, even = run_json(capsys, *base, "--ep-imbalance", "1.5"), run_json(capsys, *base)
    assert (hot["ep_imbalance"], even["ep_imbalance"]) == (1.5, 1.0)
    assert hot["prefill_ms"] > even["prefill_ms"]
    for bad, msg in (("0.9", "ep_imbalance must be 'auto' or a number >= 1"), ("lots", "--ep-imbalance must be 'auto' or a number")):
        code, out, err = run_error(capsys, *base, "--ep-imbalance", bad)
        assert code != 0 and msg in out + err, (bad, out + err)


def test_serve_ep_imbalance_option(capsys):
    """--ep-imbalance reaches the simulation (an expert-parallel MoE pool decodes slower) and the JSON; bad values are errors."""
    base = ["serve", "--model", "mixtral-8x7b", "--weight-dtype", "fp8", "--kernels", "none", "--backend", "vllm", "--gpu", "h100-sxm",
            "--tp", "1", "--dp", "4", "--ep", "4", "--concurrency", "64", "--num-requests", "128", "--isl", "512", "--osl", "64", "--json"]
    hot = run_json(capsys, *base, "--ep-imbalance", "1.5")
    auto = run_json(capsys, *base, "--ep-imbalance", "auto")
    even = run_json(capsys, *base)
    assert (hot["ep_imbalance"], even["ep_imbalance"]) == ([1.5], [1.0])
    assert 1.0 <= auto["ep_imbalance"][0] < 1.5  # 8 experts over 4 GPUs: two each
    assert hot["tpot_ms"]["mean"] > even["tpot_ms"]["mean"]
    for bad, msg in (("0.9", "--ep-imbalance must be 'auto' or a number >= 1"), ("lots", "--ep-imbalance must be 'auto' or a number")):
        code, out, err = run_error(capsys, *base, "--ep-imbalance", bad)
        assert code != 0 and msg in out + err, (bad, out + err)


def test_serve_bad_engine_options_are_errors_not_defaults(capsys):
    """Zero or negative engine limits, and disaggregation-only options on an aggregated run, exit with a
    message; `--tpot-slo 0` is refused rather than dropping the SLO (it used to disable goodput silently)."""
    base = ["serve", "--model", "llama-3.1-8b", "--kernels", "none", "--concurrency", "2", "--num-requests", "4",
            "--isl", "100", "--osl", "10", "--json"]
    for opt, msg in ((("--max-num-seqs", "0"), "--max-num-seqs must be an integer >= 1"),
                     (("--max-num-batched-tokens", "-3"), "--max-num-batched-tokens must be an integer >= 1"),
                     (("--block-size", "0"), "--block-size must be an integer >= 1"),
                     (("--cpu-overhead-ms", "-1"), "--cpu-overhead-ms must be a number of ms, at least 0 and at most an hour, got -1"),
                     (("--client-jitter-ms", "1e308"), "--client-jitter-ms must be a number of ms"),
                     (("--block-size", "1000000"), "--block-size must be at most 4096"),
                     (("--act-dtype", "fp8"), "fp8 activations need quantised weights"),
                     (("--ep-imbalance", "2"), "no pool has ep > 1"),
                     (("--moe-efficiency", "0.5"), "llama-3.1-8b is a dense model"),
                     (("--prefill-a2a-gbps", "300"), "llama-3.1-8b is a dense model"),
                     (("--batch-wait-tokens-ratio", "0.5"), "give --batch-wait-iters N too"),
                     (("--adp-balance-timeout-iters", "50"), "no pool has dp > 1"),
                     (("--adp-balance-batching-iters", "5"), "give --adp-balance-timeout-iters N too"),
                     (("--max-num-batched-tokens", "50", "--no-chunked-prefill"), "a prompt of 100 tokens exceeds --max-num-batched-tokens = 50"),
                     (("--tpot-slo", "0"), "--tpot-slo (ms) must be a number > 0"),
                     (("--first-token-from", "decode"), "only applies to a disaggregated deployment"),
                     (("--handoff-ms", "10"), "only applies to a disaggregated deployment")):
        code, out, err = run_error(capsys, *base, *opt)
        assert code != 0 and msg in " ".join((out + err).split()), (opt, out + err)  # (rich wraps long lines)
    good = run_json(capsys, *base, "--tpot-slo", "1000")
    assert good["slo"]["tpot_ms"] == 1000 and good["slo_attainment"] == 1.0


def test_output_paths_that_are_directories_are_refused_up_front(capsys, tmp_path):
    """serve -o, validate --rows and calibrate --out / --rows naming a directory exit with a message
    before any work (they used to end in IsADirectoryError after the run)."""
    csv = tmp_path / "rows.csv"
    csv.write_text("id\n")
    for argv in (["serve", "--model", "llama-3.1-8b", "--concurrency", "2", "--num-requests", "4", "--isl", "100", "--osl", "10",
                  "-o", str(tmp_path)],
                 ["validate", "silicon", str(csv), "--rows", str(tmp_path)],
                 ["calibrate", str(csv), "--gpu", "h100-sxm", "--rows", str(tmp_path)],
                 ["calibrate", str(csv), "--gpu", "h100-sxm", "--out", str(tmp_path)]):
        code, out, err = run_error(capsys, *argv)
        assert code != 0 and "is a directory" in " ".join((out + err).split()), (argv, out + err)


def test_outputs_that_would_overwrite_an_input_or_change_format_are_refused(capsys, tmp_path):
    """serve -o onto its own trace and validate --rows onto its own CSV used to replace the input
    with the results; validate --rows x.parquet wrote CSV text under a Parquet name."""
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n0.5,20,5\n")
    silicon = tmp_path / "s.csv"
    silicon.write_text("id,backend,model_path,system,mode,isl,osl,silicon_ttft_ms,silicon_tpot_ms\n")
    for argv, msg in ((["serve", "--trace", str(trace), "-o", str(trace)], "would overwrite it"),
                      (["serve", "--rate", "1", "--num-requests", "4", "--input-dist", f"trace:{trace}:input", "--osl", "4",
                        "-o", str(trace)], "would overwrite it"),
                      (["validate", "silicon", str(silicon), "--rows", str(silicon)], "would overwrite it"),
                      (["validate", "silicon", str(silicon), "--rows", str(tmp_path / "r.parquet")], "written as CSV")):
        code, out, err = run_error(capsys, *argv)
        assert code != 0 and msg in " ".join((out + err).split()), (argv, out + err)
    assert trace.read_text().startswith("TIMESTAMP")


def test_python_dash_m_runs_the_cli():
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-m", "llmsim", "--help"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(src)})
    assert r.returncode == 0 and "serve" in r.stdout


def test_serve_names_the_resolved_gpu_and_takes_hyphenated_routers(capsys):
    main(["serve", "--gpu", "h100", "--router", "least-outstanding", "--replicas", "2", "--kernels", "none",
          "--rate", "2", "--num-requests", "6", "--isl", "64", "--osl", "4"])
    assert "on h100-sxm" in " ".join(capsys.readouterr().out.split())


def test_serve_warm_up_without_a_window_prints_rates_and_aggregated_options_clash_with_pools(capsys):
    # the text summary used to crash formatting a None throughput; a warm-up that leaves no
    # closed-loop window now measures the counted request over its own life (as an open loop)
    main(["serve", "--model", "llama-3.1-8b", "--kernels", "none", "--concurrency", "2", "--num-requests", "4",
          "--isl", "10", "--osl", "1", "--warmup", "3"])
    out = " ".join(capsys.readouterr().out.split())
    assert "finished in one instant" not in out and "output tok/s" in out
    # --tp with --decode-* options: the aggregated layout would have been ignored
    code, out, err = run_error(capsys, "serve", "--model", "llama-3.1-8b", "--tp", "2", "--decode-tp", "2", "--concurrency", "2",
                               "--num-requests", "4", "--isl", "10", "--osl", "5")
    assert code != 0 and "lay out an aggregated replica" in " ".join((out + err).split())
