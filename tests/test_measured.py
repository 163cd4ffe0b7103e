"""Tests of the measured-kernel backend (llmsim.cost.measured). Fast; no GPU needed.

Most tests use the bundled H100 tables, so they pass from a clean clone. Tests that
compare with the original AIConfigurator parquet files skip when ../shared is absent.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from llmsim.cost.measured import BUNDLE_FILENAME, KernelTables
from llmsim.errors import LlmsimError

SHARED_KERNELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "kernels" / "h100"
needs_shared = pytest.mark.skipif(not SHARED_KERNELS.is_dir(), reason="../shared/data/kernels/h100 not present")

MS = 1e-3


@pytest.fixture(scope="module")
def kt() -> KernelTables:
    return KernelTables.load()


def _rel(a: float, b: float) -> float:
    return abs(a / b - 1.0)


def _lookup(kt: KernelTables, table: str, r: dict, i: int):
    if table == "gemm":
        return kt.gemm_s(r["m"][i], r["n"][i], r["k"][i], dtype=r["dtype"][i], framework=r["framework"][i])
    if table == "context_attention":
        return kt.context_attention_s(r["batch"][i], r["isl"][i], int(r["num_heads"][i]), int(r["num_kv_heads"][i]),
                                      int(r["head_dim"][i]), dtype=r["attn_dtype"][i], kv_dtype=r["kv_dtype"][i],
                                      window=int(r["window"][i]))
    if table == "generation_attention":
        return kt.generation_attention_s(r["batch"][i], r["kv_len"][i], int(r["num_heads"][i]),
                                         int(r["num_kv_heads"][i]), int(r["head_dim"][i]),
                                         kv_dtype=r["kv_dtype"][i], window=int(r["window"][i]))
    return kt.collective_s(r["op"][i], int(r["num_gpus"][i]), r["message_bytes"][i],
                           implementation=r["implementation"][i], dtype=r["dtype"][i])


TABLES = ("gemm", "context_attention", "generation_attention", "collective")


# ---------------------------------------------------------------------------- loading
def test_bundle_loads_fast_and_is_cached():
    from llmsim.cost import measured

    t0 = time.perf_counter()
    fresh = KernelTables._load_bundle(Path(measured.__file__).parent.parent / "kernels_data" / "h100" / BUNDLE_FILENAME)
    assert time.perf_counter() - t0 < 1.0  # typically ~0.1 s
    assert KernelTables.load() is KernelTables.load()
    assert fresh.device == KernelTables.load().device


def test_bundle_ships_licence_and_notice():
    from llmsim.cost import measured

    d = Path(measured.__file__).parent.parent / "kernels_data" / "h100"
    notice = (d / "NOTICE").read_text()
    assert "Kernel latency tables from ai-dynamo/aiconfigurator (systems/data/h100_sxm), Apache-2.0" in notice
    assert "Apache License" in (d / "LICENSE").read_text()
    assert (d / BUNDLE_FILENAME).stat().st_size < 5e6


def test_device_and_gpu_matching(kt):
    assert kt.device == "NVIDIA H100 80GB HBM3"
    for name in ("h100-sxm", "H100 SXM", "h100_sxm5", "NVIDIA H100 80GB HBM3", "h100"):
        assert kt.matches_gpu(name), name
    for name in ("h100-pcie", "h100-nvl", "h200", "gh200", "a100-sxm", "b200"):
        assert not kt.matches_gpu(name), name


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(LlmsimError, match="does not exist") as e:
        KernelTables.load(tmp_path / "nope")
    assert "gemm_perf" in str(e.value)


def test_directory_without_tables_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(LlmsimError, match="no AIConfigurator-format kernel tables") as e:
        KernelTables.load(tmp_path)
    assert "expected" in str(e.value)


def test_unrelated_parquet_is_ignored(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2], "b": [3.0, 4.0]}), tmp_path / "other.parquet")
    with pytest.raises(LlmsimError, match="no AIConfigurator-format kernel tables"):
        KernelTables.load(tmp_path)


def test_misnamed_table_reports_missing_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"m": [1], "latency": [0.1]}), tmp_path / "x_gemm_perf.parquet")
    with pytest.raises(LlmsimError, match="lacks column"):
        KernelTables.load(tmp_path)


def test_small_directory_of_parquet_files(tmp_path):
    """The directory loader, on a tiny synthetic AIConfigurator GEMM + NCCL table."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    ms, ns, ks = [1, 8, 64], [128, 256], [128, 512]
    rows = [(m, n, k, 0.01 * m * n * k / (64 * 256 * 512) + 0.005) for m in ms for n in ns for k in ks]
    cols = {
        "framework": ["TRTLLM"] * len(rows), "device": ["NVIDIA H100 80GB HBM3"] * len(rows),
        "op_name": ["gemm"] * len(rows), "gemm_dtype": ["bfloat16"] * len(rows),
        "m": [r[0] for r in rows], "n": [r[1] for r in rows], "k": [r[2] for r in rows],
        "latency": [r[3] for r in rows],
    }
    pq.write_table(pa.table(cols), tmp_path / "h100_gemm_trtllm_x_gemm_perf.parquet")
    nccl = {
        "framework": ["TRTLLM"] * 4, "device": ["NVIDIA H100 80GB HBM3"] * 4, "op_name": ["all_reduce"] * 4,
        "kernel_source": ["NCCL"] * 4, "nccl_dtype": ["half"] * 4, "num_gpus": [2, 2, 2, 2],
        "message_size": [1024, 2048, 2048, 4096], "latency": [0.010, 0.011, 0.013, 0.020],
    }
    pq.write_table(pa.table(nccl), tmp_path / "sub_nccl_perf.parquet")
    t = KernelTables.load(tmp_path)
    assert t.device == "NVIDIA H100 80GB HBM3"
    for m, n, k, lat in rows:
        assert _rel(t.gemm_s(m, n, k), lat * MS) < 1e-9
    assert t.gemm_s(65, 256, 512) is None
    assert t.context_attention_s(1, 128, 8, 8, 128) is None  # no attention table loaded
    assert _rel(t.collective_s("all_reduce", 2, 2048), 0.010 * MS) < 1e-9
    assert _rel(t.collective_s("all_reduce", 2, 4096), 0.012 * MS) < 1e-9  # duplicates -> median
    assert t.collective_s("all_reduce", 4, 4096) is None


