"""Workloads: synthetic arrivals, length distributions, trace loading and make_workload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from llmsim.errors import LlmsimError
from llmsim.serving.workload import (
    LengthDist,
    Workload,
    gamma_arrivals,
    load_trace,
    make_workload,
    parse_length_dist,
    poisson_arrivals,
)

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not available")


def rng(seed=0):
    return np.random.Generator(np.random.PCG64(seed))


# ------------------------------------------------------------------ arrivals


def test_poisson_rate_and_determinism():
    a = poisson_arrivals(25.0, 100_000, seed=7)
    assert a.dtype == np.float64 and a.size == 100_000
    assert a[0] == 0.0 and np.all(np.diff(a) >= 0)
    rate = (a.size - 1) / (a[-1] - a[0])
    assert rate == pytest.approx(25.0, rel=0.03)
    gaps = np.diff(a)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert np.array_equal(a, poisson_arrivals(25.0, 100_000, seed=7))
    assert not np.array_equal(a, poisson_arrivals(25.0, 100_000, seed=8))
    b = poisson_arrivals(25.0, 10, seed=7, start_s=100.0)
    assert b[0] == 100.0 and np.allclose(b - 100.0, a[:10])


@pytest.mark.parametrize("cv", [0.5, 2.0, 3.0])
def test_gamma_mean_rate_and_cv(cv):
    a = gamma_arrivals(10.0, cv, 100_000, seed=3)
    gaps = np.diff(a)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)
    assert np.all(gaps >= 0)
    assert np.array_equal(a, gamma_arrivals(10.0, cv, 100_000, seed=3))


def test_gamma_cv1_is_poisson():
    assert np.array_equal(gamma_arrivals(4.0, 1.0, 1000, seed=1), poisson_arrivals(4.0, 1000, seed=1))


def test_single_arrival():
    assert poisson_arrivals(1.0, 1, seed=0).tolist() == [0.0]


@pytest.mark.parametrize(
    "call",
    [
        lambda: poisson_arrivals(0.0, 10, 0),
        lambda: poisson_arrivals(-1.0, 10, 0),
        lambda: poisson_arrivals(float("inf"), 10, 0),
        lambda: poisson_arrivals(1.0, 0, 0),
        lambda: gamma_arrivals(1.0, 0.0, 10, 0),
        lambda: gamma_arrivals(1.0, -2.0, 10, 0),
        lambda: gamma_arrivals(0.0, 1.0, 10, 0),
        lambda: gamma_arrivals(1.0, 1.5, 0, 0),
    ],
)
def test_arrival_errors(call):
    with pytest.raises(LlmsimError):
        call()


# ------------------------------------------------------------------ length distributions


def test_fixed_and_plain_number():
    for spec in ("fixed:1024", "1024", " fixed: 1024 "):
        d = parse_length_dist(spec)
        x = d.sample(100, rng())
        assert x.dtype == np.int64 and np.all(x == 1024)
    assert parse_length_dist("fixed:1024", max_len=500).sample(3, rng()).tolist() == [500] * 3


def test_uniform_inclusive_bounds():
    x = parse_length_dist("uniform:100,200").sample(200_000, rng(1))
    assert x.min() == 100 and x.max() == 200
    assert x.mean() == pytest.approx(150, rel=0.01)
    assert parse_length_dist("uniform:7,7").sample(5, rng()).tolist() == [7] * 5


def test_normal_mean_and_clip():
    x = parse_length_dist("normal:1000,100").sample(200_000, rng(2))
    assert x.mean() == pytest.approx(1000, rel=0.01)
    assert x.std() == pytest.approx(100, rel=0.03)
    y = parse_length_dist("normal:10,100", max_len=50).sample(10_000, rng(2))
    assert y.min() == 1 and y.max() == 50


def test_lognormal_is_parameterised_by_length_moments():
    d = parse_length_dist("lognormal:2000,1000")
    assert d.mean == 2000
    x = d.sample(400_000, rng(3))
    assert x.mean() == pytest.approx(2000, rel=0.01)
    assert x.std() == pytest.approx(1000, rel=0.05)
    assert x.min() >= 1
    assert d.with_max_len(3000).sample(10_000, rng(3)).max() <= 3000


def test_trace_length_dist(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0,10,1\n1,20,2\n2,30,3\n")
    d_in = parse_length_dist(f"trace:{p}")
    d_out = parse_length_dist(f"trace:{p}:output")
    d_col = parse_length_dist(f"trace:{p}", column="output")
    assert set(d_in.sample(1000, rng()).tolist()) == {10, 20, 30}
    assert set(d_out.sample(1000, rng()).tolist()) == {1, 2, 3}
    assert set(d_col.sample(1000, rng()).tolist()) == {1, 2, 3}
    capped = parse_length_dist(f"trace:{p}:input", max_len=15).sample(1000, rng())
    assert set(capped.tolist()) == {10, 15}


def test_trace_length_dist_built_from_a_list():
    """A `LengthDist` built in code from a plain list of lengths samples and averages like one from
    an array (it had failed in `sample` with AttributeError: 'list' object has no attribute 'size')."""
    d = LengthDist("trace", values=[3, 4, 5])
    assert isinstance(d.values, np.ndarray)
    assert set(d.sample(1000, rng()).tolist()) == {3, 4, 5}
    assert d.mean == 4.0
    with pytest.raises(LlmsimError, match="at least one length"):
        LengthDist("trace", values=[])


@pytest.mark.parametrize(
    "spec",
    ["", "foo:12", "fixed:0", "fixed:1.5", "1.5", "abc", "uniform:5", "uniform:10,5", "uniform:0,5",
     "normal:abc,1", "normal:-5,1", "lognormal:100", "lognormal:100,-1", "trace:", "normal:nan,1"],
)
def test_bad_specs(spec):
    with pytest.raises(LlmsimError) as e:
        parse_length_dist(spec)
    assert "uniform:LO,HI" in str(e.value) or "trace" in str(e.value)


def test_trace_dist_missing_file(tmp_path):
    with pytest.raises(LlmsimError, match="not found"):
        parse_length_dist(f"trace:{tmp_path / 'nope.csv'}:input")


# ------------------------------------------------------------------ Workload validation


def test_workload_validation():
    w = Workload(np.array([5, 6]), np.array([1, 2]), np.array([0.0, 1.0]))
    assert len(w) == 2 and w.input_len.dtype == np.int64 and not w.closed_loop
    c = Workload([5, 6], [1, 2], None, concurrency=4)
    assert c.closed_loop and c.concurrency == 4
    bad = [
        dict(input_len=[5, 6], output_len=[1], arrival_s=[0.0, 1.0]),
        dict(input_len=[], output_len=[], arrival_s=[]),
        dict(input_len=[0, 6], output_len=[1, 1], arrival_s=[0.0, 1.0]),
        dict(input_len=[5, 6], output_len=[1, 0], arrival_s=[0.0, 1.0]),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=[1.0, 0.0]),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=[0.0, np.nan]),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=[0.0, 1.0], concurrency=2),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=None),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=None, concurrency=0),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=[0.0, 1.0], warmup=2),
        dict(input_len=[5.5, 6], output_len=[1, 1], arrival_s=[0.0, 1.0]),
        dict(input_len=[5, 6], output_len=[1, 1], arrival_s=[0.0, 1.0], hash_ids=[np.array([1])]),
    ]
    for kw in bad:
        with pytest.raises(LlmsimError):
            Workload(**kw)


# ------------------------------------------------------------------ shared traces


@needs_traces
def test_load_azure_conv_fast_and_correct():
    p = TRACES / "azure2023_conv.csv"
    load_trace(p)  # warm up imports
    best = min(_timed(lambda: load_trace(p)) for _ in range(3))
    w = load_trace(p)
    assert len(w) == 19_366
    assert w.arrival_s[0] == 0.0 and np.all(np.diff(w.arrival_s) >= 0)
    assert w.arrival_s[1] == pytest.approx(4.314579)  # 18:15:50.9951690 - 18:15:46.6805900
    assert w.input_len[:3].tolist() == [374, 396, 879] and w.output_len[:3].tolist() == [44, 109, 55]
    assert w.hash_ids is None and not w.closed_loop
    assert 3000 < w.arrival_s[-1] < 4000  # about an hour
    assert best < 0.2, f"loading the Azure conv trace took {best:.3f} s"


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


@needs_traces
def test_load_azure_code():
    w = load_trace(TRACES / "azure2023_code.csv", fmt="azure")
    assert len(w) == 8_819
    assert w.input_len.min() >= 1 and w.output_len.min() >= 1


@needs_traces
def test_load_mooncake_with_hash_ids():
    w = load_trace(TRACES / "mooncake_conversation.jsonl")
    assert len(w) == 12_031
    assert w.hash_ids is not None and len(w.hash_ids) == 12_031 and w.hash_block_tokens == 512
    assert w.hash_ids[0].dtype == np.int64 and w.hash_ids[0].tolist() == list(range(14))
    assert w.hash_ids[1][:2].tolist() == [0, 14]
    assert w.input_len[0] == 6758 and w.output_len[0] == 500
    # every request has ceil(input / 512) prefix blocks
    nblocks = np.array([h.size for h in w.hash_ids])
    assert np.array_equal(nblocks, -(-w.input_len // 512))
    assert w.arrival_s[-1] == pytest.approx(3536.999)


@needs_traces
def test_trace_max_len_limit_and_time_scale():
    p = TRACES / "azure2023_conv.csv"
    full = load_trace(p)
    over = int(((full.input_len + full.output_len) > 4096).sum())
    assert over > 0
    w = load_trace(p, max_len=4096)
    assert len(w) == len(full) - over and f"{over} requests over 4096 tokens dropped" in w.name
    assert np.all(w.input_len + w.output_len <= 4096)
    first = load_trace(p, limit=100)
    assert len(first) == 100 and np.array_equal(first.input_len, full.input_len[:100])
    fast = load_trace(p, limit=100, time_scale=0.5)
    assert np.allclose(fast.arrival_s, first.arrival_s * 0.5)


# ------------------------------------------------------------------ own formats


def test_own_csv_round_trip(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text(
        "arrival_s,input_tokens,output_tokens,prefix_hash_ids\n"
        "0.0,1024,128,1 2\n"
        "0.5,2048,256,\n"
        "0.25,512,64,  1   3 \n"
        "0.25,700,10,9\n"
    )
    w = load_trace(p)
    # stable sort: the two 0.25 rows keep their file order
    assert w.arrival_s.tolist() == [0.0, 0.25, 0.25, 0.5]
    assert w.input_len.tolist() == [1024, 512, 700, 2048]
    assert w.output_len.tolist() == [128, 64, 10, 256]
    assert [h.tolist() for h in w.hash_ids] == [[1, 2], [1, 3], [9], []]
    assert "re-sorted" in w.name
    plain = tmp_path / "plain.csv"
    plain.write_text("arrival_s,input_tokens,output_tokens\n0,5,6\n1.5,7,8\n")
    w2 = load_trace(plain, fmt="csv")
    assert w2.hash_ids is None and w2.arrival_s.tolist() == [0.0, 1.5]


def test_own_jsonl_round_trip(tmp_path):
    rows = [
        {"arrival_s": 0.0, "input_tokens": 10, "output_tokens": 5, "hash_ids": [1, 2]},
        {"arrival_s": 1.5, "input_tokens": 20, "output_tokens": 6},
        {"arrival_s": 2.0, "input_tokens": 30, "output_tokens": 7, "hash_ids": [1, 2, 3], "extra": "x"},
    ]
    p = tmp_path / "mine.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w = load_trace(p)
    assert w.arrival_s.tolist() == [0.0, 1.5, 2.0]
    assert w.input_len.tolist() == [10, 20, 30] and w.output_len.tolist() == [5, 6, 7]
    assert [h.tolist() for h in w.hash_ids] == [[1, 2], [], [1, 2, 3]]
    p2 = tmp_path / "nohash.jsonl"
    p2.write_text(json.dumps({"arrival_s": 3, "input_tokens": 1, "output_tokens": 1}) + "\n")
    w2 = load_trace(p2, fmt="jsonl")
    assert w2.hash_ids is None and w2.arrival_s.tolist() == [3.0]


def test_mooncake_and_azure_small(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(
        '{"timestamp": 1500, "input_length": 600, "output_length": 3, "hash_ids": [7, 8]}\n'
        '{"timestamp": 0, "input_length": 100, "output_length": 2, "hash_ids": [7]}\n'
    )
    w = load_trace(m)
    assert w.arrival_s.tolist() == [0.0, 1.5] and [h.tolist() for h in w.hash_ids] == [[7], [7, 8]]
    a = tmp_path / "a.csv"
    a.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-11-16 18:15:46.5000000,10,2\r\n"
        "2023-11-16 18:15:48.2500000,20,3\r\n"
    )
    w = load_trace(a)
    assert w.arrival_s.tolist() == pytest.approx([0.0, 1.75])


def test_zero_token_rows_dropped(tmp_path):
    p = tmp_path / "z.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0,5,0\n1,5,6\n")
    w = load_trace(p)
    assert len(w) == 1 and "1 request, 1 request with zero tokens dropped" in w.name


@pytest.mark.parametrize(
    "name,text,needle",
    [
        ("bad.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\n1,abc,3\n", "line 3"),
        ("bad.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\n1,2.5,3\n", "line 3"),
        ("neg.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\n1,2,3\n2,-4,3\n", "line 4"),
        ("short.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\n1,2\n", "line 3"),
        ("empty_cell.csv", "arrival_s,input_tokens,output_tokens\n0,1,\n", "line 2"),
        ("time.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\nsoon,1,2\n", "line 3"),
        ("inf.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\ninf,1,2\n", "line 3"),
        ("hash.csv", "arrival_s,input_tokens,output_tokens,prefix_hash_ids\n0,1,2,1 x\n", "line 2"),
        ("az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1,2\nyesterday,1,2\n", "line 3"),
        ("bad.jsonl", '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 2}\n{"arrival_s": 1, oops}\n', "line 2"),
        ("key.jsonl", '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 2}\n\n{"arrival_s": 1, "input_tokens": 1}\n', "line 3"),
        (
            "int.jsonl",
            (
                '{"timestamp": 0, "input_length": 1, "output_length": 2, "hash_ids": []}\n'
                '{"timestamp": 1, "input_length": "x", "output_length": 2, "hash_ids": []}\n'
            ),
            "line 2",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, name, text, needle):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(LlmsimError) as e:
        load_trace(p)
    assert name in str(e.value) and needle in str(e.value)


_CSV = "arrival_s,input_tokens,output_tokens\n"
_MC = '{{"timestamp": {}, "input_length": 10, "output_length": 2}}\n'
_OWN = '{{"arrival_s": {}, "input_tokens": 10, "output_tokens": 2}}\n'


@pytest.mark.parametrize(
    "name,text,needles",
    [
        # offsets from the start of the trace: a negative one queued a phantom request from before t = 0
        ("neg.csv", _CSV + "0,10,2\n1,10,2\n-5,10,2\n", ["line 4", "arrival_s must be >= 0", "'-5'"]),
        ("neg.jsonl", _OWN.format(0) + _OWN.format(-5), ["line 2", "arrival_s must be >= 0", "-5"]),
        ("neg_mooncake.jsonl", _MC.format(0) + _MC.format(-5000), ["line 2", "timestamp must be >= 0", "milliseconds", "-5000"]),
        # beyond a year: a unit mistake, not a trace (1e300 s made the duration 1e300 s, throughput 0)
        ("huge.csv", _CSV + "0,10,2\n1e300,10,2\n", ["line 3", "arrival_s '1e300'", "more than a year", "milliseconds"]),
        ("ms.csv", _CSV + "1700000000000,10,2\n1700000000500,10,2\n", ["line 2", "more than a year"]),
        ("huge.jsonl", _OWN.format(0) + _OWN.format("1e300"), ["line 2", "more than a year"]),
        ("epoch_mooncake.jsonl", _MC.format(1700000000000) + _MC.format(1700000000500), ["line 1", "timestamp", "more than a year"]),
        ("span_azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,2\n2025-11-16 18:15:46.68,10,2\n",
         ["line 3", "after the first request (line 2)", "more than a year"]),
    ],
    ids=lambda v: v if isinstance(v, str) and "\n" not in v else "",
)
def test_arrival_times_outside_the_trace_are_errors_naming_file_and_line(tmp_path, name, text, needles):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(LlmsimError) as e:
        load_trace(p)
    msg = str(e.value)
    assert name in msg and all(n in msg for n in needles), msg
    with pytest.raises(LlmsimError):  # `serve --trace` goes through make_workload
        make_workload(trace=p)


def test_valid_arrival_offsets_are_kept_as_written(tmp_path):
    # a trace may start after t = 0 (not re-based), and unsorted rows are still stably re-sorted
    p = tmp_path / "late.csv"
    p.write_text(_CSV + "1005,10,2\n1000,20,2\n0.0,30,2\n31536000,40,2\n")
    w = load_trace(p)
    assert w.arrival_s.tolist() == [0.0, 1000.0, 1005.0, 31536000.0] and w.input_len.tolist() == [30, 20, 10, 40]
    assert "re-sorted" in w.name
    m = tmp_path / "late_mooncake.jsonl"
    m.write_text(_MC.format(2500) + _MC.format(1000))
    assert load_trace(m).arrival_s.tolist() == [1.0, 2.5]


def test_empty_and_unknown_traces(tmp_path):
    for text in ("", "\n\n", "arrival_s,input_tokens,output_tokens\n"):
        p = tmp_path / "e.csv"
        p.write_text(text)
        with pytest.raises(LlmsimError, match="empty|no requests"):
            load_trace(p)
    p = tmp_path / "odd.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(LlmsimError, match="header"):
        load_trace(p)
    with pytest.raises(LlmsimError, match="not found"):
        load_trace(tmp_path / "missing.csv")
    with pytest.raises(LlmsimError, match="not a regular file"):
        load_trace(tmp_path)  # a directory
    with pytest.raises(LlmsimError, match="format"):
        load_trace(p, fmt="parquet")


def test_max_len_drops_everything(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0,5000,10\n")
    with pytest.raises(LlmsimError, match="no requests left"):
        load_trace(p, max_len=100)


# ------------------------------------------------------------------ make_workload


def test_make_workload_rate_fixed_lengths():
    w = make_workload(num_requests=1000, isl=512, osl=64, rate=5.0, seed=11)
    assert len(w) == 1000 and np.all(w.input_len == 512) and np.all(w.output_len == 64)
    assert np.array_equal(w.arrival_s, poisson_arrivals(5.0, 1000, 11))
    w2 = make_workload(num_requests=1000, isl=512, osl=64, rate=5.0, seed=11)
    assert np.array_equal(w.arrival_s, w2.arrival_s)


def test_make_workload_distributions_deterministic():
    kw = dict(num_requests=5000, input_dist="lognormal:1000,500", output_dist="uniform:1,300", rate=2.0, cv=3.0)
    a, b = make_workload(**kw, seed=1), make_workload(**kw, seed=1)
    c = make_workload(**kw, seed=2)
    for f in ("input_len", "output_len", "arrival_s"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
        assert not np.array_equal(getattr(a, f), getattr(c, f))
    assert a.output_len.min() >= 1 and a.output_len.max() <= 300


def test_make_workload_max_len_clips_sampled_lengths():
    # a tail past max_len is cut off, and the workload's name says how much
    w = make_workload(num_requests=20_000, input_dist="lognormal:1000,800", output_dist="uniform:1,500",
                      concurrency=8, max_len=4096)
    assert np.all(w.input_len + w.output_len <= 4096) and w.input_len.min() >= 1
    share = float(np.mean(w.input_len + w.output_len == 4096))
    assert 0 < share < 0.05 and f"{share:.1%} of requests' sampled lengths clipped" in w.name
    # clipping that would reshape the distribution is an error that says what moved
    with pytest.raises(LlmsimError, match=r"48% of the requests' sampled lengths .* mean 2,500 -> 1,8\d\d tokens"):
        make_workload(num_requests=20_000, input_dist="uniform:1,5000", output_dist="uniform:1,3000", concurrency=8, max_len=4096)
    with pytest.raises(LlmsimError, match="below 1 token.*lognormal"):
        make_workload(num_requests=1000, input_dist="normal:1000,2000", osl=10, concurrency=8)
    with pytest.raises(LlmsimError, match="100% of draws clipped"):
        make_workload(num_requests=100, input_dist="uniform:100,1000", osl=10, concurrency=8, max_len=11)
    with pytest.raises(LlmsimError, match="max_len"):
        make_workload(num_requests=10, isl=4000, osl=200, concurrency=1, max_len=4096)


def test_make_workload_closed_loop_and_offline():
    w = make_workload(num_requests=64, isl=128, osl=16, concurrency=8, warmup=8)
    assert w.closed_loop and w.concurrency == 8 and w.warmup == 8 and w.arrival_s is None
    off = make_workload(num_requests=32, isl=128, osl=16, concurrency=32)
    assert off.closed_loop and off.concurrency == 32 and "offline" in off.name


def test_make_workload_lengths_from_keeps_pairs(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0,100,1\n1,200,2\n2,300,3\n")
    w = make_workload(num_requests=3000, lengths_from=p, rate=1.0, seed=5)
    assert np.all(w.output_len * 100 == w.input_len)
    assert set(w.input_len.tolist()) == {100, 200, 300}
    w2 = make_workload(num_requests=3000, lengths_from=p, rate=1.0, seed=5)
    assert np.array_equal(w.input_len, w2.input_len)


def test_make_workload_trace(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"arrival_s": i * 0.1, "input_tokens": 10 + i, "output_tokens": 2}) + "\n"
                         for i in range(50)))
    w = make_workload(trace=p, num_requests=20, warmup=5)
    assert len(w) == 20 and w.warmup == 5 and w.input_len[0] == 10
    assert len(make_workload(trace=p)) == 50
    assert np.allclose(make_workload(trace=p, time_scale=2.0).arrival_s[-1], 9.8)


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_requests=10, isl=1, osl=1),  # no arrival mode
        dict(num_requests=10, isl=1, osl=1, rate=1.0, concurrency=2),
        dict(num_requests=10, isl=1, osl=1, concurrency=2, trace="x.csv"),
        dict(num_requests=10, isl=1, osl=1, concurrency=2, cv=2.0),
        dict(num_requests=10, isl=1, input_dist="fixed:5", osl=1, rate=1.0),
        dict(num_requests=10, osl=1, rate=1.0),
        dict(num_requests=10, isl=1, rate=1.0),
        dict(num_requests=10, isl=1, osl=1, lengths_from="x.csv", rate=1.0),
        dict(isl=1, osl=1, rate=1.0),
        dict(num_requests=0, isl=1, osl=1, rate=1.0),
        dict(num_requests=10, isl=0, osl=1, rate=1.0),
        dict(num_requests=10, isl=1, osl=1, concurrency=0),
        dict(num_requests=10, isl=1, osl=1, rate=1.0, warmup=10),
        dict(num_requests=10, isl=1, osl=1, trace="x.csv"),
        dict(num_requests=10, isl=1, osl=1, rate=1.0, time_scale=2.0),
        dict(num_requests=10, input_dist="bogus", osl=1, rate=1.0),
    ],
)
def test_make_workload_conflicts(kw):
    with pytest.raises(LlmsimError):
        make_workload(**kw)


def test_lengthdist_is_plain_data():
    d = LengthDist("uniform", a=1, b=3)
    assert d.mean == 2.0 and d.sample(0, rng()).size == 0
    with pytest.raises(LlmsimError):
        LengthDist("weird")


def test_client_jitter_delays_closed_loop_sends_deterministically():
    from llmsim.serving.simulate import Deployment, Pool, simulate

    w = make_workload(num_requests=40, isl=256, osl=16, concurrency=4, seed=3, client_jitter_s=0.01)
    again = make_workload(num_requests=40, isl=256, osl=16, concurrency=4, seed=3, client_jitter_s=0.01)
    assert np.array_equal(w.send_delay_s, again.send_delay_s) and 0 <= w.send_delay_s.min() and w.send_delay_s.max() < 0.01
    assert make_workload(num_requests=40, isl=256, osl=16, concurrency=4, seed=3).send_delay_s is None
    res = simulate(Deployment(model="llama-3.1-8b", pool=Pool("h100-sxm")), w)
    # no request is sent before its client's delay has passed: the first round starts at the delays
    assert np.allclose(np.asarray(res.requests.arrival)[:4], w.send_delay_s[:4])
    a, b = dict(res.summary), dict(simulate(Deployment(model="llama-3.1-8b", pool=Pool("h100-sxm")), again).summary)
    a.pop("simulation_wall_s"), b.pop("simulation_wall_s")
    assert a == b
    with pytest.raises(LlmsimError, match="client_jitter_s"):
        make_workload(num_requests=4, isl=8, osl=2, concurrency=2, client_jitter_s=-1)
    with pytest.raises(LlmsimError, match="closed loop"):
        make_workload(num_requests=4, isl=8, osl=2, rate=1.0, client_jitter_s=0.01)
    with pytest.raises(LlmsimError, match="closed loop"):
        Workload(np.array([4]), np.array([2]), np.array([0.0]), send_delay_s=np.array([0.1]))


@pytest.mark.parametrize("kw, match", [
    (dict(input_dist="fixed:10", osl=5000), "cannot fit max_len = 4096"),  # used to become input 1
    (dict(isl=5000, output_dist="fixed:10"), "cannot fit max_len = 4096"),  # used to clip the input to 4086
    (dict(input_dist="uniform:1,1e30", osl=5), "more than any model's context"),  # numpy 'high is out of bounds'
    (dict(input_dist="fixed:1e20", osl=5), "more than any model's context"),  # OverflowError
    (dict(input_dist="normal:1e12,5", osl=5), "more than any model's context"),
])
def test_length_specs_that_cannot_be_honoured_are_errors(kw, match):
    with pytest.raises(LlmsimError, match=match):
        make_workload(num_requests=8, concurrency=2, max_len=4096, **kw)


def test_a_fixed_length_is_kept_and_the_sampled_side_clipped_around_it():
    wl = make_workload(num_requests=200, concurrency=2, max_len=4096, input_dist="fixed:10", output_dist="uniform:100,4200", seed=1)
    assert (wl.input_len == 10).all() and wl.output_len.max() == 4086 and (wl.input_len + wl.output_len).max() <= 4096
    wl = make_workload(num_requests=200, concurrency=2, max_len=4096, input_dist="uniform:100,4100", osl=100, seed=1)
    assert (wl.output_len == 100).all() and wl.input_len.max() == 3996


def test_trace_length_column_that_is_not_input_or_output_is_named(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n1,20,6\n")
    with pytest.raises(LlmsimError, match="column must be 'input' or 'output', got 'badcol'"):
        make_workload(num_requests=4, concurrency=2, input_dist=f"trace:{f}:badcol", osl=5)


@pytest.mark.parametrize("ids, match", [("[1.7, 2.2]", "must hold integers, got 1.7"),
                                        ("[1180591620717411303424]", "must hold 64-bit integers")])
def test_mooncake_hash_ids_must_be_64_bit_integers(tmp_path, ids, match):
    # 1.7 used to be truncated to block 1; 2**70 ended in an OverflowError
    f = tmp_path / "m.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": %s}\n' % ids)
    with pytest.raises(LlmsimError, match=match):
        load_trace(f)


@pytest.mark.parametrize("kw, match", [
    (dict(rate="5"), "request rate must be a number"),  # float('5') read it
    (dict(rate=True), "request rate must be a number"),
    (dict(rate=3, cv=True), "arrival cv must be a number"),  # silently Poisson
    (dict(concurrency=2, client_jitter_s=True), "client_jitter_s must be a number of seconds"),
    (dict(concurrency=2, client_jitter_s="abc"), "client_jitter_s must be a number of seconds"),  # ValueError
    (dict(concurrency=2, client_jitter_s=None), "client_jitter_s must be a number of seconds"),  # TypeError
])
def test_workload_numbers_of_the_wrong_type_are_errors(kw, match):
    with pytest.raises(LlmsimError, match=match):
        make_workload(num_requests=8, isl=1, osl=1, **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(rate=5, cv=1e-300), r"arrival cv must be between 0.01 and 100"),  # cv*cv underflowed: ZeroDivisionError
    (dict(rate=5, cv=1e200), r"arrival cv must be between 0.01 and 100"),
    (dict(rate=1e-308), "more than a year"),  # an infinite gap: OverflowError deep in the engine
    (dict(rate=1e-14), "more than a year"),  # ~1e13 s arrivals: TTFTs lost to float resolution (0.3 ms for 8 ms)
    (dict(rate=1e-5, cv=3.0), "more than a year"),
    (dict(concurrency=2, client_jitter_s=1e308), r"client_jitter_s must be a number of seconds in \[0, 3600\]"),
])
def test_arrivals_beyond_the_simulated_horizon_are_errors(kw, match):
    """Numbers that are finite but leave the float clock no resolution (or no range) are refused,
    not simulated into a traceback or a silently wrong latency."""
    with pytest.raises(LlmsimError, match=match):
        make_workload(num_requests=1000, isl=1, osl=1, **kw)
    make_workload(num_requests=1000, isl=1, osl=1, rate=1e-4, cv=0.01)  # ~4 months of arrivals: fine


def test_trace_must_be_a_path():
    with pytest.raises(LlmsimError, match="trace must be a path"):
        make_workload(trace=123)
