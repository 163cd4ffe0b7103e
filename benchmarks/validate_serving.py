"""Serving simulator vs real end-to-end benchmarks: every row of the shared silicon CSV.

Runs `llmsim.serving.validate.validate_silicon` on ../shared/data/silicon/
aiconfigurator_silicon_sample.csv (ai-dynamo/aiconfigurator `systems/silicon_sample.csv`,
Apache-2.0): each row's deployment (model, GPU system, backend, precision, parallel layout,
agg or disagg) is simulated under a closed loop of the row's client concurrency with its
ISL/OSL, and the simulated mean TTFT / TPOT are compared with the measured ones. The mapping
rules are in the module docstring of `llmsim.serving.validate`.

Printed: median / p90 APE and median signed error per system/backend/mode group, per backend
x mode, per backend, per mode and overall; the issue's targets (median APE <= 10% TPOT and
<= 15% TTFT, per backend, agg and disagg separately) with met / not met; the error structure
(by client concurrency, by model, by system); skipped rows grouped by reason; wall time.

Nothing is fitted in the default run: the backends' parameters are the named defaults of
`llmsim/serving/backends.py`. All but seven were chosen before any comparison with these rows;
`cpu_per_seq_s` (15 us per sequence per attention-DP rank), `disagg_handoff_s` (per backend:
vllm / sglang 150 ms, trtllm 0 ms per prefill -> decode hand-off, refitted after `prefill_layer_s`), `prefill_layer_s`
(per backend: vllm 0.5, sglang 1.5, trtllm 0.125 ms per model layer of an iteration that runs
prefill, on GPUs without measured kernel tables), `moe_efficiency` (vllm 0.2, sglang 0.2,
trtllm 1.0: the share of the dense GEMM rate the fused-MoE expert GEMMs reach, fitted jointly
with `prefill_layer_s`) and `prefill_moe_layer_s` (trtllm 0.75 ms more per MoE layer of a prefill
iteration on the same GPUs, vllm / sglang 0; fitted jointly with `prefill_layer_s`) and
`prefill_table_moe_layer_s` (vllm 0.5 ms per MoE layer of a prefill iteration on GPUs whose kernel
tables time the rest, trtllm / sglang 0) and `prefill_mla_layer_s` (trtllm 0.75 ms per layer of an
MLA model, its per-MoE-layer time halved to 0.75 ms with it; vllm / sglang 0) were chosen on the
train half of the configuration split (frozen in `benchmarks/split_train_configs.json`: the seed-0
draw, so that a rule that skips rows cannot move fitted-on configurations into the held-out half),
as were the backends that AIConfigurator's benchmark recipe is applied to (vLLM; rule 8d of
`llmsim.serving.validate`), the Blackwell efficiency fractions (`hardware/data/gpus.yaml`) and the
MoE routing skew (`cost/ops.py` `ROUTING_ZIPF_EXPONENT`), so a table of the train and held-out halves is printed too.

Options:
  --extras      also: (a) the disagg rows without worker counts, simulated as 1 prefill +
                1 decode worker (a guess, reported apart, never in the headline numbers);
                (b) the closed loop with staggered client phases (`stagger=True`) instead of
                all clients starting together, as a sensitivity check.
  --calibrate   what fitting `cpu_overhead_s` per backend would do: configurations (distinct
                model x system x layout) are split into the frozen train half and the
                held-out rest; cpu_overhead_s is chosen per backend on a grid to minimise the
                mean of the TTFT and TPOT median APEs on the train rows, and train and held-out
                errors are printed for the defaults and the fitted values. backends.py is not
                changed by this script.
  --rows PATH   write the per-row predicted vs measured CSV to PATH (outside the package).
  --rounds R --warmup-rounds W
                the benchmark protocol simulated (default 10 and 0: 10 x concurrency requests,
                all counted, InferenceMAX's recipe; see rule 6 of llmsim.serving.validate).
  --protocols R:W,R:W,...
                sensitivity to the protocol: the modelled rows re-run under each R:W and the
                median APEs printed per backend x mode, and on the two halves of the
                configuration split used by --calibrate (so a protocol choice can be judged on
                rows it was not picked on). E.g. --protocols 10:0,8:4,5:0,3:0 (~6 min).

    python benchmarks/validate_serving.py [--jobs 2] [--limit N] [--extras] [--calibrate] [--rows out.csv] [--count-repeats]
                                          [--rounds 10 --warmup-rounds 0] [--protocols 10:0,8:4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console
from rich.table import Table

from llmsim.serving.backends import BACKENDS
from llmsim.serving.validate import ROUNDS, WARMUP_ROUNDS, ape_stats, read_silicon_csv, row_data_source, validate_silicon

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "silicon" / "aiconfigurator_silicon_sample.csv"
TARGET_TPOT, TARGET_TTFT = 10.0, 15.0
SPLIT_FILE = ROOT / "benchmarks" / "split_train_configs.json"
OVERHEAD_GRID_MS = (0.0, 0.2, 0.4, 0.6, 1.0, 1.5, 2.5)


def _f(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def stats_table(title: str, groups: dict[str, list[dict]], label: str) -> Table:
    t = Table(title=title)
    for c in (label, "rows", "TTFT med APE %", "TTFT p90 %", "TTFT bias %", "TPOT med APE %", "TPOT p90 %", "TPOT bias %"):
        t.add_column(c, justify="left" if c == label else "right")
    for k, rows in groups.items():
        s = ape_stats(rows)
        t.add_row(k, str(s["rows_modelled"]), _f(s["ttft_median_ape"]), _f(s["ttft_p90_ape"]), _f(s["ttft_median_signed_error"]),
                  _f(s["tpot_median_ape"]), _f(s["tpot_p90_ape"]), _f(s["tpot_median_signed_error"]))
    return t


def group(rows: list[dict], key) -> dict[str, list[dict]]:
    g: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        g[key(r)].append(r)
    return dict(sorted(g.items()))


def conc_bin(c) -> str:
    for lo, hi in ((1, 4), (5, 16), (17, 64), (65, 256), (257, 1024)):
        if lo <= c <= hi:
            return f"{lo:>4}-{hi}"
    return "1025+"


def targets_table(rows: list[dict]) -> Table:
    t = Table(title=f"issue targets: median APE <= {TARGET_TPOT:g}% TPOT and <= {TARGET_TTFT:g}% TTFT")
    for c in ("backend/mode", "rows", "TPOT med APE %", "TPOT target", "TTFT med APE %", "TTFT target"):
        t.add_column(c, justify="left" if c == "backend/mode" else "right")
    for k, g in group([r for r in rows if r["status"] == "ok"], lambda r: f"{r['backend']}/{r['mode']}").items():
        s = ape_stats(g)
        tp, tt = s["tpot_median_ape"], s["ttft_median_ape"]
        t.add_row(k, str(s["rows_modelled"]), _f(tp), "[green]met[/]" if tp is not None and tp <= TARGET_TPOT else "[red]not met[/]",
                  _f(tt), "[green]met[/]" if tt is not None and tt <= TARGET_TTFT else "[red]not met[/]")
    return t


def sync_table(rows: list[dict], raw_by_id: dict[str, dict]) -> Table:
    """Closed-loop synchronisation check, independent of the cost model's absolute speed: for each
    configuration measured at client concurrency c and 2c (c <= 4, everything else equal), the
    ratio TTFT(2c) / TTFT(c), measured and simulated. Clients in lock-step prefill their prompts
    together, so TTFT grows almost in proportion to c while the prefill is a small batch (ratio
    1.5-2); desynchronised clients rarely meet (ratio near 1 plus the decode batch's growth). Above
    c ~ 8 queueing blurs the two, so only c <= 4 is used."""
    by: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if r["status"] == "ok" and r["measured_ttft_ms"] and r["predicted_ttft_ms"]:
            k = (row_data_source(raw_by_id.get(r["id"], {})), r["backend"], r["mode"], r["model"], r["system"], r["precision"],
                 r["isl"], r["osl"], r["layout"])
            by[k].setdefault(int(r["concurrency"]), r)  # first row of repeats
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for k, cs in by.items():
        for c, r in cs.items():
            r2 = cs.get(2 * c)
            if c <= 4 and r2 is not None:
                pairs[f"{k[0]} | {k[1]}/{k[2]}"].append((r2["measured_ttft_ms"] / r["measured_ttft_ms"],
                                                        r2["predicted_ttft_ms"] / r["predicted_ttft_ms"]))
    t = Table(title="closed-loop synchronisation check: median TTFT(2c) / TTFT(c), c <= 4 "
                    "(clients in lock-step ~1.5-2, desynchronised ~1.2)")
    for c in ("data source | backend/mode", "pairs", "measured", "simulated"):
        t.add_column(c, justify="left" if c.startswith("data") else "right")
    for k in sorted(pairs):
        m, p = np.array(pairs[k]).T
        t.add_row(k, str(len(m)), f"{np.median(m):.2f}", f"{np.median(p):.2f}")
    return t


def config_key(r: dict) -> tuple:
    return (r["model"] or r["model_path"], r["system"], r["layout"])


def frozen_train_configs() -> set:
    """The (model, system, layout) configurations every FITTED parameter was chosen on (`SPLIT_FILE`)."""
    return {tuple(k) for k in json.loads(SPLIT_FILE.read_text())["train"]}


def split(rows: list[dict]) -> tuple[set, set]:
    """The modelled rows' configurations, split into the frozen train half (`SPLIT_FILE`) and the
    rest (held-out, including any configuration the frozen half has never seen)."""
    keys = {config_key(r) for r in rows if r["status"] == "ok"}
    train = keys & frozen_train_configs()
    return train, keys - train


def score(rows: list[dict]) -> float:
    s = ape_stats(rows)
    v = [x for x in (s["ttft_median_ape"], s["tpot_median_ape"]) if x is not None]
    return float(np.mean(v)) if v else float("inf")


def calibrate(console: Console, raw_by_id: dict[str, dict], rows: list[dict], jobs: int) -> None:
    train_keys, test_keys = split(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    train_ids = [r["id"] for r in ok if config_key(r) in train_keys]
    test_ids = [r["id"] for r in ok if config_key(r) in test_keys]
    console.print(f"\n[bold]calibration of cpu_overhead_s[/]: {len(train_keys)} train / {len(test_keys)} held-out configurations "
                  f"(the frozen train half, {SPLIT_FILE.name}); "
                  f"{len(train_ids)} / {len(test_ids)} rows")
    raw_train = [raw_by_id[i] for i in dict.fromkeys(train_ids)]
    best: dict[str, tuple[float, float]] = {}
    for ms in OVERHEAD_GRID_MS:
        rep = validate_silicon(None, rows=raw_train, jobs=jobs, cpu_overhead_s={b: ms / 1e3 for b in BACKENDS})
        for b, g in group(rep.rows, lambda r: r["backend"]).items():
            sc = score(g)
            console.print(f"  train  {b:7s} cpu_overhead {ms:4.1f} ms: mean of TTFT/TPOT median APE {sc:6.1f}%")
            if b not in best or sc < best[b][1]:
                best[b] = (ms / 1e3, sc)
    fitted = {b: v[0] for b, v in best.items()}
    console.print("  fitted: " + ", ".join(f"{b} {v * 1e3:.1f} ms (default {BACKENDS[b].cpu_overhead_s * 1e3:.1f} ms)" for b, v in fitted.items()))
    raw_test = [raw_by_id[i] for i in dict.fromkeys(test_ids)]
    res = {}
    for name, ovh in (("defaults", None), ("fitted", fitted)):
        for part, raw in (("train", raw_train), ("held-out", raw_test)):
            res[(name, part)] = validate_silicon(None, rows=raw, jobs=jobs, cpu_overhead_s=ovh).rows
    t = Table(title="cpu_overhead_s: defaults vs fitted, train vs held-out (median APE %)")
    for c in ("backend", "params", "split", "rows", "TTFT med APE", "TPOT med APE"):
        t.add_column(c)
    for b in sorted(fitted):
        for (name, part), rr in res.items():
            s = ape_stats([r for r in rr if r["backend"] == b])
            t.add_row(b, name, part, str(s["rows_modelled"]), _f(s["ttft_median_ape"]), _f(s["tpot_median_ape"]))
    console.print(t)


def protocols(console: Console, raw: list[dict], rows: list[dict], spec: str, jobs: int) -> None:
    """Re-run the modelled rows under each benchmark protocol R:W and tabulate the errors."""
    try:
        protos = [tuple(int(x) for x in p.split(":")) for p in spec.split(",") if p.strip()]
        assert protos and all(len(p) == 2 for p in protos)
    except (ValueError, AssertionError):
        sys.exit(f"--protocols: expected R:W[,R:W...], e.g. 10:0,8:4; got {spec!r}")
    ok_ids = {r["id"] for r in rows if r["status"] == "ok"}
    sub = [r for r in raw if r["id"] in ok_ids]
    train_keys, test_keys = split(rows)
    t = Table(title="benchmark protocol sensitivity: R x concurrency requests, first W x concurrency excluded (median APE %, bias %)")
    for c in ("R:W", "rows", "TTFT med APE", "TTFT bias", "TPOT med APE", "TTFT train / held-out", "TPOT train / held-out"):
        t.add_column(c)
    by_bm = Table(title="benchmark protocol sensitivity per backend x mode (TTFT / TPOT median APE %)")
    by_bm.add_column("R:W")
    keys = sorted({f"{r['backend']}/{r['mode']}" for r in rows if r["status"] == "ok"})
    for k in keys:
        by_bm.add_column(k)
    for r_, w_ in protos:
        t1 = time.perf_counter()
        rr = [r for r in validate_silicon(None, rows=sub, jobs=jobs, rounds=r_, warmup_rounds=w_).rows if r["status"] == "ok"]
        s = ape_stats(rr)
        tr = ape_stats([r for r in rr if config_key(r) in train_keys])
        te = ape_stats([r for r in rr if config_key(r) in test_keys])
        t.add_row(f"{r_}:{w_}", str(s["rows_modelled"]), _f(s["ttft_median_ape"]), _f(s["ttft_median_signed_error"]), _f(s["tpot_median_ape"]),
                  f"{_f(tr['ttft_median_ape'])} / {_f(te['ttft_median_ape'])}", f"{_f(tr['tpot_median_ape'])} / {_f(te['tpot_median_ape'])}")
        g = group(rr, lambda r: f"{r['backend']}/{r['mode']}")
        by_bm.add_row(f"{r_}:{w_}", *[(lambda st: f"{_f(st['ttft_median_ape'])} / {_f(st['tpot_median_ape'])}")(ape_stats(g.get(k, []))) for k in keys])
        console.print(f"  protocol {r_}:{w_}: {time.perf_counter() - t1:.0f} s")
    console.print(t)
    console.print(by_bm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--extras", action="store_true")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--rows", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--warmup-rounds", type=int, default=WARMUP_ROUNDS)
    ap.add_argument("--range-ratio", type=float, default=None,
                    help="lengths uniform in [int(L x ratio), L] for every row (1 = fixed); default: per row, "
                         "the InferenceMAX / InferenceX recipe's 0.8 for its rows, fixed for the others")
    ap.add_argument("--protocols", type=str, default=None)
    ap.add_argument("--count-repeats", action="store_true",
                    help="count every copy of a measurement the CSV lists more than once (rule 10; default: once)")
    a = ap.parse_args()
    console = Console(width=200)

    t0 = time.perf_counter()
    raw = read_silicon_csv(a.csv)
    if a.limit:
        raw = raw[: a.limit]
    rep = validate_silicon(a.csv, rows=raw, jobs=a.jobs, rounds=a.rounds, warmup_rounds=a.warmup_rounds,
                           range_ratio=a.range_ratio, count_repeats=a.count_repeats)
    wall = time.perf_counter() - t0
    console.print(f"[bold]{a.csv.name}[/] (AIConfigurator silicon sample, Apache-2.0): {len(raw)} rows; "
                  f"simulated in {wall:,.1f} s wall with {a.jobs} job(s); seven backend parameters, the HGX Blackwell "
                  f"(b200 / b300) efficiency and the backends of AIConfigurator's recipe (rule 8d) chosen on the train half (Backend.cpu_per_seq_s, "
                  f"disagg_handoff_s, prefill_layer_s, moe_efficiency, prefill_moe_layer_s, prefill_table_moe_layer_s, prefill_mla_layer_s; gpus.yaml mem_bw_fraction "
                  f"and compute fractions, the fp4 stream fraction; cost/ops.py ROUTING_ZIPF_EXPONENT; see the train / held-out table); protocol "
                  f"{a.rounds} x concurrency requests, first {a.warmup_rounds} x concurrency excluded\n")
    rep.render(console)
    rows = rep.rows
    ok = [r for r in rows if r["status"] == "ok"]
    console.print(targets_table(rows))
    train_keys, _ = split(rows)
    console.print(stats_table(f"train / held-out halves (frozen split of (model, system, layout), {SPLIT_FILE.name}; "
                              "Backend.cpu_per_seq_s, disagg_handoff_s, prefill_layer_s, moe_efficiency, prefill_moe_layer_s, "
                              "prefill_table_moe_layer_s, prefill_mla_layer_s, the b200 / b300 efficiency and rule 8d's backends were chosen on the train half)",
                              group(ok, lambda r: f"{r['backend']}/{r['mode']} "
                                                  f"{'train' if config_key(r) in train_keys else 'held-out'}"), "backend/mode half"))
    console.print(stats_table("error structure: by client concurrency (agg)", group([r for r in ok if r["mode"] == "agg"],
                                                                                   lambda r: conc_bin(r["concurrency"])), "concurrency"))
    console.print(stats_table("error structure: by client concurrency (disagg)", group([r for r in ok if r["mode"] == "disagg"],
                                                                                      lambda r: conc_bin(r["concurrency"])), "concurrency"))
    console.print(stats_table("error structure: by model x mode", group(ok, lambda r: f"{r['model']}/{r['mode']}"), "model/mode"))
    console.print(stats_table("error structure: by system x mode", group(ok, lambda r: f"{r['system']}/{r['mode']}"), "system/mode"))
    console.print(stats_table("error structure: by ISL/OSL (agg)", group([r for r in ok if r["mode"] == "agg"],
                                                                          lambda r: f"{r['isl']}/{r['osl']}"), "isl/osl"))
    console.print(sync_table(rows, {r["id"]: r for r in raw}))
    if a.rows:
        rep.write_rows(a.rows)
        console.print(f"per-row CSV written to {a.rows}")

    if a.extras:
        ids = {r["id"] for r in rows if "worker counts not recorded" in (r["reason"] or "")}
        no_workers = [r for r in raw if r["id"] in ids]
        if no_workers:
            t1 = time.perf_counter()
            ex = validate_silicon(None, rows=no_workers, jobs=a.jobs, assume_one_worker=True)
            exok = [r for r in ex.rows if r["status"] == "ok"]
            console.print(f"\n[bold]exploratory[/]: {len(no_workers)} disagg rows without worker counts, simulated as 1 prefill + 1 decode "
                          f"worker ({len(exok)} modelled, {time.perf_counter() - t1:.0f} s). NOT part of the numbers above.")
            console.print(stats_table("disagg rows with assumed 1P+1D workers", group(exok, lambda r: f"{r['system']}/{r['backend']}"), "system/backend"))
        t1 = time.perf_counter()
        ok_ids = {r["id"] for r in ok}
        st = validate_silicon(None, rows=[r for r in raw if r["id"] in ok_ids], jobs=a.jobs, stagger=True)
        console.print(f"\n[bold]sensitivity[/]: the same rows with staggered client phases (stagger=True; {time.perf_counter() - t1:.0f} s)")
        both = {"synchronised start (default)": ok, "staggered phases": [r for r in st.rows if r["status"] == "ok"]}
        t = Table(title="closed-loop start: synchronised vs staggered (median APE %, bias %)")
        for c in ("loop", "backend/mode", "rows", "TTFT med APE", "TTFT bias", "TPOT med APE", "TPOT bias"):
            t.add_column(c)
        for name, rr in both.items():
            for k, g in group(rr, lambda r: f"{r['backend']}/{r['mode']}").items():
                s = ape_stats(g)
                t.add_row(name, k, str(s["rows_modelled"]), _f(s["ttft_median_ape"]), _f(s["ttft_median_signed_error"]),
                          _f(s["tpot_median_ape"]), _f(s["tpot_median_signed_error"]))
        console.print(t)

    if a.protocols:
        protocols(console, raw, rows, a.protocols, a.jobs)
    if a.calibrate:
        calibrate(console, {r["id"]: r for r in raw}, rows, a.jobs)
    console.print(f"\ntotal wall time {time.perf_counter() - t0:,.1f} s")


if __name__ == "__main__":
    main()
