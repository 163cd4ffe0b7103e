"""docs/serving.md works two predictions through by hand; these tests keep its figures those the
simulator gives (a change to the cost model or the hand-off model shows up here, and the page is
updated with it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmsim.serving.simulate import Deployment, Pool, kv_handoff_parts, simulate
from llmsim.serving.workload import make_workload

DOC = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
MODEL = "llama-3.1-8b"


def _in_doc(*figures: str) -> None:
    for f in figures:
        assert f in DOC, f"docs/serving.md no longer shows {f}"


def test_the_iteration_example():
    lone = simulate(Deployment(MODEL, Pool("h100-sxm")), make_workload(num_requests=1, isl=2000, osl=1, concurrency=1, seed=0))
    ttft = float(lone.per_request()["ttft_ms"][0])
    assert ttft == pytest.approx(45.98, abs=0.005)
    dec = simulate(Deployment(MODEL, Pool("a100-sxm-80gb")), make_workload(num_requests=1, isl=2000, osl=3, concurrency=1, seed=0))
    assert float(dec.per_request()["tpot_ms"][0]) == pytest.approx(11.81, abs=0.005)
    _in_doc("| **iteration = TTFT** | **45.98** |", "11.81 ms", "11.98 ms")


def test_the_disaggregated_example():
    from llmsim.hardware import get_gpu

    wl = make_workload(num_requests=4, isl=2000, osl=2, concurrency=4, seed=0)
    parts = kv_handoff_parts(get_gpu("h100-sxm"), 1, 131072.0, get_gpu("a100-sxm-80gb"), 1, 131072.0)
    assert 2001 * 131072 / 1e6 == pytest.approx(262.3, abs=0.05)
    assert 1e3 * 2001 * parts.send_s_per_token == pytest.approx(5.25, abs=0.005)
    assert 1e3 * 2001 * parts.recv_s_per_token == pytest.approx(10.49, abs=0.005)
    assert 1e3 * (parts.latency_s + 2001 * parts.recv_s_per_token) == pytest.approx(10.499, abs=0.0005)

    res = simulate(Deployment(MODEL, prefill=Pool("h100-sxm", workers=4), decode=Pool("a100-sxm-80gb")), wl)
    t = res.per_request()
    assert np.sort(t["ttft_ms"]) == pytest.approx([218.28, 230.27, 242.25, 254.23], abs=0.006)
    assert np.sort(t["kv_link_wait_ms"]) == pytest.approx([0, 10.49, 20.98, 31.47], abs=0.006)
    assert np.sort(t["decode_first_ms"]) == pytest.approx([11.81, 13.30, 14.79, 16.28], abs=0.006)
    parts = res.summary["ttft_parts_ms"]
    assert (parts["prefill"], parts["decode_first"], parts["ttft"]) == pytest.approx((45.98, 14.04, 236.26), abs=0.006)
    _in_doc("`decode_first_ms` (11.81 / 13.30 / 14.79 / 16.28", "first step 14.04 = 236.26 ms")
    ho = res.summary["kv_handoff"]
    assert (ho["transfer_ms"]["mean"], ho["link_wait_ms"]["mean"]) == pytest.approx((26.24, 15.74), abs=0.006)
    _in_doc("**68.28**", "**80.27**", "**92.25**", "**104.23**", "218.28 / 230.27 / 242.25 /\n254.23 ms",
            "transfer mean\n  26.24 ms (max 41.97), of which waiting for busy links 15.74 ms (max 31.47)")

    nv = simulate(Deployment(MODEL, prefill=Pool("h100-sxm", workers=4), decode=Pool("h100-sxm"), disagg_handoff_s=0.0), wl)
    assert np.sort(nv.per_request()["kv_handoff_ms"]) == pytest.approx([0.586, 1.169, 1.751, 2.334], abs=0.006)
    assert nv.summary["kv_handoff"]["link"] == "nvlink"
    _in_doc("0.59 / 1.17 / 1.75 / 2.33 ms", "0.586 ms per hand-off")