def test_save_and_reload_roundtrip(kt, tmp_path):
    out = kt.save(tmp_path)
    assert out.name == BUNDLE_FILENAME
    for src in (tmp_path, out):
        t = KernelTables.load(src)
        assert t.device == kt.device
        for table in TABLES:
            a, b = kt.records(table), t.records(table)
            assert len(a["latency_s"]) == len(b["latency_s"])
            assert np.allclose(a["latency_s"], b["latency_s"], rtol=1e-6)


# ---------------------------------------------------------------------------- exact points
@pytest.mark.parametrize(
    "call, ms",
    [
        (lambda t: t.gemm_s(4096, 4096, 4096), 0.17428533),
        (lambda t: t.gemm_s(4096, 4096, 4096, "fp8"), 0.150736),
        (lambda t: t.gemm_s(4096, 4096, 4096, "fp8_block"), 0.146244),
        (lambda t: t.gemm_s(1, 4096, 4096), 0.01656),
        (lambda t: t.gemm_s(4096, 4096, 4096, framework="vllm"), 0.17413512),
        (lambda t: t.context_attention_s(4, 2048, 32, 8, 128), 0.42086399),
        (lambda t: t.generation_attention_s(64, 4096, 32, 8, 128), 0.36533332),  # isl 1 + step 4095
        (lambda t: t.collective_s("all_reduce", 8, 2 * 1048576), (0.03855 + 0.03869) / 2),  # half: 2 B/element
        (lambda t: t.collective_s("all_reduce", 8, 2 * 1048576, implementation="trtllm"), 0.03548544),
    ],
)
def test_known_measurements_are_reproduced(kt, call, ms):
    assert _rel(call(kt), ms * MS) < 0.005


@pytest.mark.parametrize("table", TABLES)
def test_grid_points_are_reproduced(kt, table):
    r = kt.records(table)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(r["latency_s"]), size=min(400, len(r["latency_s"])), replace=False):
        got = _lookup(kt, table, r, i)
        assert got is not None, {k: v[i] for k, v in r.items()}
        assert _rel(got, r["latency_s"][i]) < 0.005


