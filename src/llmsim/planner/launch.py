"""Launch and benchmark commands for a planned deployment, so a user can verify it.

For the chosen configuration: the serving command for each engine (vLLM `vllm serve`, SGLang
`python -m sglang.launch_server`, TensorRT-LLM `trtllm-serve` with an extra-options YAML), one per
replica pinned to its GPUs, and for a disaggregated plan the Dynamo frontend plus prefill and
decode worker commands (`python -m dynamo.vllm|dynamo.sglang|dynamo.trtllm --disaggregation-mode
prefill|decode`). The benchmark reproduces the planner's measurement: a closed loop at the
planned total concurrency with the planned lengths and shared prefix (`vllm bench serve
--dataset-name random --random-prefix-len ...` and `aiperf profile ...`), reporting the SLO
percentile and goodput against the same targets.

Translation of the knobs: max_num_seqs = the concurrency found per engine; chunked prefill with
max_num_batched_tokens (vLLM `--max-num-batched-tokens`, SGLang `--chunked-prefill-size` with
`--enable-mixed-chunk`, TRT-LLM `--max_num_tokens` + `enable_chunked_prefill`); fp8 weights =
vLLM/SGLang `--quantization fp8` (TRT-LLM reads the format from a pre-quantised checkpoint), fp8
KV = `--kv-cache-dtype fp8` (SGLang `fp8_e4m3`, TRT-LLM `kv_cache_config.dtype: fp8`); fp4 needs a
pre-quantised NVFP4 checkpoint on every engine.
"""

from __future__ import annotations

import shlex

from .compose import Config
from .space import Candidate
from .workload import PlanWorkload

BENCH_PROMPTS_PER_CLIENT = 10


def _gpu_ranges(start: int, n: int) -> str:
    return ",".join(str(start + i) for i in range(n))


def _quant_flags(engine: str, w: str, kv: str) -> list[str]:
    out: list[str] = []
    if engine == "vllm":
        if w == "fp8":
            out += ["--quantization", "fp8"]
        elif w in ("fp4", "int4", "int8"):
            out += ["# use a pre-quantised checkpoint (" + w + ")"]
        if kv == "fp8":
            out += ["--kv-cache-dtype", "fp8"]
    elif engine == "sglang":
        if w == "fp8":
            out += ["--quantization", "fp8"]
        elif w in ("fp4", "int4", "int8"):
            out += ["# use a pre-quantised checkpoint (" + w + ")"]
        if kv == "fp8":
            out += ["--kv-cache-dtype", "fp8_e4m3"]
    return out


def _join(argv: list[str]) -> str:
    comments = [a for a in argv if a.startswith("# ")]
    body = " ".join(a if a.startswith("--") or a.startswith("$") else shlex.quote(a) for a in argv if not a.startswith("# "))
    return body + ("  " + " ".join(comments) if comments else "")


def vllm_args(model_id: str, c: Candidate, max_num_seqs: int, port: int, extra: list[str] | None = None) -> list[str]:
    f, p = c.family, c.family.par
    a = ["vllm", "serve", model_id, "--tensor-parallel-size", str(p.tp), "--pipeline-parallel-size", str(p.pp)]
    if p.dp > 1:
        a += ["--data-parallel-size", str(p.dp)]
    if p.ep > 1:
        a += ["--enable-expert-parallel"]
    a += ["--max-num-seqs", str(max_num_seqs)]
    # without chunked prefill vLLM's budget must cover max_model_len, its default then (as simulated)
    a += ["--max-num-batched-tokens", str(c.max_num_batched_tokens), "--enable-chunked-prefill"] if c.chunked_prefill else ["--no-enable-chunked-prefill"]
    a += _quant_flags("vllm", f.prec.weight, f.prec.kv)
    a += ["--gpu-memory-utilization", "0.9", "--enable-prefix-caching", "--port", str(port)]
    return a + (extra or [])


def sglang_args(model_id: str, c: Candidate, max_num_seqs: int, port: int, extra: list[str] | None = None, module: str = "sglang.launch_server") -> list[str]:
    f, p = c.family, c.family.par
    a = ["python", "-m", module, "--model-path", model_id, "--tp", str(p.tp * p.dp)]
    if p.pp > 1:
        a += ["--pp-size", str(p.pp)]
    if p.dp > 1:
        a += ["--dp", str(p.dp), "--enable-dp-attention"]
    if p.ep > 1:
        a += ["--ep-size", str(p.ep)]
    a += ["--max-running-requests", str(max_num_seqs)]
    a += ["--chunked-prefill-size", str(c.max_num_batched_tokens), "--enable-mixed-chunk"] if c.chunked_prefill else ["--chunked-prefill-size", "-1"]
    a += _quant_flags("sglang", f.prec.weight, f.prec.kv)
    a += ["--mem-fraction-static", "0.88", "--port", str(port)]
    return a + (extra or [])


