"""serving/handoff.py on its own: the link arithmetic of KV hand-offs, without a simulation."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.serving.handoff import HandoffParts, Handoffs

# 1 us per token to send, 4 us to receive (a receiver with a quarter of the bandwidth), 10 us latency
PARTS = HandoffParts(latency_s=10e-6, send_s_per_token=1e-6, recv_s_per_token=4e-6, link="network")


def test_a_lone_hand_off_takes_latency_plus_the_slower_end():
    h = Handoffs(PARTS, 1, 1, fixed_s=0.0, first_from_decode=True, n_requests=1)
    assert h.send(0, 1.0, 0, 0, 1000) == pytest.approx(1.0 + 10e-6 + 1000 * 4e-6)
    s = h.summary()
    assert s["handoffs"] == 1 and s["link_wait_ms"] == {"mean": 0.0, "max": 0.0}
    assert s["transfer_ms"]["max"] == pytest.approx(4.01)


def test_each_end_is_busy_for_its_own_bytes():
    # two senders, one receiver: the receiver (4 ms a hand-off) is the queue
    h = Handoffs(PARTS, 1, 1, 0.0, True, n_requests=2)
    a, b = h.send(0, 0.0, 0, 9, 1000), h.send(1, 0.0, 1, 9, 1000)
    assert (a, b) == pytest.approx((4.01e-3, 8.01e-3))
    # one sender, four receivers: the sender (1 ms a hand-off) is the queue, but each hand-off is
    # still bound by its receiver's 4 ms, so the first three arrive together
    h = Handoffs(PARTS, 1, 1, 0.0, True, n_requests=4)
    got = [h.send(i, 0.0, 0, 10 + i, 1000) for i in range(4)]
    assert got == pytest.approx([4.01e-3, 4.01e-3, 4.01e-3, 4.01e-3])
    got = [h.send(i, 0.0, 0, 10 + i, 1000) for i in range(4)]  # the same again: each receiver has one queued
    assert got == pytest.approx([8.01e-3] * 4)


def test_attention_dp_ranks_have_a_link_set_each():
    h = Handoffs(PARTS, 1, 2, 0.0, True, n_requests=3)
    got = [h.send(i, 0.0, i, 0, 1000) for i in range(3)]  # three senders, one decode worker with 2 ranks
    assert got == pytest.approx([4.01e-3, 4.01e-3, 8.01e-3])
    w = h.per_request(np.zeros(3), np.full(3, 0.02))["kv_link_wait_ms"]
    assert w == pytest.approx([0.0, 0.0, 4.0])


def test_ttft_parts_count_only_counted_handed_off_requests():
    h = Handoffs(PARTS, 1, 1, fixed_s=0.1, first_from_decode=True, n_requests=3)
    for rid in range(2):
        h.send(rid, 0.05, rid, 0, 1000)  # prefills end at 50 ms, scheduled at 10 ms, arrived at 0
    h.done(0, False, 0.0, 0.01, 0.2)  # warm-up: not in the parts
    h.done(1, True, 0.0, 0.01, 0.3)
    h.done(2, True, 0.0, 0.01, 0.05)  # never handed off (one output token): not in the parts
    p = h.ttft_parts()
    assert p["requests"] == 1 and not h.in_flight
    assert (p["queue"], p["prefill"], p["kv_handoff"], p["kv_link_wait"], p["handoff_fixed"], p["ttft"]) == pytest.approx(
        (10.0, 40.0, 8.01, 4.0, 100.0, 300.0))
    assert p["decode_first"] == pytest.approx(300.0 - 10.0 - 40.0 - 8.01 - 100.0)
    assert Handoffs(PARTS, 1, 1, 0.0, False).ttft_parts() == {"requests": 0}
    trt = Handoffs(PARTS, 1, 1, 0.0, first_from_decode=False, n_requests=1)
    trt.send(0, 0.05, 0, 0, 1000)
    trt.done(0, True, 0.0, 0.01, 0.05)
    assert "decode_first" not in trt.ttft_parts() and trt.ttft_parts()["ttft"] == pytest.approx(50.0)
    assert "decode_first_ms" not in trt.per_request(np.zeros(1), np.zeros(1))
    assert Handoffs(PARTS, 1, 1, 0.0, True).per_request(np.zeros(1), np.zeros(1)) == {}  # streaming: no rows