# ---------------------------------------------------------------------------- interpolation
def test_gemm_interpolation_is_bracketed_by_its_cell(kt):
    g = kt.records("gemm")
    rng = np.random.default_rng(1)
    ms = np.unique(g["m"])
    ns = np.unique(g["n"])
    checked = 0
    for _ in range(300):
        i = rng.integers(len(ms) - 1)
        j = rng.integers(len(ns) - 1)
        kk = rng.integers(len(ns) - 1)
        m = float(rng.uniform(ms[i], ms[i + 1]))
        n = float(rng.uniform(ns[j], ns[j + 1]))
        k = float(rng.uniform(ns[kk], ns[kk + 1]))
        corners = [kt.gemm_s(a, b, c) for a in ms[i:i + 2] for b in ns[j:j + 2] for c in ns[kk:kk + 2]]
        v = kt.gemm_s(m, n, k)
        if any(c is None for c in corners):
            assert v is None
            continue
        checked += 1
        assert min(corners) * (1 - 1e-9) <= v <= max(corners) * (1 + 1e-9)
    assert checked > 250


def test_gemm_grows_with_m_between_neighbours(kt):
    lo, hi = kt.gemm_s(4096, 4096, 4096), kt.gemm_s(8192, 4096, 4096)
    mid = kt.gemm_s(6000, 4096, 4096)
    assert lo < mid < hi
    # log-log interpolation: close to linear scaling in m for a compute-bound GEMM
    assert _rel(mid, lo * 6000 / 4096) < 0.05


def test_attention_interpolation_is_bracketed_along_each_axis(kt):
    rng = np.random.default_rng(2)
    isls = [1, 16, 32, 64, 128, 256, 512, 1024, 1536, 2048, 3072, 4096]
    batches = [1, 2, 4, 8, 16]
    for _ in range(200):
        j = rng.integers(len(isls) - 1)
        b = int(rng.choice(batches))
        s = float(rng.uniform(isls[j], isls[j + 1]))
        a, c = kt.context_attention_s(b, isls[j], 32, 8, 128), kt.context_attention_s(b, isls[j + 1], 32, 8, 128)
        v = kt.context_attention_s(b, s, 32, 8, 128)
        assert min(a, c) * (1 - 1e-9) <= v <= max(a, c) * (1 + 1e-9)
        lens = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
        j = rng.integers(len(lens) - 1)
        s = float(rng.uniform(lens[j], lens[j + 1]))
        a, c = kt.generation_attention_s(b, lens[j], 32, 8, 128), kt.generation_attention_s(b, lens[j + 1], 32, 8, 128)
        v = kt.generation_attention_s(b, s, 32, 8, 128)
        assert min(a, c) * (1 - 1e-9) <= v <= max(a, c) * (1 + 1e-9)
        bb = float(rng.uniform(1, 16))
        lo_b = max(x for x in batches if x <= bb)
        hi_b = min(x for x in batches if x >= bb)
        a, c = kt.generation_attention_s(lo_b, 1024, 32, 8, 128), kt.generation_attention_s(hi_b, 1024, 32, 8, 128)
        v = kt.generation_attention_s(bb, 1024, 32, 8, 128)
        assert min(a, c) * (1 - 1e-9) <= v <= max(a, c) * (1 + 1e-9)


def test_collective_interpolation_is_bracketed(kt):
    for op in ("all_reduce", "all_gather", "reduce_scatter", "alltoall"):
        for n in (2, 4, 8):
            for e in range(10, 28):
                lo, hi = kt.collective_s(op, n, 2.0**e), kt.collective_s(op, n, 2.0 ** (e + 1))
                v = kt.collective_s(op, n, 2.0 ** (e + 0.5))
                assert min(lo, hi) * (1 - 1e-9) <= v <= max(lo, hi) * (1 + 1e-9)
        a, b = kt.collective_s(op, 4, 1 << 24), kt.collective_s(op, 8, 1 << 24)
        assert min(a, b) * (1 - 1e-9) <= kt.collective_s(op, 6, 1 << 24) <= max(a, b) * (1 + 1e-9)


