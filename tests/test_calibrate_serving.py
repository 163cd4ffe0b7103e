"""`llmsim calibrate` on end-to-end benchmark rows (silicon CSV): knobs, surrogate, k-fold fit, spec file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from llmsim import calibrate_serving as cs
from llmsim.cli import main
from llmsim.errors import LlmsimError
from llmsim.hardware import get_gpu

SILICON = Path(__file__).resolve().parents[2] / "shared" / "data" / "silicon" / "aiconfigurator_silicon_sample.csv"
needs_shared = pytest.mark.skipif(not SILICON.exists(), reason="../shared data not present")


def _small_csv(tmp_path: Path, foreign: int = 0) -> Path:
    """Llama-3.1-70B TRT-LLM rows on B200 at concurrency <= 8: several layouts, cheap to simulate,
    and no bundled kernel tables (B200 runs on the roofline, so every knob matters); plus
    `foreign` rows measured on H100."""
    with open(SILICON, newline="") as fh:
        rd = csv.DictReader(fh)
        every = list(rd)
        fields = rd.fieldnames
    keep = [r for r in every if r["system"] == "b200_sxm" and r["backend"] == "trtllm" and r["mode"] == "agg"
            and r["model_path"].lower().startswith("meta-llama/llama-3.1-70b") and "_c" in r["id"]
            and int(r["id"].split("_c")[-1].split("_")[0]) <= 8]
    keep += [r for r in every if r["system"] == "h100_sxm"][:foreign]
    f = tmp_path / "rows.csv"
    with open(f, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
    return f


def test_scale_efficiency_divides_fractions_multiplies_times_and_caps_at_peak():
    e = get_gpu("b200-sxm").efficiency
    s = cs.scale_efficiency(e, {"memory": 2.0, "latency": 0.5, "compute": 0.5})
    assert s.mem_bw_fraction == pytest.approx(e.mem_bw_fraction / 2)
    assert s.decode_attn_bw_fraction == pytest.approx(e.decode_attn_bw_fraction / 2)
    assert s.attn_launch_s == pytest.approx(e.attn_launch_s * 0.5)
    assert s.gemm_peak_fraction == 1.0  # 0.89 / 0.5 capped at peak
    assert s.comm_bw_fraction == e.comm_bw_fraction  # untouched knob
    lo, hi = cs.knob_bounds(e)["compute"]
    assert lo == pytest.approx(max(e.gemm_peak_fraction, e.attn_peak_fraction, e.gemm_lowp_peak_fraction)) and hi > 1


def test_config_folds_keep_a_configuration_together():
    class R:
        def __init__(self, c):
            self.config = c

    rows = [R(c) for c in "aabbbccdde"]
    f = cs.config_folds(rows, 3, seed=2)
    for c in "abcd":
        assert len({f[i] for i, r in enumerate(rows) if r.config == c}) == 1
    assert set(f.tolist()) == {0, 1, 2}


@needs_shared
def test_surrogate_tracks_exact_simulation(tmp_path):
    g = get_gpu("b200-sxm")
    rows, _ = cs.silicon_rows([_small_csv(tmp_path)], g)
    rows = rows[::3]
    knobs = list(cs.KNOBS)
    lo = np.array([min(1.0, max(cs.PROBE_LO, cs.knob_bounds(g.efficiency)[k][0])) for k in knobs])
    hi = np.full(len(knobs), cs.PROBE_HI)
    specs = [g.model_copy(update={"efficiency": cs.scale_efficiency(g.efficiency, {k: v})}) for arr in (lo, hi) for k, v in zip(knobs, arr)]
    sims = cs.simulate_rows(rows, [g, *specs])
    sur = cs.Surrogate(sims[0], lo, sims[1:1 + len(knobs)], hi, sims[1 + len(knobs):])
    s = {"compute": 1.2, "memory": 1.3, "latency": 0.6, "network": 1.1}
    approx = sur.predict(np.array([s[k] for k in knobs]))
    exact = cs.simulate_rows(rows, [g.model_copy(update={"efficiency": cs.scale_efficiency(g.efficiency, s)})])[0]
    err = np.abs(approx - exact) / exact
    assert np.nanmedian(err[:, 1]) < 0.02  # TPOT
    assert np.nanmedian(err[:, 0]) < 0.05  # TTFT


@needs_shared
def test_kfold_fit_recovers_a_known_slowdown(tmp_path):
    """Synthetic truth: 'measurements' simulated with memory 1.3x slower and kernel floors 0.6x;
    the fit, started from the shipped spec, must find both and cut held-out error."""
    g = get_gpu("b200-sxm")
    rows, _ = cs.silicon_rows([_small_csv(tmp_path)], g)
    truth = {"memory": 1.3, "latency": 0.6}
    meas = cs.simulate_rows(rows, [g.model_copy(update={"efficiency": cs.scale_efficiency(g.efficiency, truth)})])[0]
    for r, m in zip(rows, meas):
        r.meas = {"ttft": float(m[0]), "tpot": float(m[1])}
    rep = cs.kfold_calibrate_serving(g, rows, k=2, metric="tpot")
    assert rep.scales["memory"] == pytest.approx(1.3, rel=0.08)
    assert rep.scales["latency"] == pytest.approx(0.6, abs=0.15)
    tp = rep.errors["tpot"]
    assert tp["held_out"].n == len(rows)
    assert tp["held_out"].median_ape < 0.25 * tp["shipped"].median_ape
    assert tp["in_sample"].median_ape < 2.0


@needs_shared
def test_cli_on_benchmark_rows_writes_a_loadable_spec(tmp_path, capsys):
    f = _small_csv(tmp_path, foreign=3)
    spec = tmp_path / "b200-e2e.yaml"
    rows_csv = tmp_path / "per_row.csv"
    main(["calibrate", str(f), "--gpu", "b200-sxm", "--folds", "2", "--out", str(spec), "--rows", str(rows_csv), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert set(d["errors"]) == {"ttft", "tpot"} and set(d["errors"]["tpot"]) == {"shipped", "held_out", "in_sample"}
    assert d["rows"] > 10 and d["configs"] >= 2 and d["skipped"]["other GPU"] == 3
    g = get_gpu(str(spec))
    base = get_gpu("b200-sxm").name
    assert g.name == f"{base}-calibrated" and base in g.aliases
    assert g.efficiency.mem_bw_fraction == pytest.approx(d["efficiency"]["mem_bw_fraction"])
    with open(rows_csv) as fh:
        assert len(list(csv.DictReader(fh))) == d["rows"]


@needs_shared
def test_cli_rejects_mixed_inputs_and_foreign_rows(tmp_path, capsys):
    f = _small_csv(tmp_path)
    table = tmp_path / "gemm_perf.parquet"
    table.write_bytes(b"")
    with pytest.raises(SystemExit) as ex:
        main(["calibrate", str(f), str(table), "--gpu", "b200-sxm"])
    assert ex.value.code == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        main(["calibrate", str(f), "--gpu", "h100-sxm"])
    assert ex.value.code == 2
    assert "no benchmark row" in capsys.readouterr().err


def test_too_few_configurations_for_the_folds_is_a_clear_error():
    class R:
        config = "one"

    with pytest.raises(LlmsimError, match="cannot be split into 5 folds"):
        cs.kfold_calibrate_serving(get_gpu("b200-sxm"), [R(), R()], k=5)


@pytest.mark.parametrize("seed", [-1, 2.5])
def test_a_negative_seed_is_a_clear_error_before_any_simulation(seed):
    class R:
        config = "one"

    with pytest.raises(LlmsimError, match="seed must be a non-negative integer"):
        cs.kfold_calibrate_serving(get_gpu("b200-sxm"), [R(), R()], k=2, seed=seed)
    with pytest.raises(LlmsimError, match="seed must be a non-negative integer"):
        cs.config_folds([R(), R()], 2, seed=seed)


@needs_shared
def test_cli_rejects_a_negative_seed_and_a_binary_csv(tmp_path, capsys):
    f = _small_csv(tmp_path)
    with pytest.raises(SystemExit) as ex:
        main(["calibrate", str(f), "--gpu", "b200-sxm", "--folds", "2", "--seed", "-1"])
    assert ex.value.code == 2 and "seed must be a non-negative integer, got -1" in capsys.readouterr().err
    b = tmp_path / "binary.csv"
    b.write_bytes(b"\x9c\xff\xfe\x00\x81" * 100)
    with pytest.raises(SystemExit) as ex:
        main(["calibrate", str(b), "--gpu", "b200-sxm", "--folds", "2"])
    assert ex.value.code == 2 and "not UTF-8 text" in " ".join(capsys.readouterr().err.split())
