"""Serving metrics: hand-computed summaries, warm-up, goodput, energy/cost and the ITL histogram."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from llmsim.errors import LlmsimError
from llmsim.serving.metrics import (
    SLO,
    STAT_KEYS,
    ItlHistogram,
    per_request_table,
    summarize,
    write_per_request,
)

NAN = math.nan

# Three requests, hand-computed:
#   r0: arrive 0.0, first token 0.1, finish 1.1, 100 in, 11 out -> TTFT 100, E2E 1100, TPOT 1000/10 = 100 ms
#   r1: arrive 0.5, first token 0.8, finish 1.8, 200 in,  6 out -> TTFT 300, E2E 1300, TPOT 1000/5  = 200 ms
#   r2: arrive 1.0, first token 1.2, finish 2.0,  50 in,  1 out -> TTFT 200, E2E 1000, no TPOT
ARR = np.array([0.0, 0.5, 1.0])
FT = np.array([0.1, 0.8, 1.2])
FIN = np.array([1.1, 1.8, 2.0])
IN = np.array([100, 200, 50])
OUT = np.array([11, 6, 1])
SCHED = np.array([0.05, 0.6, 1.0])


def test_summary_hand_computed():
    r = summarize(ARR, FT, FIN, IN, OUT, first_scheduled_s=SCHED)
    assert r["num_requests"] == 3 and r["num_completed"] == 3 and r["num_incomplete"] == 0
    assert r["duration_s"] == pytest.approx(2.0)
    assert r["ttft_ms"]["mean"] == pytest.approx(200.0)
    assert r["ttft_ms"]["p50"] == pytest.approx(200.0)
    assert r["ttft_ms"]["max"] == pytest.approx(300.0) and r["ttft_ms"]["min"] == pytest.approx(100.0)
    assert r["ttft_ms"]["p90"] == pytest.approx(280.0)  # numpy linear: 200 + 0.8 * 100
    assert r["tpot_ms"]["mean"] == pytest.approx(150.0)  # only r0 and r1
    assert r["tpot_ms"]["p50"] == pytest.approx(150.0)
    assert r["e2e_ms"]["mean"] == pytest.approx((1100 + 1300 + 1000) / 3)
    assert r["queue_ms"]["mean"] == pytest.approx((50 + 100 + 0) / 3)
    assert r["output_tokens_per_s"] == pytest.approx(18 / 2.0)
    assert r["total_tokens_per_s"] == pytest.approx((350 + 18) / 2.0)
    assert r["requests_per_s"] == pytest.approx(1.5)
    assert r["output_tokens_per_s_per_gpu"] == pytest.approx(9.0)
    assert r["itl_ms"] == {k: None for k in STAT_KEYS}
    assert set(r["ttft_ms"]) == set(STAT_KEYS)
    json.dumps(r, allow_nan=False)


def test_summary_warmup_by_completion_order():
    # finish order r0 (1.1), r1 (1.8), r2 (2.0) even if the arrays are shuffled
    perm = [2, 0, 1]
    r = summarize(ARR[perm], FT[perm], FIN[perm], IN[perm], OUT[perm], warmup=1)
    assert r["num_requests"] == 2 and r["num_warmup"] == 1
    assert r["duration_s"] == pytest.approx(2.0 - 0.5)  # first counted arrival (r1) to last finish
    assert r["ttft_ms"]["mean"] == pytest.approx(250.0)
    assert r["tpot_ms"]["mean"] == pytest.approx(200.0)
    assert r["output_tokens_per_s"] == pytest.approx(7 / 1.5)
    closed = summarize(ARR, FT, FIN, IN, OUT, warmup=1, closed_loop=True)
    assert closed["duration_s"] == pytest.approx(2.0 - 1.1)  # from the warm-up cut-off
    assert closed["requests_per_s"] == pytest.approx(2 / 0.9)


def test_summary_incomplete_and_everything_warmup():
    arr, ft, fin = np.append(ARR, 1.5), np.append(FT, NAN), np.append(FIN, NAN)
    r = summarize(arr, ft, fin, np.append(IN, 10), np.append(OUT, 5))
    assert r["num_completed"] == 3 and r["num_incomplete"] == 1 and r["num_requests"] == 3
    assert r["duration_s"] == pytest.approx(2.0) and r["ttft_ms"]["mean"] == pytest.approx(200.0)
    empty = summarize(ARR, FT, FIN, IN, OUT, warmup=5)
    assert empty["num_requests"] == 0 and empty["duration_s"] is None
    assert empty["ttft_ms"]["mean"] is None and empty["output_tokens_per_s"] is None
    json.dumps(empty, allow_nan=False)


def test_goodput_with_slos():
    # TTFT <= 250: r0, r2 pass; TPOT <= 150: r0 passes, r2 has none (passes), r1 fails both
    r = summarize(ARR, FT, FIN, IN, OUT, slo=SLO(ttft_ms=250, tpot_ms=150))
    assert r["num_good_requests"] == 2
    assert r["goodput_requests_per_s"] == pytest.approx(2 / 2.0)
    assert r["slo_attainment"] == pytest.approx(2 / 3)
    only_tpot = summarize(ARR, FT, FIN, IN, OUT, slo=SLO(tpot_ms=100))  # exactly at target counts
    assert only_tpot["num_good_requests"] == 2
    only_ttft = summarize(ARR, FT, FIN, IN, OUT, slo=SLO(ttft_ms=100))
    assert only_ttft["num_good_requests"] == 1
    # a request that never finished counts against attainment, not goodput
    arr, ft, fin = np.append(ARR, 1.5), np.append(FT, NAN), np.append(FIN, NAN)
    r2 = summarize(arr, ft, fin, np.append(IN, 1), np.append(OUT, 1), slo=SLO(ttft_ms=250, tpot_ms=150))
    assert r2["slo_attainment"] == pytest.approx(2 / 4) and r2["goodput_requests_per_s"] == pytest.approx(1.0)
    assert "goodput_requests_per_s" not in summarize(ARR, FT, FIN, IN, OUT)
    with pytest.raises(LlmsimError):
        SLO(ttft_ms=-1)


def test_energy_and_cost():
    r = summarize(ARR, FT, FIN, IN, OUT, num_gpus=2, gpu_power_w=700, gpu_idle_w=100, busy_fraction=0.5,
                  price_per_gpu_hour_usd=3.0, extra={"engine": "test", "preemptions": np.int64(4)})
    assert r["gpu_avg_power_w"] == pytest.approx(400.0)
    assert r["energy_j"] == pytest.approx(2 * 400 * 2.0)
    assert r["energy_j_per_output_token"] == pytest.approx(1600 / 18)
    cost = 2 * 3.0 * 2.0 / 3600
    assert r["cost_usd"] == pytest.approx(cost)
    assert r["usd_per_million_output_tokens"] == pytest.approx(cost / 18 * 1e6)
    assert r["output_tokens_per_s_per_gpu"] == pytest.approx(4.5)
    assert r["engine"] == "test" and r["preemptions"] == 4 and type(r["preemptions"]) is int
    full = summarize(ARR, FT, FIN, IN, OUT, gpu_power_w=700)  # no idle/busy: full power throughout
    assert full["energy_j"] == pytest.approx(700 * 2.0)
    json.dumps(r, allow_nan=False)


def test_summary_rejects_inconsistent_times():
    with pytest.raises(LlmsimError, match="request 1"):
        summarize(ARR, np.array([0.1, 0.4, 1.2]), FIN, IN, OUT)  # first token before arrival
    with pytest.raises(LlmsimError):
        summarize(ARR, FT, FIN[:2], IN, OUT)
    with pytest.raises(LlmsimError):
        summarize(ARR, FT, FIN, IN, OUT, gpu_idle_w=50)


def test_summary_with_itl_histogram():
    h = ItlHistogram()
    h.add(0.010, 10)
    h.add(0.020, 5)
    r = summarize(ARR, FT, FIN, IN, OUT, itl=h)
    assert r["itl_ms"]["mean"] == pytest.approx((10 * 10 + 20 * 5) / 15)
    assert r["itl_ms"]["min"] == pytest.approx(10.0) and r["itl_ms"]["max"] == pytest.approx(20.0)
    assert r["itl_ms"]["p50"] == pytest.approx(10.0, rel=0.01)


def test_per_request_table_and_writers(tmp_path):
    t = per_request_table(np.append(ARR, 1.5), np.append(FT, NAN), np.append(FIN, NAN),
                          np.append(IN, 1), np.append(OUT, 1), first_scheduled_s=np.append(SCHED, NAN))
    assert list(t) == ["request_id", "warmup", "arrival_s", "first_token_s", "finish_s", "input_tokens", "output_tokens",
                       "ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"]
    assert t["request_id"].tolist() == [0, 1, 2, 3] and not t["warmup"].any()
    w = per_request_table(ARR, FT, FIN, IN, OUT, warmup_ids=np.array([2]))
    assert w["warmup"].tolist() == [False, False, True]
    with pytest.raises(LlmsimError, match="warmup_ids"):
        per_request_table(ARR, FT, FIN, IN, OUT, warmup_ids=np.array([5]))
    assert np.allclose(t["ttft_ms"][:3], [100, 300, 200]) and np.isnan(t["ttft_ms"][3])
    assert np.allclose(t["tpot_ms"][:2], [100, 200]) and np.isnan(t["tpot_ms"][2])
    assert np.allclose(t["e2e_ms"][:3], [1100, 1300, 1000])
    assert np.allclose(t["queue_ms"][:3], [50, 100, 0])
    pq_path = write_per_request(t, tmp_path / "r.parquet")
    back = pq.read_table(pq_path)
    assert back.column_names == list(t) and back.num_rows == 4
    csv_path = write_per_request(t, tmp_path / "sub" / "r.csv")
    assert pcsv.read_csv(csv_path).num_rows == 4
    with pytest.raises(LlmsimError):
        write_per_request(t, tmp_path / "r.xlsx")


# ------------------------------------------------------------------ ITL histogram


def _data(n=200_000, seed=0):
    r = np.random.default_rng(seed)
    return np.concatenate([r.lognormal(np.log(0.02), 0.4, n), r.uniform(0.001, 0.005, n // 4)])


def test_itl_quantiles_match_numpy():
    x = _data()
    h = ItlHistogram()
    for v in x[:50_000].tolist():
        h.add(v)
    h.add_many(x[50_000:])
    assert h.count == x.size
    assert h.mean() == pytest.approx(x.mean(), rel=1e-9)
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0):
        assert h.quantile(q) == pytest.approx(np.percentile(x, q * 100), rel=0.02), q
    assert h.quantile(0.0) == x.min() and h.quantile(1.0) == x.max()


def test_itl_bulk_add_equals_repeated_add():
    r = np.random.default_rng(1)
    v = r.lognormal(np.log(0.03), 1.0, 2000)
    c = r.integers(0, 50, 2000)
    a, b = ItlHistogram(), ItlHistogram()
    a.add_many(v, c)
    for vi, ci in zip(v.tolist(), c.tolist()):
        for _ in range(ci):
            b.add(vi)
    assert np.array_equal(a.counts(), b.counts())
    assert a.count == b.count == int(c.sum())
    assert a.mean() == pytest.approx(b.mean(), rel=1e-12)
    assert a.quantile(0.9) == b.quantile(0.9)
    d = ItlHistogram()
    for vi, ci in zip(v.tolist(), c.tolist()):
        d.add(vi, ci)
    assert np.array_equal(d.counts(), a.counts())


def test_itl_merge():
    x = _data(50_000, seed=2)
    whole, left, right = ItlHistogram(), ItlHistogram(), ItlHistogram()
    whole.add_many(x)
    left.add_many(x[:30_000])
    for v in x[30_000:].tolist():
        right.add(v)
    left.merge(right)
    assert np.array_equal(left.counts(), whole.counts())
    assert left.mean() == pytest.approx(whole.mean(), rel=1e-12)
    assert left.quantile(0.99) == whole.quantile(0.99) and left.max == whole.max


def test_itl_edges_and_errors():
    h = ItlHistogram()
    assert h.count == 0 and math.isnan(h.quantile(0.5)) and math.isnan(h.mean())
    h.add(0.0)
    h.add(5e-7)
    h.add(2000.0)
    h.add(1.0, 0)  # no-op
    assert h.count == 3 and h.min == 0.0 and h.max == 2000.0
    assert h.quantile(1.0) == 2000.0
    for bad in (-1.0, math.nan):
        with pytest.raises(LlmsimError):
            h.add(bad)
        with pytest.raises(LlmsimError):
            h.add_many(np.array([bad]))
    with pytest.raises(LlmsimError):
        h.add_many(np.array([0.1, 0.2]), np.array([1]))
    with pytest.raises(LlmsimError):
        h.quantile(1.5)
    # memory is bounded: the bin count does not grow with observations
    before = h.counts().size
    h.add_many(np.random.default_rng(0).uniform(0, 10, 100_000))
    assert h.counts().size == before


@pytest.mark.parametrize("kw", [dict(ttft_ms=True), dict(tpot_ms=np.True_), dict(ttft_ms="100"), dict(tpot_ms=0), dict(ttft_ms=float("inf"))])
def test_slo_refuses_non_numbers(kw):
    # True passed as 1 ms (a bool is an int)
    with pytest.raises(LlmsimError, match="must be a number > 0"):
        SLO(**kw)