def test_head_counts_not_measured(kt):
    # 28/4 (Qwen2.5-7B): between the measured 24/4 and 32/4, log-interpolated
    lo = kt.context_attention_s(2, 4096, 24, 4, 128)
    hi = kt.context_attention_s(2, 4096, 32, 4, 128)
    v = kt.context_attention_s(2, 4096, 28, 4, 128)
    assert lo < v < hi
    # 128/16 (ratio 8): above the largest measured head count of that ratio (64/8): the
    # 32/4 -> 64/8 log-log slope, clamped to [0, 1], so between flat and linear in heads
    base = kt.generation_attention_s(8, 8192, 64, 8, 128)
    big = kt.generation_attention_s(8, 8192, 128, 16, 128)
    assert base < big <= 2 * base * (1 + 1e-9)
    assert big > 1.5 * base  # heavily loaded: well above flat
    small_load = kt.generation_attention_s(1, 16, 64, 8, 128)
    assert kt.generation_attention_s(1, 16, 128, 16, 128) < 1.5 * small_load  # latency-bound: far from 2x
    # far beyond anything measured at that ratio -> None (fall back to the roofline)
    assert kt.context_attention_s(1, 1024, 1024, 1, 128) is None


def test_sliding_window(kt):
    # measured window entries (gpt-oss: head_dim 64, window 128)
    w = kt.context_attention_s(1, 8192, 64, 8, 64, window=128)
    full = kt.context_attention_s(1, 8192, 64, 8, 64)
    assert w is not None and w < 0.5 * full
    # a window wider than the sequence is ordinary attention
    assert kt.context_attention_s(1, 1000, 32, 8, 128, window=4096) == kt.context_attention_s(1, 1000, 32, 8, 128)
    # unmeasured window: decode over min(kv_len, window); prefill -> None
    assert kt.generation_attention_s(4, 60000, 32, 8, 128, window=4096) == kt.generation_attention_s(4, 4096, 32, 8, 128)
    assert kt.context_attention_s(1, 8192, 32, 8, 128, window=4096) is None


# ---------------------------------------------------------------------------- outside the hull
def test_out_of_range_returns_none(kt):
    assert kt.gemm_s(65536, 4096, 4096) is None  # m > 32768
    assert kt.gemm_s(0, 4096, 4096) is None
    assert kt.gemm_s(16, 131072, 4096) is None  # n > 65536
    assert kt.gemm_s(16, 4096, 16) is None  # k < 32
    assert kt.gemm_s(16, 65536, 65536) is None  # (n, k) pair not measured
    assert kt.gemm_s(16, 64, 4096, "fp8_block") is None  # fp8_block starts at n = 128
    assert kt.gemm_s(16, 4096, 4096, "int4") is None  # no table for that dtype
    # an engine without its own table falls back to the default one (profiles are labelled 'torch')
    assert kt.gemm_s(16, 4096, 4096, framework="sglang") == kt.gemm_s(16, 4096, 4096, framework="trtllm")
    assert kt.context_attention_s(1, 32768, 32, 8, 128) is None  # isl > 16384
    assert kt.context_attention_s(256, 16384, 32, 8, 128) is None  # batch * isl beyond the measured tokens
    assert kt.context_attention_s(1, 1024, 32, 8, 128, dtype="fp8", kv_dtype="bf16") is None  # combo not measured
    assert kt.generation_attention_s(1, 1 << 20, 32, 8, 128) is None
    assert kt.generation_attention_s(4096, 128, 32, 8, 128) is None  # batch > 2048
    assert kt.collective_s("all_reduce", 16, 1 << 20) is None  # more than 8 GPUs
    assert kt.collective_s("all_reduce", 8, 1 << 31) is None
    assert kt.collective_s("all_reduce", 8, 100) is None
    assert kt.collective_s("all_gather", 8, 1 << 20, implementation="trtllm") is None  # custom: all_reduce only


def test_one_gpu_collective_is_free(kt):
    assert kt.collective_s("all_reduce", 1, 1 << 20) == 0.0


def test_bad_arguments_raise(kt):
    with pytest.raises(LlmsimError):
        kt.gemm_s(16, 4096, 4096, "float7")
    with pytest.raises(LlmsimError):
        kt.collective_s("broadcast_everything", 8, 1 << 20)
    with pytest.raises(LlmsimError):
        kt.records("moe")