def trtllm_yaml(c: Candidate) -> str:
    f, p = c.family, c.family.par
    lines = [f"enable_chunked_prefill: {'true' if c.chunked_prefill else 'false'}",
             "kv_cache_config:", "  free_gpu_memory_fraction: 0.9", "  enable_block_reuse: true"]
    if f.prec.kv == "fp8":
        lines.append("  dtype: fp8")
    if p.dp > 1:
        lines.append("enable_attention_dp: true")
    return "\n".join(lines)


def trtllm_args(model_id: str, c: Candidate, max_num_seqs: int, port: int, yaml_path: str) -> list[str]:
    p = c.family.par
    # with attention-DP TRT-LLM's tp_size is the GPUs per stage (attention split dp ways inside)
    a = ["trtllm-serve", model_id, "--backend", "pytorch", "--tp_size", str(p.tp * p.dp), "--pp_size", str(p.pp)]
    if p.ep > 1:
        a += ["--ep_size", str(p.ep)]
    # max_num_tokens bounds an iteration with or without chunked context, as simulated (without
    # it TRT-LLM rejects a prompt longer than max_num_tokens)
    a += ["--max_batch_size", str(max_num_seqs), "--max_num_tokens", str(c.max_num_batched_tokens),
          "--extra_llm_api_options", yaml_path, "--port", str(port)]
    if c.family.prec.weight != "bf16":
        a += [f"# serve a pre-quantised {c.family.prec.weight} checkpoint (e.g. ModelOpt); TRT-LLM reads the format from it"]
    return a


