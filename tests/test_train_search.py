"""The vectorised layout search shares its formulas with `train_estimate`: same numbers per layout,
only valid layouts, ranked by throughput, memory fit respected."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.training import search_layouts, train_estimate
from llmsim.training.estimate import build_result, make_context
from llmsim.training.layout import check_layout
from llmsim.training.search import enumerate_layouts
from llmsim.training.step import evaluate

H100 = "h100-sxm"


def _scalar(model, ctx_kw, lay):
    return train_estimate(model, H100, num_gpus=ctx_kw["num_gpus"], global_batch=ctx_kw["global_batch"], seq_len=ctx_kw["seq_len"],
                          tp=lay["tp"], pp=lay["pp"], vpp=lay["vpp"], cp=lay["cp"], ep=lay["ep"], dp=lay["dp"], zero=lay["zero"],
                          micro_batch=lay["micro_batch"], recompute=lay["recompute"], **ctx_kw.get("opts", {}))


@pytest.mark.parametrize("model,ctx_kw", [
    ("llama-3.1-8b", {"num_gpus": 16, "global_batch": 64, "seq_len": 4096}),
    ("mixtral-8x7b", {"num_gpus": 32, "global_batch": 64, "seq_len": 4096}),
    ("gpt3-175b", {"num_gpus": 64, "global_batch": 128, "seq_len": 2048, "opts": {"flash_attention": False, "sequence_parallel": False}}),
])
def test_vectorised_batch_equals_scalar_path(model, ctx_kw):
    ctx = make_context(model, H100, num_gpus=ctx_kw["num_gpus"], global_batch=ctx_kw["global_batch"], seq_len=ctx_kw["seq_len"],
                       **ctx_kw.get("opts", {}))
    L, n_cand = enumerate_layouts(ctx, max_micro_batch=4)
    assert 0 < len(L) <= n_cand
    a = evaluate(ctx, L)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(L), size=min(25, len(L)), replace=False):
        batch = build_result(ctx, L, a, int(i)).to_dict()
        check_layout(ctx.model, L.layout(int(i)), ctx.rules_ctx())  # every enumerated layout passes the scalar rules
        one = _scalar(model, ctx_kw, batch["layout"]).to_dict()
        for k in ("step_time_s", "mfu", "hfu", "memory_per_gpu_bytes", "tokens_per_s_per_gpu", "fits"):
            assert one[k] == pytest.approx(batch[k], rel=1e-12), (k, batch["layout"])
        for k, v in batch["step_time_breakdown_s"].items():
            assert one["step_time_breakdown_s"][k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
        for k, v in batch["memory_breakdown_bytes"].items():
            assert one["memory_breakdown_bytes"][k] == pytest.approx(v, rel=1e-12), k


def test_search_ranked_fitting_and_agrees_with_scalar():
    res = search_layouts("llama-3.1-70b", H100, 64, global_batch=128, seq_len=4096, top=8)
    assert len(res) == 8 and res.valid >= res.fitting >= 8
    thr = [r.tokens_per_s for r in res]
    assert thr == sorted(thr, reverse=True)
    assert all(r.fits for r in res)
    for r in res:
        one = _scalar("llama-3.1-70b", {"num_gpus": 64, "global_batch": 128, "seq_len": 4096}, r.layout)
        assert one.step_time_s == pytest.approx(r.step_time_s, rel=1e-12)
        assert one.memory_per_gpu_bytes == pytest.approx(r.memory_per_gpu_bytes, rel=1e-12)
    d = res.to_dict()
    assert d["results"][0]["layout"] == res[0].layout and d["valid_layouts"] == res.valid


def test_search_include_unfit_and_constraints():
    res = search_layouts("llama-3.1-70b", H100, 8, global_batch=8, seq_len=4096, top=1000, include_unfit=True, zero=(0,))
    assert any(not r.fits for r in res)
    assert all(r.layout["zero"] == 0 for r in res)
    fit_only = search_layouts("llama-3.1-70b", H100, 8, global_batch=8, seq_len=4096, top=1000, zero=(0,))
    assert len(fit_only) == fit_only.fitting < len(res)


def test_search_without_flash_keeps_selective():
    res = search_layouts("gpt3-175b", "a100", 64, global_batch=64, seq_len=2048, top=200, flash_attention=False)
    assert {r.layout["recompute"] for r in res} >= {"selective", "full"}
    assert all(r.layout["cp"] == 1 for r in res)


def test_search_render():
    from rich.console import Console

    res = search_layouts("llama-3.1-8b", H100, 8, global_batch=16, seq_len=2048, top=3)
    con = Console(record=True, width=200)
    res.render(con)
    assert "top 3 layouts" in con.export_text()


def test_recompute_monotone_over_all_layouts():
    """Over every enumerated layout: none >= selective >= full activation memory, and the
    step time never drops when more is recomputed."""
    from llmsim.training.layout import LayoutArrays

    ctx = make_context("gpt3-175b", "a100", num_gpus=64, global_batch=128, seq_len=2048, flash_attention=False)
    L, _ = enumerate_layouts(ctx, recompute=("none",), max_micro_batch=4)
    out = []
    for rc in (0, 1, 2):
        Lr = LayoutArrays(**{f: getattr(L, f) for f in LayoutArrays.FIELDS if f != "rc"}, rc=np.full(len(L), rc))
        out.append(evaluate(ctx, Lr))
    assert np.all(out[0]["mem_activations"] >= out[1]["mem_activations"])
    assert np.all(out[1]["mem_activations"] >= out[2]["mem_activations"])
    assert np.all(out[0]["step_time_s"] <= out[1]["step_time_s"] * (1 + 1e-12))
    assert np.all(out[1]["step_time_s"] <= out[2]["step_time_s"] * (1 + 1e-12))


def test_train_command_dispatch():
    from llmsim.training import train_command

    d = train_command("llama-3.1-8b", H100, num_gpus=8, tp=2, global_batch=16, seq_len=2048, as_json=True)
    assert d["layout"]["tp"] == 2 and "step_time_s" in d
    res = train_command("llama-3.1-8b", H100, search=True, num_gpus=8, global_batch=16, seq_len=2048, top=2, tp=4)
    assert len(res) == 2 and res.query["num_gpus"] == 8


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_search_top_must_be_a_positive_integer(top):
    from llmsim.errors import LlmsimError
    with pytest.raises(LlmsimError, match="top must be an integer >= 1"):
        search_layouts("llama-3.1-8b", H100, 8, global_batch=8, seq_len=4096, top=top)


@pytest.mark.parametrize("tokens", [0.5, 1000, "30k"])
def test_fewer_tokens_than_one_step_is_an_error(tokens):
    # global batch 8 x 4096 = 32,768 tokens per step: a time-to-train for less would price a whole step
    from llmsim.errors import LlmsimError
    with pytest.raises(LlmsimError, match="less than one optimizer step trains"):
        train_estimate("llama-3.1-8b", H100, num_gpus=8, global_batch=8, seq_len=4096, tokens=tokens)


# ------------------------------------------------------------------ bad search options

from llmsim.errors import LlmsimError  # noqa: E402

_S = {"global_batch": 8, "seq_len": 4096}


@pytest.mark.parametrize("kw,text", [
    ({"zero": (5,)}, "zero must list integers 0-3, got 5 (in (5,))"),
    ({"zero": (1.7,)}, "zero must list integers 0-3, got 1.7"),
    ({"zero": (True,)}, "zero must list integers 0-3, got True"),
    ({"zero": -1}, "zero must be an integer 0-3, got -1"),
    ({"zero": ()}, "zero must list at least one value, got ()"),
    ({"micro_batches": [0]}, "micro_batches must list positive integers, got 0 (in [0])"),
    ({"micro_batches": [-1]}, "micro_batches must list positive integers, got -1"),
    ({"micro_batches": [2.5]}, "micro_batches must list positive integers, got 2.5"),
    ({"max_tp": 0}, "max_tp must be an integer >= 1, got 0"),
    ({"max_cp": 0}, "max_cp must be an integer >= 1, got 0"),
    ({"max_vpp": -3}, "max_vpp must be an integer >= 1, got -3"),
    ({"max_micro_batch": 2.0}, "max_micro_batch must be an integer >= 1, got 2.0"),
    ({"ep": 0}, "ep must be a positive integer, got 0"),
    ({"ep": [2, 0]}, "ep must list positive integers, got 0 (in [2, 0])"),
    ({"recompute": ("full", "f")}, "recompute must be one of none, selective, full, got 'f'"),
    ({"recompute": []}, "recompute must list at least one value"),
    ({"include_unfit": "no"}, "include_unfit must be True or False, got 'no'"),
    ({"include_unfit": 1}, "include_unfit must be True or False, got 1"),
    ({"sequence_parallel": "no"}, "sequence_parallel must be True or False, got 'no'"),
    ({"dropout": "no"}, "dropout must be True or False (or None), got 'no'"),
    ({"fragmentation": "0.1"}, "fragmentation must be a number in [0, 1), got '0.1'"),
    ({"bogus": 1}, "search_layouts got unknown option 'bogus'"),
])
def test_search_space_values_that_can_never_be_valid(kw, text):
    with pytest.raises(LlmsimError) as ei:
        search_layouts("llama-3.1-8b", H100, 8, **_S, **kw)
    assert text in ei.value.message and ei.value.hint
    if "bogus" in kw:
        assert "accepted:" in ei.value.hint and "include_unfit" in ei.value.hint and "fragmentation" in ei.value.hint


@pytest.mark.parametrize("gpu", [None, 8])
def test_search_gpu_argument_type(gpu):
    with pytest.raises(LlmsimError, match="gpu must be a catalog id, a GPU YAML/JSON file or a GPUSpec"):
        search_layouts("llama-3.1-8b", gpu, 8, **_S)


def test_search_single_values_are_one_element_choices():
    res = search_layouts("llama-3.1-8b", H100, 8, **_S, recompute="full", zero=1, micro_batches=1, ep=1, top=50)
    assert res and {(r.layout["recompute"], r.layout["zero"], r.layout["micro_batch"]) for r in res} == {("full", 1, 1)}
    assert res.message == ""
    assert search_layouts("llama-3.1-8b", H100, 8, **_S, zero=np.array([0, 1]), include_unfit=np.bool_(True), top=1)


@pytest.mark.parametrize("model,n,kw,text", [
    ("mixtral-8x7b", 8, {"ep": [3]}, "ep=3 does not divide the 8 experts of mixtral-8x7b"),
    ("llama-3.1-8b", 8, {"ep": [2]}, "ep=2 given but llama-3.1-8b is not a mixture-of-experts model"),
    ("llama-3.1-8b", 8, {"micro_batches": [3]}, "global batch 8 is not divisible by micro_batch*dp"),
    ("llama-3.1-8b", 1, {"zero": (1, 2)}, "zero stages [1, 2] need a data-parallel group"),
])
def test_valid_values_without_a_layout_say_why(model, n, kw, text):
    res = search_layouts(model, H100, n, **_S, **kw)
    assert len(res) == 0 and res.valid == 0
    assert res.message.startswith(f"no valid layout of {n} GPU") and text in res.message
    assert res.to_dict()["message"] == res.message


def test_no_fitting_layout_says_why():
    res = search_layouts("llama-3.1-70b", H100, 1, **_S)
    assert len(res) == 0 and res.valid > 0 and res.fitting == 0
    assert "none of the" in res.message and "fits in the" in res.message and "include_unfit=True" in res.message


def test_cli_search_narrows_to_given_settings_and_refuses_fixed_layouts(capsys):
    # `train --search` with --zero / --recompute / --micro-batch / --ep searches only those
    # values (they were silently dropped); a fixed --tp / --pp / ... is an error, not ignored
    import json

    from llmsim.cli import main

    main(["train", "--model", "llama-3.1-70b", "--num-gpus", "64", "--search", "--zero", "0", "--recompute", "full",
          "--micro-batch", "4", "--top", "5", "--json"])
    res = json.loads(capsys.readouterr().out)["results"]
    lay = [r["layout"] for r in res]
    assert lay and all((x["zero"], x["recompute"], x["micro_batch"]) == (0, "full", 4) for x in lay)
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "llama-3.1-70b", "--num-gpus", "64", "--search", "--tp", "2"])
    assert e.value.code == 2
    assert "--search chooses tp, pp, vpp, cp and dp itself, but --tp was given" in " ".join(capsys.readouterr().err.split())


def test_cli_uneven_layers_and_sequence_parallel_flags(capsys):
    # the layout errors' hints name CLI flags that exist: DeepSeek-V3's 61 layers pipeline over
    # pp = 8 only with --uneven-layers; tp not dividing the tokens needs --no-sequence-parallel
    import json

    from llmsim.cli import main

    args = ["train", "--model", "deepseek-v3", "--num-gpus", "1024", "--tp", "8", "--pp", "8", "--ep", "16", "--dtype", "fp8"]
    with pytest.raises(SystemExit):
        main(args)
    assert "--uneven-layers" in " ".join(capsys.readouterr().err.split())
    main(args + ["--uneven-layers", "--json"])
    assert json.loads(capsys.readouterr().out)["step_time_s"] > 0
    sp = ["train", "--model", "llama-3.1-8b", "--num-gpus", "8", "--tp", "8", "--seq-len", "4100"]
    with pytest.raises(SystemExit):
        main(sp)
    assert "--no-sequence-parallel" in " ".join(capsys.readouterr().err.split())
    main(sp + ["--no-sequence-parallel", "--json"])
    assert json.loads(capsys.readouterr().out)["step_time_s"] > 0