# ---------------------------------------------------------------------------- dtypes / frameworks
def test_fp8_and_bf16_differ(kt):
    bf16, fp8, blk = (kt.gemm_s(8192, 8192, 8192, d) for d in ("bf16", "fp8", "fp8_block"))
    assert fp8 < 0.75 * bf16  # fp8 tensor cores: ~2x peak
    assert blk != fp8
    assert kt.gemm_s(8192, 8192, 8192, "fp16") == bf16  # fp16 uses the bf16 table
    assert kt.gemm_s(8192, 8192, 8192, "bfloat16") == bf16
    kv8 = kt.generation_attention_s(64, 8192, 32, 8, 128, kv_dtype="fp8")
    kv16 = kt.generation_attention_s(64, 8192, 32, 8, 128, kv_dtype="bf16")
    assert kv8 < kv16  # decode is KV-bandwidth bound
    assert kt.context_attention_s(4, 4096, 32, 8, 128, dtype="fp8", kv_dtype="fp8") != kt.context_attention_s(
        4, 4096, 32, 8, 128)


def test_frameworks_differ(kt):
    a = kt.gemm_s(4096, 4096, 4096, "fp8", framework="trtllm")
    b = kt.gemm_s(4096, 4096, 4096, "fp8", framework="vllm")
    assert a != b
    assert kt.gemm_s(4096, 4096, 4096, "fp8") == a  # default: trtllm
    assert kt.gemm_s(4096, 4096, 4096, "fp8", framework="TensorRT-LLM") == a


def test_generation_kv_length_is_isl_plus_step(kt):
    # at long KV the decode kernel is bandwidth bound: time ~ proportional to KV length
    t32k = kt.generation_attention_s(8, 32768, 32, 8, 128)
    t64k = kt.generation_attention_s(8, 65536, 32, 8, 128)
    assert 1.7 < t64k / t32k < 2.2
    kv_bytes = 8 * 65536 * 8 * 128 * 2 * 2  # batch x tokens x kv heads x head dim x (K, V) x bf16
    assert 1.5e12 < kv_bytes / t64k < 3.35e12  # below the H100's 3.35 TB/s


# ---------------------------------------------------------------------------- held-out mechanism
def test_without_removes_points_and_interpolates_across(kt):
    r = kt.records("gemm")
    held = kt.without("gemm", lambda rec: (rec["framework"] == "trtllm") & (rec["n"] == 5120))
    assert len(held.records("gemm")["latency_s"]) < len(r["latency_s"])
    v = held.gemm_s(2048, 5120, 4096)
    lo, hi = kt.gemm_s(2048, 4096, 4096), kt.gemm_s(2048, 6144, 4096)
    assert v != kt.gemm_s(2048, 5120, 4096)
    assert lo < v < hi
    assert _rel(v, kt.gemm_s(2048, 5120, 4096)) < 0.1
    # the vllm table is untouched
    assert held.gemm_s(2048, 5120, 4096, framework="vllm") == kt.gemm_s(2048, 5120, 4096, framework="vllm")
    # a mask works as well as a predicate
    mask = kt.records("collective")["num_gpus"] == 4
    h2 = kt.without("collective", mask)
    assert h2.collective_s("all_reduce", 4, 1 << 20) != kt.collective_s("all_reduce", 4, 1 << 20)


def test_coverage_describes_every_table(kt):
    c = kt.coverage()
    assert c["gemm"]["trtllm"]["bf16"]["m"] == [1, 32768]
    assert c["gemm"]["vllm"]["fp8_block"]["n"][0] == 128
    assert any(f["head_dim"] == 128 and f["window"] == 0 for f in c["context_attention"]["trtllm"])
    assert c["generation_attention"]["trtllm"][0]["kv_len"][1] >= 65536
    assert c["collective"]["nccl"]["all_reduce"]["fp16"]["num_gpus"] == [2, 4, 8]
    assert "trtllm" in c["collective"]
    assert "aiconfigurator" in c["attribution"]


