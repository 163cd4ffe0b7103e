"""`llmsim calibrate`: k-fold fit of the roofline efficiency on the shared H100 tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmsim import calibrate as cal
from llmsim.cli import main
from llmsim.errors import LlmsimError
from llmsim.hardware import get_gpu
from llmsim.hardware.spec import uncalibrated_efficiency

H100 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kernels" / "h100"
needs_shared = pytest.mark.skipif(not H100.exists(), reason="../shared data not present")


@pytest.fixture(scope="module")
def gemm_tables():
    tabs = cal.read_kernel_tables([H100 / "h100_gemm_trtllm_1.3.0rc20_gemm_perf.parquet"])
    rows = tabs["gemm"]
    keep = rows["gemm_dtype"] == "bfloat16"
    return {"gemm": {c: v[keep] for c, v in rows.items()}}


def test_folds_keep_shape_groups_together():
    rows = {"n": np.array([1, 1, 2, 2, 3, 3]), "k": np.array([5, 5, 5, 5, 5, 5]), "gemm_dtype": np.array(["bfloat16"] * 6)}
    f = cal.fold_ids("gemm", rows, 3, seed=1)
    assert f[0] == f[1] and f[2] == f[3] and f[4] == f[5]
    assert set(f.tolist()) == {0, 1, 2}


@needs_shared
def test_calibration_halves_held_out_error_from_uncalibrated_roofline(gemm_tables):
    h100 = get_gpu("h100-sxm").with_overrides(efficiency=uncalibrated_efficiency())
    rep = cal.kfold_calibrate(h100, gemm_tables, k=2, max_rows=1500)
    e = rep.errors["gemm"]
    assert e["calibrated"].n == len(gemm_tables["gemm"]["latency"])  # every row predicted out of fold
    assert e["calibrated"].median_ape * 2 <= e["uncalibrated"].median_ape


@needs_shared
def test_cli_writes_a_spec_the_catalog_loads(tmp_path, capsys, gemm_tables):
    f = tmp_path / "gemm_perf.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    sub = {c: v[:4000] for c, v in gemm_tables["gemm"].items()}
    sub["op_name"] = np.array(["gemm"] * 4000)
    pq.write_table(pa.table(sub), f)
    spec = tmp_path / "h100-cal.yaml"
    main(["calibrate", str(f), "--gpu", "h100-sxm", "--out", str(spec), "--folds", "2", "--max-rows", "800", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert set(d["errors"]["gemm"]) == {"uncalibrated", "shipped", "calibrated"}
    g = get_gpu(str(spec))
    assert g.name == "h100-sxm-calibrated"
    assert g.efficiency.gemm_peak_fraction == pytest.approx(d["efficiency"]["gemm_peak_fraction"])
    assert g.memory_gib == get_gpu("h100-sxm").memory_gib  # inherited from the base


def test_bad_inputs(tmp_path):
    with pytest.raises(LlmsimError):
        cal.read_kernel_tables([tmp_path / "missing"])
    with pytest.raises(LlmsimError):
        cal.read_kernel_tables([tmp_path])  # no table inside
    with pytest.raises(LlmsimError, match="folds"):
        cal.kfold_calibrate(get_gpu("h100-sxm"), {"gemm": {}}, k=1)


# ------------------------------------------------------------------ NCCL tables


@needs_shared
def test_collective_tables_are_found_in_a_directory_and_others_ignored():
    rows = cal.read_collective_tables([H100])  # the directory: GEMM, attention, NCCL and TRT-LLM custom all-reduce
    direct = cal.read_collective_table(H100 / "h100_comm_nccl_2.27.3_nccl_perf.parquet")
    assert len(rows.seconds) == len(direct.seconds) == 1008  # the custom all-reduce table (no nccl_dtype) is not NCCL
    assert set(rows.op) == {"all_reduce", "all_gather", "reduce_scatter", "alltoall"}
    tables = cal.read_kernel_tables([H100])
    assert "collective" not in tables and "gemm" in tables


@needs_shared
def test_cli_calibrates_collectives_from_an_nccl_table(tmp_path, capsys):
    """`llmsim calibrate` on a collectives-only profile (an NCCL table alone): out-of-fold error far
    below the spec-sheet roofline's, and the fitted collective fields in the written spec."""
    spec = tmp_path / "h100-nccl.yaml"
    main(["calibrate", str(H100 / "h100_comm_nccl_2.27.3_nccl_perf.parquet"), "--gpu", "h100-sxm", "--out", str(spec),
          "--folds", "4", "--json"])
    d = json.loads(capsys.readouterr().out)
    e = d["errors"]["collective"]
    assert e["calibrated"]["n"] == 1008
    assert e["calibrated"]["median_ape"] < 12.0 and e["uncalibrated"]["median_ape"] > 20.0, e
    g = get_gpu(str(spec))
    for name in cal.COLLECTIVE_FIELDS:
        assert getattr(g.efficiency, name) == pytest.approx(d["efficiency"][name]), name
    # fitted on every row, so close to the shipped values (fitted on 70% of the groups)
    assert g.efficiency.collective_bw_fraction == pytest.approx(get_gpu("h100-sxm").efficiency.collective_bw_fraction, rel=0.05)
    # nothing but collectives was given: the kernel parameters are the base GPU's
    assert g.efficiency.gemm_peak_fraction == get_gpu("h100-sxm").efficiency.gemm_peak_fraction


