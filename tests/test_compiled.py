"""The compiled build (setup.py: mypyc compiles serving/engine.py and serving/steptime.py) gives
the same results as the pure-Python source, bit for bit.

The rest of the suite runs on the source tree (pytest's `pythonpath = src`), so this is where
the installed, compiled package is checked. Skipped where the installed package is not the
compiled one (an editable install, LLMSIM_PURE_PYTHON=1, no C compiler).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs a spread of scheduling paths (chunked / whole / unmixed prefill, closed loop, preemption,
# disaggregation with per-rank queues, attention DP + EP, replicas, PP virtual engines sharing
# their stages, batch waiting, receive interval, prefix caching, streaming metrics) and prints
# each summary and per-request state.
# Run with `python -I` it imports the installed package; argv[1], if given, is put first on
# sys.path (the source tree).
SCRIPT = r"""
import json, sys
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
import numpy as np
import llmsim.serving.engine as engine_mod
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.workload import Workload, make_workload

def dep(**kw):
    kw.setdefault("model", "llama-3.1-8b")
    kw.setdefault("kernels", "none")
    return Deployment(**kw)

open_wl = make_workload(num_requests=150, input_dist="lognormal:1500,1200", output_dist="uniform:1,300", rate=4.0, seed=3)
rng = np.random.default_rng(0)
hashes = [np.concatenate([np.arange(6), 1000 + i * 10 + np.arange(2)]) for i in range(80)]
prefix_wl = Workload(np.full(80, 4096), rng.integers(20, 60, 80), np.cumsum(rng.exponential(0.5, 80)), hash_ids=hashes, hash_block_tokens=512)
moe = {"model": "mixtral-8x7b", "weight_dtype": "fp8"}
cases = {
    "open_chunked": (dep(max_num_batched_tokens=512), open_wl, False),
    "open_whole": (dep(chunked_prefill=False), open_wl, False),
    "open_unmixed": (dep(backend="sglang", max_num_batched_tokens=1024), open_wl, False),
    "closed": (dep(max_num_batched_tokens=512), make_workload(num_requests=120, input_dist="uniform:100,3000", output_dist="uniform:1,200", concurrency=6, seed=1), False),
    "preempt": (dep(memory_fraction=0.225, max_num_batched_tokens=512), make_workload(num_requests=80, isl=900, osl=600, concurrency=40, seed=2), False),
    "preempt_swap": (dep(memory_fraction=0.225, max_num_batched_tokens=512, preemption="swap"), make_workload(num_requests=80, isl=900, osl=600, concurrency=40, seed=2), False),
    "disagg_ranked": (dep(backend="sglang", prefill=Pool("h100-sxm", tp=1, dp=4, ep=4), decode=Pool("h100-sxm", tp=2, ep=2, workers=2), **moe),
                      make_workload(num_requests=120, isl=2048, osl=16, rate=60.0, seed=3), False),
    "adp_ep_trtllm": (dep(backend="trtllm", pool=Pool("h100-sxm", tp=1, dp=4, ep=4), adp_balance_timeout_iters=20, **moe), open_wl, False),
    "replicas": (dep(pool=Pool("h100-sxm", workers=3), max_num_batched_tokens=512, router="round_robin"), open_wl, False),
    "pipeline": (dep(pool=Pool("h100-sxm", pp=4, workers=2), max_num_batched_tokens=1024), open_wl, False),
    "batch_wait": (dep(max_num_batched_tokens=4096, batch_wait_iters=10, batch_wait_tokens_ratio=0.8), open_wl, False),
    "recv_interval": (dep(backend="sglang", max_num_batched_tokens=1024, recv_interval_iters=10), open_wl, False),
    "overlap_closed": (dep(backend="trtllm", max_num_batched_tokens=2048), make_workload(num_requests=120, input_dist="uniform:100,3000", output_dist="uniform:1,200", concurrency=6, seed=1, client_jitter_s=0.003), False),
    "prefix_streaming": (dep(prefix_caching=True), prefix_wl, True),
}
out = {"compiled": engine_mod.__file__.endswith((".so", ".pyd"))}
for name, (d, wl, streaming) in cases.items():
    res = simulate(d, wl, streaming=streaming)
    s = res.summary
    s.pop("simulation_wall_s")
    assert s.pop("simulator_build") == ("compiled" if engine_mod.__file__.endswith((".so", ".pyd")) else "python")
    r = res.requests
    state = {} if streaming else {k: list(getattr(r, k)) for k in ("arrival", "t_sched", "t_first", "t_finish", "gen", "preemptions", "engine")}
    out[name] = {"summary": s, "requests": state}
print(json.dumps(out, sort_keys=True, default=repr))
"""


def _run(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-I", "-c", SCRIPT, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def test_compiled_build_matches_pure_python():
    probe = subprocess.run([sys.executable, "-I", "-c", "import llmsim.serving.engine as e; print(e.__file__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip().endswith((".so", ".pyd")):
        pytest.skip("the installed llmsim is not the compiled build (editable or pure-Python install)")
    compiled = _run()
    pure = _run(str(SRC))
    assert compiled.pop("compiled") is True and pure.pop("compiled") is False
    assert compiled.keys() == pure.keys()
    for name in pure:
        assert compiled[name] == pure[name], f"{name}: the compiled build's results differ from the source's"
        assert pure[name]["summary"]["num_completed"] > 0