def _replica_commands(engine: str, model_id: str, c: Candidate, seqs: int, n: int) -> list[str]:
    g = c.family.num_gpus
    per_node = c.family.gpu.spec.gpus_per_node
    out = []
    shown = min(n, max(1, per_node // g) if g <= per_node else 1)
    for i in range(shown):
        port = 8000 + i
        env = f"CUDA_VISIBLE_DEVICES={_gpu_ranges((i * g) % per_node, g)} " if g <= per_node else ""
        if engine == "vllm":
            out.append(env + _join(vllm_args(model_id, c, seqs, port)))
        elif engine == "sglang":
            out.append(env + _join(sglang_args(model_id, c, seqs, port)))
        else:
            out.append(f"cat > extra-llm-api.yaml <<'EOF'\n{trtllm_yaml(c)}\nEOF")
            out.append(env + _join(trtllm_args(model_id, c, seqs, port, "extra-llm-api.yaml")))
    if n > shown:
        out.append(f"# ... {n} replicas in all ({g} GPU{'s' if g > 1 else ''} each, {shown} per {per_node}-GPU node): repeat on each node "
                   "with the same ports, then put a load balancer (least outstanding requests) in front")
    elif n > 1:
        out.append(f"# {n} replicas on ports 8000-{8000 + n - 1}: put a load balancer (least outstanding requests) in front")
    return out


def _dynamo_commands(engine: str, model_id: str, cfg: Config) -> list[str]:
    pc, dc = cfg.prefill_sweep.candidate, cfg.decode_sweep.candidate
    seqs = cfg.per_engine_concurrency
    from dataclasses import replace

    # the simulation ran both pools with the prefill worker's token budget (one engine config per deployment)
    dc = replace(dc, max_num_batched_tokens=pc.max_num_batched_tokens, chunked_prefill=pc.chunked_prefill)
    out = ["python -m dynamo.frontend --http-port 8000 &"]
    gpu = 0
    node = -1
    for role, cand, n in (("prefill", pc, cfg.prefill_workers), ("decode", dc, cfg.decode_workers)):
        g = cand.family.num_gpus
        per_node = cand.family.gpu.spec.gpus_per_node
        for i in range(n):
            if g <= per_node and (gpu % per_node) + g > per_node:
                gpu += per_node - gpu % per_node  # a worker does not straddle nodes
            if gpu // per_node != node:
                node = gpu // per_node
                out.append(f"# node {node}")
            env = f"CUDA_VISIBLE_DEVICES={_gpu_ranges(gpu % per_node, g)} " if g <= per_node else ""
            gpu += g
            s = seqs if role == "decode" else max(8, seqs)
            if engine == "vllm":
                a = vllm_args(model_id, cand, s, 0)
                a = ["python", "-m", "dynamo.vllm", "--model", model_id] + a[3:]
                a = a[: a.index("--port")] + ["--disaggregation-mode", role,
                                              "--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}']
            elif engine == "sglang":
                a = sglang_args(model_id, cand, s, 0, module="dynamo.sglang")
                a = a[: a.index("--port")] + ["--disaggregation-mode", role, "--disaggregation-transfer-backend", "nixl",
                                              "--disaggregation-bootstrap-port", "12345"]
            else:
                a = ["python", "-m", "dynamo.trtllm", "--model-path", model_id, "--extra-engine-args", f"{role}.yaml",
                     "--disaggregation-mode", role]
            out.append(env + _join(a) + " &")
    if engine == "trtllm":
        for role, cand in (("prefill", pc), ("decode", dc)):
            p = cand.family.par
            y = trtllm_yaml(cand) + f"\ntensor_parallel_size: {p.tp * p.dp}\npipeline_parallel_size: {p.pp}\n"
            y += f"max_batch_size: {seqs if role == 'decode' else max(8, seqs)}\nmax_num_tokens: {cand.max_num_batched_tokens}\n"
            y += "disable_overlap_scheduler: true\n" if role == "prefill" else ""
            y += "cache_transceiver_config:\n  backend: DEFAULT\n"
            out.insert(0, f"cat > {role}.yaml <<'EOF'\n{y}EOF")
    return out


def bench_commands(model_id: str, wl: PlanWorkload, concurrency: int, *, ttft_ms: float | None, tpot_ms: float | None,
                   percentile: float, seed: int = 0, port: int = 8000, rate: float | None = None) -> dict:
    """Closed loop at the planned concurrency (what the planner measured); with a target rate,
    Poisson arrivals at that rate capped at the same concurrency."""
    n = max(concurrency * BENCH_PROMPTS_PER_CLIENT, 100)
    isl, osl, pref = int(round(wl.mean_isl)), int(round(wl.mean_osl)), wl.prefix_requested
    rnd_in = max(1, isl - pref)
    vllm = ["vllm", "bench", "serve", "--backend", "vllm", "--model", model_id, "--port", str(port), "--dataset-name", "random",
            "--random-input-len", str(rnd_in), "--random-output-len", str(osl)]
    if pref:
        vllm += ["--random-prefix-len", str(pref)]
    if not wl.fixed:
        vllm += ["--random-range-ratio", "0.5"]
    if rate is not None:
        vllm += ["--request-rate", f"{rate:g}"]
    vllm += ["--ignore-eos", "--max-concurrency", str(concurrency), "--num-prompts", str(n), "--seed", str(seed),
             "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", f"50,{percentile:g},99"]
    goods = []
    if ttft_ms is not None:
        goods.append(f"ttft:{ttft_ms:g}")
    if tpot_ms is not None:
        goods.append(f"tpot:{tpot_ms:g}")
    if goods:
        vllm += ["--goodput", *goods]
    aiperf = ["aiperf", "profile", "--model", model_id, "--url", f"localhost:{port}", "--endpoint-type", "completions", "--streaming",
              "--synthetic-input-tokens-mean", str(rnd_in), "--synthetic-input-tokens-stddev", "0" if wl.fixed else str(int(wl.input_len.std())),
              "--output-tokens-mean", str(osl), "--output-tokens-stddev", "0" if wl.fixed else str(int(wl.output_len.std())),
              "--extra-inputs", "ignore_eos:true"]
    if pref:
        aiperf += ["--num-prefix-prompts", "1", "--prefix-prompt-length", str(pref)]
    if rate is not None:
        aiperf += ["--request-rate", f"{rate:g}"]
    aiperf += ["--concurrency", str(concurrency), "--request-count", str(n), "--random-seed", str(seed)]
    return {"vllm_bench_serve": _join(vllm), "aiperf": _join(aiperf), "num_prompts": n, "max_concurrency": concurrency}


def launch_commands(cfg: Config, model_id: str, wl: PlanWorkload, *, ttft_ms: float | None = None, tpot_ms: float | None = None,
                    percentile: float = 90.0, seed: int = 0, rate: float | None = None,
                    searched_engines: tuple[str, ...] | None = None) -> dict:
    """Serve commands for every engine that runs on the plan's GPUs (the simulated one first),
    Dynamo commands for a disaggregated plan, and the matching benchmark. `searched_engines`: the
    engines the plan compared (the note says whether the others were simulated)."""
    from ..serving.backends import get_backend

    specs = [c.family.gpu.spec for c, _ in cfg.parts]
    engines = [cfg.engine] + [e for e in ("vllm", "sglang", "trtllm")
                              if e != cfg.engine and all(get_backend(e).check_gpu(g) is None for g in specs)]
    out: dict = {"simulated_engine": cfg.engine, "serve": {}, "notes": []}
    if cfg.mode == "aggregated":
        c = cfg.agg_sweep.candidate
        for e in engines:
            out["serve"][e] = _replica_commands(e, model_id, c, cfg.per_engine_concurrency, cfg.replicas)
    else:
        for e in engines:
            out["serve"][e] = _dynamo_commands(e, model_id, cfg)
        out["notes"].append(f"Disaggregated: {cfg.prefill_workers} prefill + {cfg.decode_workers} decode workers behind the Dynamo "
                            "frontend on port 8000 (KV moved with NIXL); run each '# node k' block on its own node (with the "
                            "frontend's etcd/NATS reachable).")
    others = [e for e in engines if e != cfg.engine]
    if others:
        compared = searched_engines is not None and all(e in searched_engines for e in others)
        out["notes"].append(f"Simulated with {cfg.engine}'s scheduler defaults and overheads; the {', '.join(others)} commands carry the same "
                            "layout and limits" + (" (those engines' own best plans are in the ranked list)" if compared else
                                                   " but were not simulated (plan with --backend-engine all to compare them)") + ".")
    out["benchmark"] = bench_commands(model_id, wl, cfg.concurrency, ttft_ms=ttft_ms, tpot_ms=tpot_ms, percentile=percentile, seed=seed,
                                      rate=rate)
    return out
