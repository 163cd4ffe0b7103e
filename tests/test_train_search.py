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
