"""Speed and memory of the serving simulator: wall time, simulated requests per second, peak RSS.

(a) The reference workload, as run with Vidur (microsoft/vidur @ 7d47513, warm predictor
    cache) on a machine of this kind: Llama-3-8B on one A100-80GB, Sarathi-style chunked
    prefill with chunk 512, Poisson arrivals at 6.45 req/s, lengths sampled from the Azure
    conversation trace (../shared/data/traces/azure2023_conv.csv; Vidur caps at 16,384
    tokens, Llama-3-8B's context is 8,192 so longer requests are dropped), 10,000 requests,
    exact mode. Vidur's published figures for it (from the issue, measured on this machine
    kind): 74.5 s wall end to end, 4.8 GB peak RSS; 30 s for 1,000 requests.
(b) 1,000,000 Poisson requests on the same deployment at a stable 5 req/s, streaming mode
    (`simulate(..., streaming=True)`: metrics accumulated on the fly, engine state in slots
    recycled as requests complete), and the same at 100,000 and 3,000,000 requests to show
    that peak RSS does not grow with the request count beyond the workload's own numpy
    arrays (arrival, input and output lengths: 24 bytes a request, plus the length-resampling
    index while it is built).

Builds: `pip install .` compiles the simulator's inner loop (serving/engine.py and
serving/steptime.py) with mypyc (setup.py); an editable install runs the same files as Python.
By default each case runs on both -- `compiled` (the installed package, imported with
`python -I`) and `python` (the source tree, src/) -- so the speed-up is measured in the same run;
where the installed package is not compiled only the source tree runs.

Each case runs in a fresh subprocess so its peak RSS is its own. End-to-end wall time
includes building the workload, the simulation and the metrics summary; `cpu s` is the
process's CPU time over the same span (steadier than wall time on a shared machine), and
`req/s` is requests per CPU second.

    pip install .   # the compiled build (a few minutes: mypyc + a C compiler)
    python benchmarks/bench_serve.py [--skip-million] [--skip-3m] [--build compiled|python|both]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT.parent / "shared" / "data" / "traces" / "azure2023_conv.csv"
VIDUR_WALL_S = {10_000: 74.5, 1_000: 30.0}
VIDUR_RSS_MB = 4800

CASE = r"""
import json, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.workload import make_workload
n, rate, trace, streaming = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5] == "streaming"
wl = make_workload(num_requests=n, lengths_from=trace, rate=rate, seed=0, max_len=8192)
dep = Deployment(model="llama-3-8b", pool=Pool("a100-sxm-80gb"), backend="vllm", max_num_batched_tokens=512, chunked_prefill=True)
res = simulate(dep, wl, keep_itl=True, streaming=streaming)
wall = time.perf_counter() - t0
s = res.summary
print(json.dumps({"n": n, "wall_s": wall, "cpu_s": time.process_time() - c0, "sim_s": s["simulation_wall_s"], "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "iterations": s["num_iterations"], "completed": s["num_completed"], "ttft_p50_ms": s["ttft_ms"]["p50"], "tpot_p50_ms": s["tpot_ms"]["p50"],
                  "duration_s": s["duration_s"], "slots": res.requests.n, "compiled": s["simulator_build"] == "compiled"}))
"""


def run(n: int, rate: float, mode: str, build: str) -> dict:
    """One case in a fresh interpreter: build 'compiled' imports the installed package (`-I`:
    no source tree on the path), 'python' the source tree."""
    src = "" if build == "compiled" else str(ROOT / "src")
    out = subprocess.run([sys.executable, "-I", "-c", CASE, src, str(n), str(rate), str(TRACE), mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def installed_is_compiled() -> bool:
    p = subprocess.run([sys.executable, "-I", "-c", "import llmsim.serving.engine as e; print(e.__file__)"], capture_output=True, text=True)
    return p.returncode == 0 and p.stdout.strip().endswith((".so", ".pyd"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-million", action="store_true", help="only the 1,000- and 10,000-request cases")
    ap.add_argument("--skip-3m", action="store_true", help="leave out the 3,000,000-request memory case (~2 min)")
    ap.add_argument("--build", choices=("compiled", "python", "both"), default="both",
                    help="compiled: the installed package (pip install .); python: the source tree; both (default)")
    a = ap.parse_args()
    if not TRACE.exists():
        sys.exit(f"trace not found: {TRACE}")
    cases = [("(a) reference, 1,000 requests", 1_000, 6.45, "exact"), ("(a) reference, 10,000 requests", 10_000, 6.45, "exact")]
    if not a.skip_million:
        cases += [("(b) 100,000 Poisson @ 5 req/s, streaming", 100_000, 5.0, "streaming"),
                  ("(b) 1,000,000 Poisson @ 5 req/s, streaming", 1_000_000, 5.0, "streaming")]
        if not a.skip_3m:
            cases.append(("(b) 3,000,000 Poisson @ 5 req/s, streaming", 3_000_000, 5.0, "streaming"))
    builds = ["compiled", "python"] if a.build == "both" else [a.build]
    if "compiled" in builds and not installed_is_compiled():
        print("the installed llmsim is not the compiled build (editable or pure-Python install; run `pip install .`):"
              " the source tree only\n")
        builds = ["python"]
    print(f"{'case':<44} {'build':>8} {'wall s':>8} {'cpu s':>7} {'sim s':>7} {'req/s':>10} {'iterations':>11} {'peak RSS MB':>12} {'vs Vidur':>9}")
    rss = {}
    cpu: dict[tuple[int, str], float] = {}
    for name, n, rate, mode in cases:
        for build in builds:
            r = run(n, rate, mode, build)
            assert r["compiled"] == (build == "compiled"), "the build imported is not the one asked for"
            cpu[n, build] = r["cpu_s"]
            if mode == "streaming":
                rss[n, build] = (r["rss_mb"], r["slots"])
            ratio = f"{VIDUR_WALL_S[n] / r['wall_s']:.0f}x" if n in VIDUR_WALL_S else "-"
            print(f"{name:<44} {build:>8} {r['wall_s']:>8.2f} {r['cpu_s']:>7.2f} {r['sim_s']:>7.2f} {n / r['cpu_s']:>10,.0f} {r['iterations']:>11,} {r['rss_mb']:>12,.0f} {ratio:>9}")
    print(f"\nVidur on (a): {VIDUR_WALL_S[10_000]} s wall, {VIDUR_RSS_MB} MB peak RSS (10,000 requests); {VIDUR_WALL_S[1_000]} s for 1,000.")
    if rss:
        line = ", ".join(f"{n:,} {b}: {mb:,.0f} MB ({slots} slots)" for (n, b), (mb, slots) in rss.items())
        print(f"streaming peak RSS by request count: {line}; the workload's own arrays are 24 bytes a request")
    if len(builds) == 2:
        line = ", ".join(f"{n:,}: {cpu[n, 'python'] / cpu[n, 'compiled']:.2f}x" for _, n, _, _ in cases)
        print(f"compiled vs python, CPU time per case: {line}")


if __name__ == "__main__":
    main()