def test_collective_calibration_needs_two_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "nccl_perf.parquet"
    n = [256 * 4 ** i for i in range(8)]
    pq.write_table(pa.table({"op_name": ["all_reduce"] * 8, "nccl_dtype": ["bfloat16"] * 8, "num_gpus": [2] * 8,
                             "message_size": n, "latency": [0.01 + x * 1e-8 for x in n]}), f)
    rows = cal.read_collective_tables([tmp_path])
    assert len(rows.seconds) == 8
    with pytest.raises(LlmsimError, match="at least 2"):
        cal.kfold_calibrate(get_gpu("h100-sxm"), {}, k=3, collectives=rows)
    with pytest.raises(LlmsimError, match="nothing to calibrate"):
        cal.kfold_calibrate(get_gpu("h100-sxm"), {}, k=3)
    assert cal.read_collective_tables([]) is None
    tables, coll = cal.read_measurements([tmp_path])
    assert tables == {} and len(coll.seconds) == 8
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlmsimError, match="no kernel table recognised in .*empty"):
        cal.read_measurements([tmp_path / "empty"])


# ------------------------------------------------------------------ bad input: clear errors, not tracebacks


_TINY_GEMM = {"gemm": {"m": np.array([1, 8, 64, 512]), "n": np.array([1024, 1024, 2048, 2048]), "k": np.array([1024] * 4),
                       "gemm_dtype": np.array(["bfloat16"] * 4), "latency": np.array([0.01, 0.012, 0.02, 0.05])}}


@pytest.mark.parametrize("kw, needle", [
    (dict(seed=-1), "seed must be a non-negative integer, got -1"),
    (dict(seed=1.5), "seed must be a non-negative integer, got 1.5"),
    (dict(max_rows=-5), "max_rows must be an integer >= 1"),
    (dict(max_rows=0), "max_rows must be an integer >= 1"),  # used to fit nothing and report the shipped spec as calibrated
])
def test_kfold_calibrate_rejects_bad_seed_and_max_rows(kw, needle):
    with pytest.raises(LlmsimError, match=needle):
        cal.kfold_calibrate(get_gpu("h100-sxm"), _TINY_GEMM, k=2, **kw)
    with pytest.raises(LlmsimError, match=needle):
        cal.fit_efficiency(get_gpu("h100-sxm"), _TINY_GEMM, **kw)


@pytest.mark.parametrize("argv, needle", [
    (["--seed", "-1"], "seed must be a non-negative integer"),
    (["--max-rows", "-5"], "max_rows must be an integer >= 1"),
    (["--max-rows", "0"], "max_rows must be an integer >= 1"),
])
def test_cli_rejects_bad_seed_and_max_rows(tmp_path, capsys, argv, needle):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "gemm_perf.parquet"
    pq.write_table(pa.table({**_TINY_GEMM["gemm"], "op_name": ["gemm"] * 4}), f)
    with pytest.raises(SystemExit) as ex:
        main(["calibrate", str(f), "--gpu", "h100-sxm", "--folds", "2", *argv])
    assert ex.value.code == 2 and needle in capsys.readouterr().err