def test_lookups_are_fast(kt):
    calls = [
        lambda: kt.gemm_s(1000, 4096, 4096),
        lambda: kt.context_attention_s(4, 3000, 32, 8, 128),
        lambda: kt.generation_attention_s(64, 3000, 28, 4, 128),
        lambda: kt.collective_s("all_reduce", 8, 3e6),
    ]
    for f in calls:
        f()
        t0 = time.perf_counter()
        for _ in range(2000):
            f()
        per_call = (time.perf_counter() - t0) / 2000
        assert per_call < 200e-6  # ~5-15 us on a laptop core; loose for busy CI machines


# ---------------------------------------------------------------------------- against the source files
@needs_shared
def test_directory_gives_the_same_answers_as_the_bundle(kt):
    src = KernelTables.load(SHARED_KERNELS)
    assert src.device == kt.device
    assert src.matches_gpu("h100-sxm")
    for table in TABLES:
        a, b = src.records(table), kt.records(table)
        assert len(a["latency_s"]) == len(b["latency_s"])
        for f in a:
            if f == "latency_s":
                assert np.allclose(a[f], b[f], rtol=1e-6, atol=0)
            else:
                assert (np.asarray(a[f]) == np.asarray(b[f])).all(), (table, f)
    rng = np.random.default_rng(3)
    for _ in range(300):
        m, n, k = (float(x) for x in np.exp(rng.uniform(np.log([1, 32, 32]), np.log([32768, 65536, 65536]))))
        for dt in ("bf16", "fp8", "fp8_block"):
            x, y = src.gemm_s(m, n, k, dt), kt.gemm_s(m, n, k, dt)
            assert (x is None) == (y is None)
            if x is not None:
                assert math.isclose(x, y, rel_tol=1e-6)
        b, s = float(np.exp(rng.uniform(0, np.log(256)))), float(np.exp(rng.uniform(0, np.log(16384))))
        x, y = src.context_attention_s(b, s, 28, 4, 128), kt.context_attention_s(b, s, 28, 4, 128)
        assert (x is None) == (y is None) and (x is None or math.isclose(x, y, rel_tol=1e-6))
        x, y = src.generation_attention_s(b, s * 4, 40, 8, 128), kt.generation_attention_s(b, s * 4, 40, 8, 128)
        assert (x is None) == (y is None) and (x is None or math.isclose(x, y, rel_tol=1e-6))
        mb = float(np.exp(rng.uniform(np.log(512), np.log(5e8))))
        x, y = src.collective_s("reduce_scatter", 8, mb), kt.collective_s("reduce_scatter", 8, mb)
        assert math.isclose(x, y, rel_tol=1e-6)


@needs_shared
def test_raw_rows_are_reproduced():
    """Every (sampled) raw parquet row is reproduced by the bundle, median over repeats."""
    pq = pytest.importorskip("pyarrow.parquet")
    kt = KernelTables.load()
    t = pq.read_table(next(SHARED_KERNELS.glob("*gemm_vllm*gemm_perf.parquet"))).to_pydict()
    rng = np.random.default_rng(4)
    names = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8_block"}
    for i in rng.choice(len(t["m"]), 300, replace=False):
        got = kt.gemm_s(t["m"][i], t["n"][i], t["k"][i], names[t["gemm_dtype"][i]], framework="vllm")
        assert _rel(got, t["latency"][i] * MS) < 0.005
    t = pq.read_table(next(SHARED_KERNELS.glob("*generation_attention_perf.parquet"))).to_pydict()
    for i in rng.choice(len(t["isl"]), 300, replace=False):
        got = kt.generation_attention_s(t["batch_size"][i], t["isl"][i] + t["step"][i], t["num_heads"][i],
                                        t["num_key_value_heads"][i], t["head_dim"][i],
                                        kv_dtype=t["kv_cache_dtype"][i], window=t["window_size"][i])
        assert _rel(got, t["latency"][i] * MS) < 0.005


def test_bundled_device_constant_matches_the_bundle():
    from llmsim.cost.measured import BUNDLED_DEVICE

    assert KernelTables.load(None).device == BUNDLED_DEVICE