def test_max_rows_none_fits_every_row():
    assert cal._subsample(np.ones(7, bool), None, 0).tolist() == list(range(7))
    assert cal.check_max_rows(None) is None and cal.check_max_rows(3) == 3


def test_write_spec_to_a_directory_is_a_clear_error(tmp_path):
    g = get_gpu("h100-sxm")
    with pytest.raises(LlmsimError, match="is a directory"):
        cal.write_spec(g, g.efficiency, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(LlmsimError, match="cannot write the calibrated spec"):
        cal.write_spec(g, g.efficiency, tmp_path / "file" / "spec.yaml")  # parent is a file


@pytest.mark.parametrize("name", ["binary.csv", "binary.parquet", "binary.dat"])
def test_a_binary_file_is_a_clear_error(tmp_path, capsys, name):
    f = tmp_path / name
    f.write_bytes(b"\x9c\xff\xfe\x00\x81 not text, not parquet" * 20)
    with pytest.raises(SystemExit) as ex:
        main(["calibrate", str(f), "--gpu", "h100-sxm"])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and name in err.replace("\n", "")
    assert ("not UTF-8 text" if name.endswith(".csv") else "not a readable parquet file") in " ".join(err.split())
    if not name.endswith(".csv"):
        with pytest.raises(LlmsimError, match="not a readable parquet file"):
            cal.read_measurements([f])


@needs_shared
def test_kernel_rows_with_bad_latencies_or_one_shape_group_are_refused(tmp_path):
    # NaN / 0 / negative latencies were a scipy traceback; one shape group gave a "held-out"
    # error that was the shipped values' (its fold had no training rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(H100 / "h100_gemm_trtllm_1.3.0rc20_gemm_perf.parquet").slice(0, 400)
    for bad in (float("nan"), 0.0, -0.01):
        lat = t.column("latency").to_numpy().copy()
        lat[:20] = bad
        f = tmp_path / "gemm_perf.parquet"
        pq.write_table(t.set_column(t.column_names.index("latency"), "latency", pa.array(lat)), f)
        with pytest.raises(LlmsimError, match="20 of the 400 gemm rows have a latency that is not a positive number"):
            cal.read_kernel_tables([f])
    df = t.to_pandas()
    one = df[(df.n == df.n.iloc[0]) & (df.k == df.k.iloc[0]) & (df.gemm_dtype == df.gemm_dtype.iloc[0])]
    f = tmp_path / "one_gemm_perf.parquet"
    pq.write_table(pa.Table.from_pandas(one, preserve_index=False), f)
    with pytest.raises(LlmsimError, match="the gemm rows hold 1 shape group"):
        cal.kfold_calibrate(get_gpu("h100-sxm"), cal.read_kernel_tables([f]), k=3)


def test_kfold_with_more_folds_than_groups_runs_one_fit_per_group(monkeypatch):
    # k = 10**9 used to loop over a billion empty folds; now the folds are the groups (2 here)
    calls = []
    real = cal.fit_efficiency
    monkeypatch.setattr(cal, "fit_efficiency", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    rep = cal.kfold_calibrate("h100-sxm", _TINY_GEMM, k=10**9)  # a catalog name is resolved
    assert len(calls) == 2 + 1  # two folds (the tiny table's two (n, k) groups) and the final fit on all rows
    assert rep.errors["gemm"]["calibrated"].n == 4


def test_calibration_helpers_take_a_gpu_name_and_refuse_other_types():
    assert cal.predict("gemm", _TINY_GEMM["gemm"], "h100-sxm").tolist() == cal.predict("gemm", _TINY_GEMM["gemm"], get_gpu("h100-sxm")).tolist()
    with pytest.raises(LlmsimError, match="a GPU is a catalog name"):
        cal.fit_efficiency(3, _TINY_GEMM)
    with pytest.raises(LlmsimError, match="unknown GPU|not in the catalog|no GPU"):
        cal.evaluate("no-such-gpu", _TINY_GEMM)