def test_custom_allreduce_is_trtllm_kernel_below_8mib(kt):
    """allreduce='custom' (the trtllm backend) takes TRT-LLM's measured one-shot/two-shot kernel
    where it beats NCCL, up to 8 MiB; above that, and for other collectives, NCCL's table."""
    from llmsim.cost.model import CUSTOM_ALLREDUCE_MAX_BYTES, CostModel
    from llmsim.cost.ops import comm
    from llmsim.hardware.catalog import get_gpu

    gpu = get_gpu("h100-sxm")
    nccl, custom = CostModel(gpu, kt), CostModel(gpu, kt, allreduce="custom")
    small = comm("ar", "all_reduce", 4 * 8192 * 2, 8, 1, "t")  # 4 decode tokens of an 8192-wide model
    t_n, t_c = nccl.cost(small).total_s, custom.cost(small).total_s
    assert t_n == pytest.approx(kt.collective_s("all_reduce", 8, 4 * 8192 * 2))
    assert t_c == pytest.approx(kt.collective_s("all_reduce", 8, 4 * 8192 * 2, implementation="trtllm"))
    assert t_c < 0.5 * t_n  # ~5 us vs ~19 us on H100
    big = comm("ar", "all_reduce", 4 * CUSTOM_ALLREDUCE_MAX_BYTES, 8, 1, "t")
    assert custom.cost(big).total_s == nccl.cost(big).total_s
    ag = comm("ag", "all_gather", 4 * 8192 * 2, 8, 1, "t")
    assert custom.cost(ag).total_s == nccl.cost(ag).total_s
    with pytest.raises(ValueError, match="allreduce"):
        CostModel(gpu, kt, allreduce="mpi")


# ----------------------------------------------------------------------------- bundled `llmsim profile` runs
def test_bundled_profiles_have_provenance_and_plausible_speeds():
    import json

    from llmsim.cost.measured import bundled_profiles

    profs = bundled_profiles()
    assert {"h100-sxm", "h200-sxm"} <= set(profs)
    for name, path in profs.items():
        meta = json.loads((path / "metadata.json").read_text())
        assert meta["timer"] == "cuda_event" and meta["framework"] == "torch" and meta["versions"]["torch"]
        assert meta["date"].startswith("2026-") and meta["driver"] and meta["timing"]["hold_factor"] > 0
        kt = KernelTables.load(path)
        assert kt.matches_gpu(name)
        # a large bf16 GEMM runs well below peak but at most at it (spec sheet: 989 TFLOP/s dense on both)
        t = kt.gemm_s(8192, 8192, 8192, "bf16")
        assert t is not None and 0.55 * 989e12 < 2 * 8192**3 / t <= 989e12
    # the H200's HBM3e is faster than the H100's HBM3: a long decode attention reads the KV cache faster
    h100, h200 = (KernelTables.load(profs[n]) for n in ("h100-sxm", "h200-sxm"))
    a, b = (kt.generation_attention_s(64, 8192, 32, 8, 128) for kt in (h100, h200))
    assert a is not None and b is not None and b < a


def test_kernels_profile_resolves_per_gpu_and_errors_clearly():
    from llmsim.estimate import estimate, resolve_kernels
    from llmsim.hardware import get_gpu
    from llmsim.serving.validate import row_kernels

    assert resolve_kernels("profile", get_gpu("h100-sxm")).device == "NVIDIA H100 80GB HBM3"
    assert resolve_kernels("profile", get_gpu("h200")).device == "NVIDIA H200"
    with pytest.raises(LlmsimError, match="no bundled llmsim profile was measured on b200") as e:
        resolve_kernels("profile", get_gpu("b200"))
    assert "llmsim profile --out DIR" in e.value.hint and "h100-sxm" in e.value.hint
    r = estimate("llama-3.1-8b", "h200", batch=8, isl=512, osl=64, kernels="profile")
    assert "measured" in {op.source for op in r.decode_ops}
    # validate silicon applies a profile only to rows on its GPU
    assert row_kernels("profile", get_gpu("h100-sxm")) == "profile"
    assert row_kernels("profile", get_gpu("b200")) == "auto"
    from llmsim.cost.measured import bundled_profiles

    d = str(bundled_profiles()["h200-sxm"])
    assert row_kernels(d, get_gpu("h200")) == d and row_kernels(d, get_gpu("h100-sxm")) == "auto"
