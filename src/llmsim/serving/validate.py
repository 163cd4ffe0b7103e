"""`validate_silicon`: simulate every row of an AIConfigurator silicon CSV and compare with it.

Each row of the shared silicon format (ai-dynamo/aiconfigurator `systems/silicon_sample.csv`,
Apache-2.0) is one end-to-end serving benchmark: a model on a GPU system with a backend,
a precision, fixed input/output lengths (ISL/OSL), a closed loop of N clients and a parallel
layout, either aggregated (`mode=agg`) or prefill/decode-disaggregated (`mode=disagg`). For
every row this module builds the `Deployment` and closed-loop `Workload` that reproduce that
benchmark, runs `simulate`, and reports predicted vs measured mean TTFT and TPOT with the
absolute percentage error (APE, in percent). Nothing is fitted per row; seven backend parameters
(`Backend.cpu_per_seq_s`, `Backend.disagg_handoff_s`, `Backend.prefill_layer_s`, `Backend.moe_efficiency`,
`Backend.prefill_moe_layer_s`, `Backend.prefill_table_moe_layer_s`, `Backend.prefill_mla_layer_s`), the
backends rule 8d applies to,
and the HGX Blackwell (b200 / b300) roofline efficiency
(`hardware/data/gpus.yaml`) were chosen on the train half of these rows' configurations (`benchmarks/validate_serving.py` reports train and held-out). Rows
that cannot be modelled are kept with status 'skipped' and the reason -- never dropped.

Mapping rules (assumptions a reader of the numbers must know):

1. Model. `model_path` is looked up in the catalog (`get_model`) as given; if that fails, a
   quantisation suffix (-FP8, -NVFP4, -FP4, ...) and an `nvidia/` republisher prefix are
   stripped and the lookup retried (Qwen/Qwen3-235B-A22B-FP8 -> qwen3-235b-a22b,
   nvidia/DeepSeek-R1-NVFP4 -> deepseek-r1, nvidia/Qwen3-32B-NVFP4 -> qwen3-32b).
   DeepSeek-V3.1 has the config shapes of DeepSeek-V3 and is simulated as deepseek-v3.
   zhipuai/GLM-5 is the catalog's glm-5 (an alias). Models the catalog does not hold are
   skipped with reason "model not in catalog: <model_path>".
2. GPU. `system` goes to `get_gpu` (h100_sxm, b200_sxm, b300_sxm, gb200, gb300); both pools of
   a disagg row use that GPU.
3. Precision. `gemm_quant_mode` (falling back to `precision`) gives the weight format:
   fp8 / fp8_block -> fp8 weights, fp8 activations (W8A8), block-scaled (128x128 weight
   blocks, 'fp8_block' GEMMs after a per-token-group activation quantisation) when the row
   says fp8_block or the catalog model's published checkpoint is block-scaled fp8 (DeepSeek-V3/R1,
   MiniMax-M2.5: their configs' weight_block_size); nvfp4 -> fp4 weights, fp8
   activations (llmsim has no fp4 activation format; the GEMM runs at the chip's fp4 rate);
   int4_wo -> int4 weights, bf16 activations (W4A16); empty / bf16 -> bf16. fp4 weights on a
   GPU without fp4 tensor cores (H100: gpt-oss MXFP4) run weight-only with bf16 activations,
   as the Hopper MXFP4 kernels do. `moe_quant_mode` must name the same format class, else the
   row is skipped (llmsim has one weight format per model). The KV-cache format is not in the
   CSV; rule: fp8 KV cache when the weights are fp8 or fp4, bf16 otherwise (TRT-LLM's and
   NVIDIA ModelOpt checkpoints' usual setting; a vLLM / SGLang run of a plain FP8 checkpoint
   with kv_cache_dtype=auto would keep bf16 KV -- a known ambiguity).
4. Layout. Agg rows: `tp_size`, `pp_size`, `attention_dp_size` (empty or 0 -> 1),
   `moe_tp_size`, `moe_ep_size` -> one replica `Pool(tp, pp, dp, ep=moe_ep_size)`. llmsim's
   MoE layers use moe_tp = tp*dp/ep, so a MoE row must have moe_tp*moe_ep == tp*dp (skipped
   otherwise); for dense models the MoE columns are ignored (ep = 1). Disagg rows: a prefill
   pool from the `prefill_*` columns and a decode pool from the `decode_*` columns, each with
   `*_num_workers` replicas. Disagg rows whose worker counts are empty (all DeepSeek-R1,
   gpt-oss and some Kimi/GLM disagg rows) do not say how many GPUs served the benchmark: they
   are skipped unless `assume_one_worker=True` (1 prefill + 1 decode worker, a guess; such
   rows carry a note and `benchmarks/validate_serving.py` reports them apart, never in the
   headline numbers).
4b. Layout artefacts (skipped, with the reason): (i) where the id encodes `_tpT_epE_` (the
   2026-03-25 / 2026-04-06 sources), the columns must agree: tp*attention_dp == T and, for MoE,
   moe_ep_size == E; (ii) a MoE layout with moe_tp == moe_ep > 1 whose tp*dp exceeds one NVLink
   domain (e.g. tp_size 64 = 8 x 8 for an id saying tp8/ep8 on an 8-GPU B200 node) is the
   `tp = moe_tp x moe_ep` encoding artefact of some sources. (ii') An InferenceX row showing it
   is mapped instead: its single-node `{tp: T, ep: T}` configuration (`dp-attn: true` when the columns
   say tp 1 x attention_dp T*T) written as T*T GPUs, run as tp T ep T (or attention DP T, ep T) on T
   GPUs, where the id says `_tpT_epT_` or, ids without a layout (the database dump), T*T exceeds one
   NVLink domain (`_inferencex_square_encoding`). InferenceX's master config lists `{tp: 4, ep: 4}` and
   `{tp: 8, ep: 8}` (with and without dp-attn) for these models and engines on single-node B200 / B300
   runners, and 77 such rows repeat, to the last digit, the TTFT and TPOT of a copy whose columns say
   tp T ep T or tp 1 x attention_dp T (rule 10 now skips them as repeats). Other sources' rows keep
   the skip: a tp 16 = 4 x 4 layout may be 16 GPUs. (iii) is not a skip but a mapping. An
   InferenceX MoE row with tp == attention_dp = T > 1, moe_tp 1 and moe_ep == T x T (the vLLM
   MiniMax-M2.5 / Kimi-K2.5 rows of the database dump and their 2026-04-06 copies) is InferenceX's
   `{tp: T, ep: T, dp-attn: true}` configuration written as T x T GPUs. It is simulated as tp T
   ep T on T GPUs. Four pieces of evidence support this. InferenceX runs a configuration on `tp`
   GPUs. Its MiniMax-M2.5 vLLM script of the time (`fixed_seq_len/minimaxm2.5_fp8_b200.sh`) passes
   `--tensor-parallel-size=$TP`, plus `--enable-expert-parallel` with EP, whatever `dp-attn`
   says. The 2026-04-06 copies' ids say `_tpT_epT_`. And the rows measure what the same-day plain
   tp T ep T runs measured: MiniMax B200 fp8, 20 cells, TTFT 0.95-1.06x and TPOT 0.99-1.01x; Kimi
   config 635 against the 2026-03-25 tp4 ep4 rows, 15 cells, TTFT 0.86-1.27x and TPOT 0.91-1.07x.
   Versions before 2026-11-22 simulated them on T x T GPUs (tp T x dp T). (iv) is a mapping too.
   InferenceMAX's December 2025 GB200 SGLang disaggregated DeepSeek-R1 runs (image
   lmsysorg/sglang:v0.5.5.post2) carried layout fields that were only labels: "tp, ep, and dp-attn do
   nothing because they are hardcoded in the launch scripts" (InferenceMAX/InferenceMAX
   `.github/configs/nvidia-master.yaml`, `dsr1-{fp4,fp8}-gb200-dynamo-sglang`). The database dump
   writes every such worker as tp 1 x attention_dp N, moe_tp N. The launch scripts the runs
   named (ai-dynamo/dynamo `.../sglang/slurm_jobs/scripts/gb200-{fp4,fp8}/disagg/*.sh`, stored
   versions nearest the pinned commit) ran the low-latency modes, whose decode workers have 4 GPUs,
   at tensor parallelism over the worker's GPUs without attention DP or expert parallelism
   (`--tensor-parallel-size $TOTAL_GPUS --expert-parallel-size 1`), and the max-throughput
   modes, whose decode workers have 32 or 48 GPUs, with attention DP and DeepEP expert
   parallelism over all of a worker's GPUs (`--enable-dp-attention`, tp = dp = ep = GPUs,
   `--moe-a2a-backend deepep`). So such a row's tp 1 x dp N worker is simulated as tp N when its
   decode workers have 4 GPUs, else as dp N ep N (`_inferencemax_gb200_sglang_layout`; its fp4
   8k/1k max-throughput script is not stored: its prefill follows the fp4 1k/1k one, tp = dp =
   ep = 4, which is also what its labels say). Until stop 39 (2026-11-23) they ran as written:
   attention DP with the MoE tensor-parallel, and the fp8 low-latency rows (3) were skipped as
   not fitting in memory. (v) is a skip. InferenceMAX ran its GB200 DeepSeek-R1 benchmarks only
   as multi-node Dynamo disaggregated deployments (`dsr1-{fp4,fp8}-gb200-dynamo-{trt,sglang}`,
   `multinode: true, disagg: true` in the master configs read, InferenceMAX/InferenceMAX @525079ad
   and SemiAnalysisAI/InferenceX @48f302cc; no aggregated GB200 DeepSeek entry name in the index),
   and the 2026-04-06 source writes 55 measurements of those runs (2025-11-17) as aggregated rows
   whose tp is the deployment's whole GPU count: tp 12-72, mostly not dividing the 128 heads; tp 28
   at 8k/1k, c = 3-102, is one 4-GPU context worker plus three TP8 generation workers, the layout
   the CSV's disaggregated rows of that entry's image (0.5.1-rc0.pre3) record at the same
   concurrencies; at c = 2,150 the "tp32" row measures 44 ms
   TPOT where llmsim's one TP32 engine takes 159. Which GPUs prefilled and which decoded is not
   recorded, so an InferenceX aggregated GB200 DeepSeek row wider than one 4-GPU tray is skipped
   with that reason (`_check_inferencemax_gb200_disagg_as_agg`; before stop 63 two of them, tp 32 and tp 64, ran
   as TP engines, 4.7x and 69x the measured TTFT). Layouts the simulator rejects (tp not dividing
   the attention heads) are skipped with the simulator's message.
4c. Speculative decoding. A row measured with it generates several tokens per decode step.
   llmsim simulates it (`specdecode`) where the row's benchmark is known to have used it, with
   the draft count its launch script sets and a published acceptance prior for the model's MTP
   module (`MTP_ACCEPTANCE_PRIORS`: DeepSeek-V3 / R1; nothing is fitted to the rows, which record
   no acceptance); such rows are noted "speculative decoding (...)". Rows whose draft count is not
   known (`SPEC_DECODING_RUNS`) or whose model has no published prior (Qwen3.5) are skipped with
   the reason. Drafts (SemiAnalysisAI/InferenceX launch scripts, every stored version of Feb-May
   2026): TRT-LLM `dsr1_fp{4,8}_b200_trt_mtp.sh` num_nextn_predict_layers 3, or 1 with attention
   DP (`SPEC_DECODING_IMAGE_DRAFTS`); SGLang `dsr1_fp8_b200_mtp.sh` EAGLE with 2 steps, top-k 1,
   3 draft tokens (`SGLANG_DSR1_FP8_B200_MTP_DRAFTS`); the client decodes greedily (temperature 0,
   as the prior's source measured). How the MTP rows are told apart: InferenceX ran its
   single-node B200 TRT-LLM DeepSeek-R1 benchmarks in two configurations on separate images: `dsr1-fp4-b200-trt` / `dsr1-fp8-b200-trt` on
   tensorrt-llm release 1.2.0rc6.post2, and `dsr1-fp4-b200-trt-mtp` / `dsr1-fp8-b200-trt-mtp`,
   every search-space row `spec-decoding: mtp`, on 1.2.0rc6.post3 (SemiAnalysisAI/InferenceX
   `.github/configs/nvidia-master.yaml`, every version from about February to May 2026), so an
   InferenceX row whose `silicon_data_source` names the post3 image (`SPEC_DECODING_IMAGES`) was
   measured with MTP. Those 88 rows' (ISL/OSL, layout, concurrency) grid is the -mtp entries'
   search space, and their measured TPOT is 1.15-2.25x faster than simulated (median per
   layout and ISL/OSL) where the post2 rows' is 0.7-1.4x. InferenceX's SGLang DeepSeek-R1 fp8 B200
   MTP entry ran the same image as its plain one from late March 2026, but over more
   concurrencies: its TP8 rows above the plain entry's range (`SGLANG_DSR1_FP8_B200_STP_MAX_CONC`:
   > 64 at 1k/1k and 1k/8k, > 4 at 8k/1k; the database dump's plain series, config 87, covers
   exactly that range) can only be MTP's and run with MTP too (27 rows). Inside the range a cell
   holds one measurement of each entry: the database dump's config-87 row is the plain entry's,
   so another row of the same cell (same layout, ISL/OSL and concurrency; DeepSeek-R1 and -V3
   alike) whose measured TTFT / TPOT differ from it is the MTP entry's and runs with MTP as well
   (`plan_rows`; 17 rows of the shared CSV, each with 0.67-0.91x the plain row's TPOT and
   1.02-2.06x its TTFT, the speculative-decoding signature). A CSV without the config-87 rows
   runs every row of the range as written: nothing in one row tells the two entries apart.
   InferenceX's Qwen3.5 fp8 B200 SGLang entries (March to late April 2026) ran the plain
   `qwen3.5-fp8-b200-sglang` on lmsysorg/sglang:v0.5.9-cu130-amd64 (TP8 at CONC 4-16, TP4 EP4 at
   16-128) and `qwen3.5-fp8-b200-sglang-mtp` (`spec-decoding: mtp`) on v0.5.9-cu130 (TP4 EP1 at
   4-256), so a Qwen3.5 row naming v0.5.9-cu130 is the MTP entry's (`SPEC_DECODING_MODEL_IMAGES`;
   DeepSeek's plain SGLang entries ran that image too, hence the key on the model): 42 B200 rows,
   every one TP4 EP1, whose measured TPOT is up to 1.85x faster than simulated at CONC 4 where the
   -amd64 rows' is 0.9-1.0x; and the 12 B300 rows measured on 2026-04-03 (wip, before any B300
   entry) in the MTP entry's layout on that image, beside -amd64 runs in the plain entry's
   (skipped: no published acceptance for Qwen3.5's MTP module). A row repeating the measurement of
   a row measured with speculative decoding (rule 10's test) shares its fate: the database dump's
   copies name no image; a copy of a simulated one runs with the same drafts
   (`_copies_of_speculative`, and rule 10 then counts them once), a copy of a skipped one is skipped.
   One run is known as speculative from its own measurements (`SPEC_DECODING_RUNS`): InferenceX's
   TRT-LLM DeepSeek-R1 B200 rows measured on 2026-01-14 on 1.1.0rc2.post2 (32 rows; no stored
   master config of that date), which in all 13 cells they share with the same image's 2025-12-15
   run (fp8 TP8 EP8, CONC 4-64) measure 0.47-0.75x its TPOT and 1.18-1.75x its TTFT; its draft
   count is not recorded, so it is skipped.
5. Client concurrency N (the closed loop). `silicon_concurrency=N` in `silicon_data_source`
   (equal to the id's `_cN_` part in every row where both exist); else the id's `_cN_`; else
   (12 agg, 7 disagg rows) `batch_size x attention_dp` (agg) or `decode_batch_size x
   decode_attention_dp x decode_num_workers` (disagg), noted on the row. An agg row's
   `batch_size` is the batch per attention-DP rank: batch_size x attention_dp == N in all but
   ~30 rows, which are skipped as ambiguous (mostly TRT-LLM rows with N == batch_size x tp:
   attention DP on but not recorded). Engine limits: `max_num_seqs = max(backend default, N)`
   (the benchmarks size the engine batch to hold every client: batch_size per rank) and each
   pool's engine default token budget (`Backend.batched_tokens`): vLLM and TRT-LLM schedule
   8192 tokens per attention-DP rank (llmsim pools the dp ranks of a replica in one engine, so
   8192 x dp, raised to max_num_seqs since decodes share it); SGLang's chunked-prefill size is
   per replica (DP attention divides it among the ranks): 8192 below 160 GB of HBM, 16384
   above (B200 / B300 / GB200 / GB300).
6. Workload: the benchmark protocol. Closed loop of N clients with fixed ISL/OSL (every
   request exactly ISL prompt and OSL output tokens, random tokens so no prefix-cache hits),
   seed 0, num_requests = ROUNDS x N = 10 N, all clients starting together at t = 0 and every
   request counted (WARMUP_ROUNDS = 0). This is the published recipe of the InferenceMAX
   benchmarks, whose ISL/OSL grid (1024/1024, 1024/8192, 8192/1024) the silicon rows share:
   `benchmark_serving.py --num-prompts $((CONC * 10)) --max-concurrency $CONC
   --request-rate inf --ignore-eos`, no warm-up (InferenceMAX README, "Benchmark Client
   Configuration"). From about late January 2026 (InferenceX PR #480, which upstreamed
   kimbochen/bench_serving) its `benchmarks/benchmark_lib.sh` adds `--num-warmups $((2 * CONC))`:
   a separate phase that completes before the measured run, whose requests still all start
   together, so the simulated protocol is the same. The silicon CSV does not record its
   protocol; the measured means therefore include the first round, in which all N prompts
   arrive at once and queue for prefill, so the mean TTFT carries about 1/10 of that burst's
   queueing. Sensitivity (all modelled rows, median APE TTFT / TPOT): steady state after four
   warm-up rounds of eight (the previous default) 43.7 / 13.2%; 3 N requests, no warm-up
   (Dynamo's aiperf helper default) 48.3 / 13.6%; 5 N 38.6 / 13.1%; 10 N 36.4 / 12.8%. `validate_silicon(rounds=,
   warmup_rounds=)` and `llmsim validate silicon --rounds --warmup-rounds` set the protocol
   for a user's own benchmarks. Every request is sent a client turnaround delay, uniform in
   [0, 5 ms), after its client is free (the first round after t = 0): real clients are never
   in exact lock-step (HTTP, tokenisation, network jitter), and with fixed ISL/OSL a
   jitter-free simulation keeps whatever phase pattern it starts in forever; with it, the
   clients settle into the clumping the scheduler itself produces. The delay's size barely
   matters (5 ms and 20 ms give the same medians within 3 points on a 240-row sample); its
   presence does (TTFT bias -44% -> -20% on that sample). Option `stagger=True` instead
   spreads the first round's output lengths over 1..OSL (clients' phases spread uniformly; a
   sensitivity check, not the default). Lengths follow the row's recipe (`row_range_ratio`):
   InferenceMAX / InferenceX rows (`silicon_data_source` 'source_file=2026-....csv', a
   'db-dump' of its GitHub-workflow results, or AIConfigurator's gap analyses of InferenceX
   measurements, 'source_file=kimi-k2.5-gap-analysis.csv': each of those 93 rows repeats an
   InferenceX row's measurement) were measured with `--random-range-ratio 0.8`
   (InferenceMAX README, "Benchmark Client Configuration"), so their prompt and output lengths
   are drawn uniformly from [0.8 L, L]; other rows (AIConfigurator's gap-analysis collector, a
   user's own CSV) get fixed lengths (`RANGE_RATIO = 1`); `range_ratio=` / CLI `--range-ratio`
   sets one value for every row. Why it matters: with fixed lengths the simulated clients fall
   into lock-step (they finish together, so their next prompts are prefilled together) and a
   closed loop's TTFT at c = 4 is about four prompts' prefill. A check that does not depend on
   the cost model's absolute speed settles which the benchmarks did: for every configuration
   measured at c and 2c (c <= 4) the ratio TTFT(2c) / TTFT(c) is 1.03-1.23 measured (median per
   data source and backend), 1.43-1.74 simulated with fixed lengths and 1.15-1.19 with the
   recipe (`benchmarks/validate_serving.py`, "closed-loop synchronisation check"). The recipe
   was the default until 2026-11 only for its request count, because simulating its lengths
   made TTFT a large under-prediction: the lock-step queueing had been hiding a too-fast
   prefill (MoE models and Blackwell GPUs, whose prefill GEMMs are roofline-only; README).
7. Metric. Benchmark clients (aiperf / genai-perf / the backends' benchmark_serving) report
   the *mean* over requests of TTFT and of TPOT = (E2E - TTFT) / (OSL - 1); the simulated
   means of the same quantities are compared with `silicon_ttft_ms` / `silicon_tpot_ms`.
8. Backend. `backend` picks the named parameter set in `backends.py` (vllm / sglang /
   trtllm), the same for every row of that backend whatever `backend_version` says.
8b. Disaggregated front end. The client's first token comes from the decode worker in every
   disagg row (`DISAGG_FIRST_TOKEN`), whatever the backend's own default: the rows'
   `silicon_data_source` names the serving images, and every TRT-LLM disagg row that names one
   runs nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime -- Dynamo's frontend routes the request
   to a prefill worker, then to a decode worker, and streams the decode worker's tokens --
   not `trtllm-serve disaggregated` (which yields the context server's token first); the
   SGLang rows run lmsysorg/sglang images behind SGLang's PD router and the vLLM rows
   vllm/vllm-openai behind its P/D proxy, which stream from the decode worker too. Each hand-off
   also takes the backend's fitted `disagg_handoff_s` (backends.py), the front end's fixed
   time beyond the KV transfer.
8c. Server recipes. A row measured by InferenceMAX / InferenceX (`row_data_source`) runs the
   server settings of its published launch script where they change scheduling
   (`inferencex_engine_settings`, facts from SemiAnalysisAI/InferenceX `benchmarks/`, not
   fitted): vLLM Llama-3.1-70B and gpt-oss-120b rows measured in 2025 (InferenceMAX's 2025 scripts
   `70b_fp8_b200_docker.sh`, `70b_fp4_b200_docker.sh`, `70b_fp8_h100_slurm.sh` and the flat
   `gptoss_fp4_{b200,h100}*.sh`, every stored version) `async-scheduling: true`, a new request waiting
   one more iteration (`Backend.overlap_scheduling`; their B200 FlashInfer all-reduce fusion is not
   applied, as vLLM's fusion stays off in llmsim); TRT-LLM Llama-3.1-70B (`70b_fp8_b200_trt_slurm.sh`, `70b_fp4_b200_trt_docker.sh`)
   `--max_num_tokens 16384`, and for ISL = OSL = 1024 with TP < 8 batch waiting
   (`batch_wait_timeout_iters: 20`, `batch_wait_max_tokens_ratio: 0.9`; `EngineConfig.batch_wait_iters`);
   TRT-LLM gpt-oss-120b (`gptoss_fp4_b200_trt.sh`) `--max_num_tokens 20000` (per attention-DP
   rank, as every TRT-LLM token budget here); TRT-LLM DeepSeek-R1 / V3 on B200 measured on the
   1.2.0rc6.post2 image (`dsr1_fp{4,8}_b200_trt.sh` since PRs #620 / #594, which brought that image
   in with the recipe): `--max_num_tokens` max(8192, (CONC + ISL + 127) // 64 x 64),
   `free_gpu_memory_fraction` 0.8 (fp8: 0.7 at 1k/8k from CONC 256, 0.75 at 8k/1k on TP4), and for
   fp8 1k/1k from CONC 64 batch waiting (`batch_wait_timeout_iters: 40`,
   `batch_wait_max_tokens_ratio: 0.8`) (`_inferencex_trtllm_deepseek`; earlier images ran script
   versions the stored history does not date, so their rows keep the defaults); TRT-LLM with DP
   attention, the attention-DP balance its scripts switch on with it (`attention_dp_config`
   `enable_balance: true`: DeepSeek-R1 / V3 `timeout_iters: 60, batching_wait_iters: 0`, gpt-oss
   TRT-LLM's defaults 50 / 10; `EngineConfig.adp_balance_timeout_iters`); SGLang
   DeepSeek-R1 / V3 (`dsr1_fp4_b200.sh`, `dsr1_fp8_b200.sh`, reused for B300)
   `--scheduler-recv-interval` 10, or 30 from CONC 16 (`EngineConfig.recv_interval_iters`),
   and fp8's 32768 / 8192-token chunks (`_inferencex_sglang_deepseek`; their
   `--max-running-requests` is contradicted by the rows and not applied); SGLang Qwen3.5-397B-A17B
   (`qwen3.5_{bf16,fp8,fp4}_b200.sh`, `_b300.sh`) the same polling, 10 or 30 from CONC 16, with
   32768-token chunks, except B300 fp8 (every 10 iterations at any CONC, SGLang's default chunk)
   (`_inferencex_sglang_qwen3_5`; every stored version of each script agrees on these, except
   fp4 B200's, whose versions poll every 30 iterations at any CONC or as above: the one naming the
   rows' image, nightly-dev-20260402, is taken; the B300 rows measured on 2026-04-03, marked wip,
   before the B300 scripts were committed, get them too: no other B300 recipe is stored); SGLang
   GLM-5 (`glm5_fp8_b200.sh`, `glm5_fp4_b200.sh`, every stored version; the B300 fp8 script reuses
   the B200 recipe) 32768-token chunks, and for fp4 polling every 10 iterations at any CONC
   (`_inferencex_sglang_glm5`). These SGLang scripts are B200 ones (reused for B300), so only
   B200 / B300 rows get them (`_SGLANG_RECIPE_SYSTEMS`). Other rows run the backend's defaults (`backends.py`).
   Settings whose stored script versions disagree and that the rows' image does not date (the
   DeepSeek-R1 TRT-LLM budget of the earlier images: a fixed 2200 tokens, or the formula above
   without its floor) are not applied.
   Disaggregated rows: InferenceX's SGLang DeepSeek-R1 entries on the v0.5.8 / v0.5.8.post1 images
   (GB200, GB300, B200) ran srt-slurm recipes (`SGLANG_DISAGG_RECIPES`, tied to a row by GPU,
   precision, ISL/OSL and both pools' layouts and worker counts; facts from ishandhanani/srt-slurm
   `recipes/`, the branch the master config names). Their prefill workers set
   `chunked-prefill-size` -- 16384 x DP under DP attention (SGLang divides it among the ranks), so
   16384 tokens per rank where SGLang's default gives 2048 at DP 8 -- which becomes the prefill
   pool's own token budget (`Pool.max_num_batched_tokens`); the low-latency GB300 fp8 recipes
   also switch FlashInfer's all-reduce fusion off. Before this (2026-11-25) every disaggregated
   row ran the defaults: the saturated DP-attention prefill pools then ran 8x as many
   iterations, each with the fixed prefill time, and their TTFT came out up to 5x the measured
   one (GB300 fp8 P 1x(dp8) + D 1x(dp8), c = 7680: 5.32x, now 0.63x), the disaggregated rows
   wanting a shorter fixed prefill time than the aggregated ones. Not applied: B200 fp8 DP-attention
   prefill workers with EP 8 (stored recipe versions disagree), the December 2025 v0.5.5.post2 runs.
   Likewise InferenceX's Dynamo + TRT-LLM DeepSeek-R1 entries on the tensorrtllm-runtime 0.8.1.post1
   / .post2 / .post3 images (`trtllm_disagg_recipes`: `data/trtllm_disagg_recipes.csv`, every single-token
   srt-slurm `recipes/trtllm/...` file, one per concurrency or list of them): the context server's
   `max_num_tokens` and `max_batch_size`, the generation server's `max_batch_size` (per
   attention-DP rank; `Pool.max_num_seqs`), and chunked context as the recipe sets it. Where a
   generation server's batch is below its share of the clients, the others wait at the decode
   worker for a slot, and their first token with them: GB200 fp4 P 1x(dp4) + D 4x(tp8), c = 192
   (4 x 32 seats) measured 4.8 s TTFT, simulated 0.4 s before and 5.2 s now.
8d. AIConfigurator's recipe. A row of AIConfigurator's own gap-analysis collector (`row_data_source`
   'AIConfigurator gap analysis', '.../aic-auto-gap-analysis/data/...': Dynamo deployments
   AIConfigurator generated and benchmarked; not its gap analyses of InferenceX rows) runs
   the generator's benchmark-mode settings where they change scheduling
   (`aiconfigurator_engine_settings`; facts from ai-dynamo/aiconfigurator `generator/rule_plugin/
   benchmark/*.rule` and `generator/config/backend_config_mapping.yaml`, not fitted): an aggregated
   worker's token budget is `max_num_tokens = max_batch_size + ISL + 1500` per attention-DP rank
   (`--max-num-batched-tokens` for vLLM, `max_num_tokens` for TRT-LLM), max_batch_size being the
   row's batch_size. With it, fixed-length clients that arrive together no longer prefill all at
   once -- about two 1k prompts fit an iteration -- so their lock-step breaks up as it did on the
   real servers: vLLM's H100 Qwen3-32B rows went from TTFT 48.0% (predicted / measured median
   1.43) to 11.5% (1.00) median APE, and TPOT 6.8 -> 4.6%. Applied to vLLM and TRT-LLM
   (`AIC_RECIPE_BACKENDS`), the choice made on the train half. TRT-LLM joined on 2026-11-24, with
   its overlap scheduler (`Backend.overlap_scheduling`: a new request waits one more iteration):
   on its 490 collector rows TTFT median APE 33.0% -> 34.2% with the recipe alone, 25.0% with
   both (the overlap alone: 43.0%), and with the refitted fixed prefill time the whole train /
   held-out criterion went 11.56 / 13.64 -> 11.36 / 12.90 (`OVERLAP_SCHEDULING` in
   `serving/backends.py`). Before, without the overlap, TRT-LLM's agg rows with the recipe went
   train 25.3 -> 28.8% TTFT median APE (held-out 24.0 -> 19.0%; measured before
   `Backend.prefill_mla_layer_s`, which does not touch these H100 rows) -- their c <= 16 rows, whose
   measured TTFT grows with OSL (about one closed-loop inter-completion gap, E2E / c, for a reason
   not modelled), fall further under -- and SGLang's recipe (`max_prefill_tokens = ISL + 1500`,
   `enable_mixed_chunk`) made its collector rows 12.6 -> 78.3% (11.3% with the prefill cap alone,
   modelled as the chunk budget, and no mixed chunks: not applied either; re-checked on 2026-11-24
   with SGLang's overlap scheduling on, 88 collector rows: TTFT / TPOT median APE 12.4 / 4.8% as
   now, 75.0 / 25.2% with the recipe -- predicted / measured TTFT 0.2-0.4x, TPOT 1.16-1.41x, as if
   those servers had not mixed -- and 11.0 / 5.6% with the prefill cap alone). The same collector's
   client (`bench_run.sh.j2`: aiperf, 50 x N requests after 2 x N warm-up) is not applied: with it
   the vLLM rows above went 11.5 -> 43.3% (predicted / measured 0.58), so rule 6's protocol stays.
   Re-checked on 2026-11-23 on TRT-LLM's 490 collector rows (484 on H100, 6 on GB200): the
   recipe gave 124 rows within 15% TTFT against 115 without it, but a median APE of 34.6%
   against 32.6% (41.5% with chunked context off, as the generator's TRT-LLM template has it),
   so TRT-LLM stayed out until its overlap scheduling was modelled (chunked context stays on, as
   for every TRT-LLM row: with it off and the overlap on, 27.3% on those rows).
9. Errors. Any `LlmsimError` from building or running the deployment (does not fit in
   memory, tp not dividing heads, ...) skips the row with that message as the reason; an
   unexpected exception skips it with "internal error: ...". Bad cells skip the row too, the
   reason naming the column and its text, never a guessed value: a numeric cell that is not a
   finite number ('abc', 'nan', 'inf'); isl / osl, batch sizes, worker counts and layout sizes
   that are not whole numbers; a negative layout size (empty or 0 still means 1, rule 4); a
   batch size or worker count given as 0 or less (empty = not recorded, rule 5); a measured
   TTFT / TPOT <= 0 (empty = not measured; a TPOT of 0 with osl 1, where TPOT is undefined,
   counts as not measured).
10. Repeated measurements (`plan_rows`). A modelled row whose simulated benchmark (the
   deployment, with the model's architecture rather than its name; ISL/OSL, client concurrency,
   length recipe) and measured TTFT and TPOT (to `REPEAT_DIGITS` = 9 significant digits: exports
   differ in the last float digit) are those of another modelled row is the same measurement
   listed again. The first copy in file order is kept (one whose layout columns say what ran
   before one read through rule 4b(ii')), and the others are skipped with its id in the reason, so each measurement
   counts once in the statistics. Independent runs never agree to nine digits, and the copies in
   the shared CSV carry the same measurement date: InferenceX's database dump ('db-dump/...',
   `config_id`) and its source-file exports ('source_file=2026-03-25.csv', '2026-04-06.csv') list
   many runs two or three times, and the dump names DeepSeek-R1 runs' checkpoint
   deepseek-ai/DeepSeek-V3. 274 of the 2,306 rows modelled before this rule were such copies
   (vLLM agg 150, TRT-LLM agg 73, SGLang agg 51; predictions of the kept rows unchanged), and
   38 measurements had copies in both halves of the train / held-out split
   (`benchmarks/validate_serving.py`), which counted them in both. A copy written with at most
   `REPEAT_ROUNDED_DECIMALS` decimals matches its original rounded alike: AIConfigurator's gap
   analyses of InferenceX rows ('kimi-k2.5-gap-analysis.csv', 'qwen3.5-397b-gap-analysis.csv')
   repeat InferenceX's TTFT and TPOT to 0.01 ms. `count_repeats=True`
   (`llmsim validate silicon --count-repeats`) counts every copy, as versions before 2026-11-23 did.

APE = |predicted - measured| / measured x 100. Group statistics (median and p90 APE, and the
median signed error as a bias indicator) are over the modelled rows of each
system/backend/mode group, per backend, per mode, per backend x mode and overall.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LlmsimError
from .specdecode import DEEPSEEK_MTP_ACCEPTANCE, SpecDecoding, chain_acceptance

# ----------------------------------------------------------------------------- constants

SEED = 0
ROUNDS = 10  # num_requests = ROUNDS x concurrency (InferenceMAX: --num-prompts CONC*10) ...
WARMUP_ROUNDS = 0  # ... of which the first WARMUP_ROUNDS x concurrency completions are excluded
CLIENT_JITTER_S = 0.005  # client turnaround: uniform [0, 5 ms) before each request is sent
RANGE_RATIO = 1.0  # lengths uniform in [int(L x ratio), L]; 1 = fixed: rows whose harness is not known (rule 6)
INFERENCEX_RANGE_RATIO = 0.8  # InferenceMAX / InferenceX rows: the recipe's --random-range-ratio (rule 6)
DISAGG_FIRST_TOKEN = "decode"  # disagg rows: the client's first token comes from the decode worker (rule 8b)

_QUANT_SUFFIX = re.compile(r"-(fp8|nvfp4|fp4|fp8-dynamic|awq|gptq)$", re.IGNORECASE)
_MODEL_ALIASES = {"deepseek-v3.1": "deepseek-v3"}  # same architecture (config shapes) as V3

_WEIGHT_FROM_QUANT = {
    "fp8": "fp8",
    "fp8_block": "fp8",
    "nvfp4": "fp4",
    "fp4": "fp4",
    "mxfp4": "fp4",
    "int4_wo": "int4",
    "int4": "int4",
    "int8_wo": "int8",
    "bf16": "bf16",
    "fp16": "bf16",
    "": "bf16",
}

ROW_FIELDS = (
    "id", "system", "backend", "backend_version", "mode", "model_path", "model", "precision", "isl", "osl",
    "concurrency", "layout", "num_gpus", "measured_ttft_ms", "predicted_ttft_ms", "ttft_ape", "measured_tpot_ms",
    "predicted_tpot_ms", "tpot_ape", "status", "reason", "note", "range_ratio", "sim_wall_s",
)


# ----------------------------------------------------------------------------- parsing helpers


def _num(x: Any, col: str = "value") -> float | None:
    """A CSV cell as a finite float; an empty cell -> None. Any other text that is not a finite
    number ('abc', 'nan', 'inf') raises LlmsimError naming `col` and the cell's text, which
    `plan_row` turns into the row's skip reason."""
    if x is None:
        return None
    s = str(x).strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        raise LlmsimError(f"{col} {s!r} is not a number") from None
    if not math.isfinite(v):
        raise LlmsimError(f"{col} {s!r} is not a finite number")
    return v


def _int(x: Any, default: int | None = None, col: str = "value") -> int | None:
    """A CSV cell as an integer ('8' or '8.0'); empty -> `default`; text, non-finite and
    fractional values ('8.7') raise LlmsimError naming `col` and the text."""
    v = _num(x, col)
    if v is None:
        return default
    if v != int(v):
        raise LlmsimError(f"{col} must be a whole number, got {str(x).strip()!r}")
    return int(v)


def _count(row: dict, col: str, what: str = "") -> int | None:
    """A count column that may be left empty (batch sizes, worker counts): None when empty (not
    recorded); 0, a negative, fractional or unparsable value raises LlmsimError naming the column
    and its text (the row is skipped: such a value is never guessed away)."""
    raw = row.get(col)
    v = _int(raw, None, col)
    if v is not None and v < 1:
        raise LlmsimError(f"{col} must be an integer >= 1{what}, got {str(raw).strip()!r}")
    return v


def _size(row: dict, col: str) -> int:
    """A layout size column: empty or 0 -> 1 (rule 4); a negative, fractional or unparsable
    value raises LlmsimError naming the column and its text."""
    raw = row.get(col)
    v = _int(raw, None, col)
    if v is None or v == 0:
        return 1
    if v < 0:
        raise LlmsimError(f"{col} must be an integer >= 1 (empty or 0 = 1), got {str(raw).strip()!r}")
    return v


def _cell_text(row: dict, col: str) -> str:
    """A cell's text as written, for a skip reason ('(empty)' when empty)."""
    return str(row.get(col) or "").strip() or "(empty)"


def _display_int(x: Any) -> int:
    """A cell as an integer for the report row, 0 when it is empty or not a whole number
    (the row's skip reason names the bad value)."""
    try:
        return _int(x, 0) or 0
    except LlmsimError:
        return 0


def _display_num(x: Any) -> float | None:
    """A cell as a finite float for the report row, None when empty or not a finite number."""
    try:
        return _num(x)
    except LlmsimError:
        return None


def _measured_ms(row: dict, col: str, osl: int) -> float | None:
    """A measured mean latency (ms): empty -> None (not measured); a value that is not a finite
    number > 0 raises LlmsimError naming the column and its text. A TPOT of 0 with osl 1 is
    TPOT's undefined value ((E2E - TTFT) / (OSL - 1)) and counts as not measured."""
    raw = row.get(col)
    v = _num(raw, col)
    if v is None:
        return None
    if v == 0 and col == "silicon_tpot_ms" and osl == 1:
        return None
    if v <= 0:
        raise LlmsimError(f"{col} must be > 0 ms, got {str(raw).strip()!r}")
    return v


def _concurrency_from_source(row: dict) -> int | None:
    m = re.search(r"silicon_concurrency=(\d+)", row.get("silicon_data_source") or "")
    if m:
        return int(m.group(1))
    m = re.search(r"_c(\d+)_", row.get("id") or "")
    return int(m.group(1)) if m else None


def resolve_model(model_path: str):
    """Catalog spec for a silicon `model_path` (rule 1), or raise LlmsimError."""
    from ..models.catalog import get_model

    mp = (model_path or "").strip()
    tries = [mp]
    name = mp.split("/", 1)[1] if "/" in mp else mp
    base = _QUANT_SUFFIX.sub("", name)
    if base != name or mp.lower().startswith("nvidia/"):
        tries += [base, _MODEL_ALIASES.get(base.lower(), base)]
        org = mp.split("/", 1)[0] if "/" in mp else ""
        if org and org.lower() != "nvidia":
            tries.insert(1, f"{org}/{base}")
    else:
        tries.append(_MODEL_ALIASES.get(name.lower(), name))
    for t in dict.fromkeys(tries):
        try:
            return get_model(t)
        except LlmsimError:
            continue
    raise LlmsimError(f"model not in catalog: {mp}")


def _quant_modes(row: dict) -> tuple[str, str]:
    """(gemm_quant_mode, moe_quant_mode) of a row, lower-case ('' when empty)."""
    out = []
    for k in ("gemm_quant_mode", "moe_quant_mode"):
        v = (row.get(k) or "").strip().lower()
        out.append("" if v == "nan" else v)
    return out[0], out[1]


def _precision(row: dict) -> tuple[str, str, str, str]:
    """(weight, act, kv, label) per rule 3."""
    g, m = _quant_modes(row)
    p = (row.get("precision") or "").strip().lower()
    if p in ("nan",):
        p = ""
    src = g or p
    if src not in _WEIGHT_FROM_QUANT:
        raise LlmsimError(f"unknown quantisation mode {src!r}")
    w = _WEIGHT_FROM_QUANT[src]
    if m and m not in _WEIGHT_FROM_QUANT:
        raise LlmsimError(f"unknown MoE quantisation mode {m!r}")
    if m and _WEIGHT_FROM_QUANT[m] != w:
        raise LlmsimError(f"GEMM ({g}) and MoE ({m}) quantisation differ: one weight format per model in llmsim")
    act = "fp8" if w in ("fp8", "fp4") else "bf16"
    kv = "fp8" if w in ("fp8", "fp4") else "bf16"
    return w, act, kv, f"w{w}/a{act}/kv{kv}"


@dataclass
class _Plan:
    """What one row asks for: a deployment and a closed loop, or the reason it cannot be modelled."""

    base: dict
    dep_kwargs: dict | None = None
    concurrency: int | None = None
    isl: int = 0
    osl: int = 0
    reason: str = ""
    note: str = ""
    range_ratio: float = RANGE_RATIO  # the row's benchmark recipe (`row_range_ratio`)
    plain_cell: tuple | None = None  # (isl, osl, concurrency) of a rule-4c cell both SGLang entries measured
    remapped: bool = False  # the layout columns were read through rule 4b(ii') (rule 10 keeps a copy written as run first)

    @property
    def cost(self) -> float:
        """Rough relative simulation cost (for load balancing)."""
        c = self.concurrency or 1
        return ROUNDS * c * (1.0 + self.isl / 4096.0) + 200.0


def _layout(tp, pp, dp, ep, workers=None) -> str:
    s = f"tp{tp}" + (f" pp{pp}" if pp > 1 else "") + (f" dp{dp}" if dp > 1 else "") + (f" ep{ep}" if ep > 1 else "")
    return s if workers is None else f"{workers}x({s})"


def _pool_args(row: dict, prefix: str, spec, *, what: str) -> tuple[int, int, int, int]:
    tp = _size(row, prefix + "tp_size")
    pp = _size(row, prefix + "pp_size")
    dp = _size(row, prefix + "attention_dp_size")
    if spec.is_moe:
        mtp = _moe_size(row, prefix + "moe_tp_size")
        mep = _moe_size(row, prefix + "moe_ep_size")
        if not mtp or not mep:
            raise LlmsimError(f"{what}: MoE model without moe_tp_size / moe_ep_size")
        if mtp * mep != tp * dp:
            raise LlmsimError(
                f"{what}: moe_tp {mtp} x moe_ep {mep} != tp {tp} x attention_dp {dp} (llmsim runs MoE on the tp*dp GPUs of a stage)"
            )
        ep = mep
    else:
        ep = 1
    return tp, pp, dp, ep


def _moe_size(row: dict, col: str) -> int | None:
    """A MoE layout column (moe_tp_size / moe_ep_size): None when empty, 0 kept (both mean 'not
    recorded' to `_pool_args`); negative, fractional or unparsable values raise LlmsimError."""
    raw = row.get(col)
    v = _int(raw, None, col)
    if v is not None and v < 0:
        raise LlmsimError(f"{col} must be an integer >= 1, got {str(raw).strip()!r}")
    return v


_ID_LAYOUT = re.compile(r"_tp(\d+)(?:_0)?_ep(\d+)(?:_0)?_\d+$")


def _id_layout(row: dict) -> tuple[int, int] | None:
    """The (T, E) of an id ending `_tpT_epE_N` (the 2026-03-25 / 2026-04-06 sources), else None."""
    m = _ID_LAYOUT.search(row.get("id") or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _check_node_artefact(row: dict, spec, gpu, tp: int, dp: int, ep: int, prefix: str = "") -> None:
    """Rule 4b: a MoE layout with moe_tp == moe_ep > 1 whose tp*dp (= moe_tp*moe_ep) exceeds one
    NVLink domain is the `tp = moe_tp x moe_ep` encoding artefact of some sources (e.g. ids saying
    tp8/ep8 with tp_size 64 on an 8-GPU B200 node): the real GPU count is unknown."""
    if not spec.is_moe:
        return
    mtp, mep = _moe_size(row, prefix + "moe_tp_size"), _moe_size(row, prefix + "moe_ep_size")
    if mtp and mep and mtp == mep > 1 and tp * dp > gpu.nvlink_domain_size:
        raise LlmsimError(
            f"suspect layout: {prefix}tp {tp} x attention_dp {dp} = moe_tp {mtp} x moe_ep {mep} spans more than one "
            f"{gpu.nvlink_domain_size}-GPU NVLink domain (tp = moe_tp x moe_ep encoding artefact?)"
        )


def _check_layout_artefacts(row: dict, spec, gpu, tp: int, dp: int, ep: int) -> None:
    """Rule 4b for agg rows: the id's `_tpT_epE_` (2026-03-25 / 2026-04-06 sources) must agree with the
    columns (world size tp*dp == T and, for MoE, moe_ep == E); plus the NVLink-domain artefact check."""
    named = _id_layout(row)
    if named:
        t_id, e_id = named
        if tp * dp != t_id or (spec.is_moe and ep != e_id):
            raise LlmsimError(
                f"layout columns (tp {tp} x attention_dp {dp}, moe_ep {ep}) disagree with the id (tp{t_id} ep{e_id})"
            )
    _check_node_artefact(row, spec, gpu, tp, dp, ep)


def _inferencex_square_encoding(row: dict, spec, gpu, tp: int, dp: int) -> int | None:
    """Rule 4b(ii'): the columns tp T*T x attention_dp 1 (or tp 1 x attention_dp T*T), moe_tp T x
    moe_ep T of an InferenceX MoE row, its single-node `{tp: T, ep: T}` configuration (with
    `dp-attn: true` in the attention-DP form) written with tp = moe_tp x moe_ep: T, else None.
    Taken only where something outside the layout columns says T GPUs: the id's `_tpT_epT_`, or
    (ids without a layout, the database dump) a world size T*T beyond one NVLink domain, which a
    single-node run cannot have."""
    if not spec.is_moe or not row_data_source(row).startswith("InferenceX") or min(tp, dp) != 1:
        return None
    mtp, mep = _moe_size(row, "moe_tp_size"), _moe_size(row, "moe_ep_size")
    if not (mtp and mep and mtp == mep > 1 and tp * dp == mep * mep):
        return None
    named = _id_layout(row)
    if named:
        return mep if named == (mep, mep) else None
    return mep if mep * mep > gpu.nvlink_domain_size else None


def _inferencex_dp_attn_encoding(row: dict, spec, tp: int, dp: int, ep: int) -> bool:
    """Rule 4b(iii): the columns tp T x attention_dp T, moe_tp 1, moe_ep T x T of an InferenceX MoE
    row, its `{tp: T, ep: T, dp-attn: true}` configuration, which ran as tp T ep T on T GPUs."""
    return (spec.is_moe and tp > 1 and dp == tp and ep == tp * dp and _moe_size(row, "moe_tp_size") in (None, 1)
            and row_data_source(row).startswith("InferenceX"))


# Rule 4b(iv): the serving image of InferenceMAX's December 2025 GB200 SGLang disaggregated runs, whose
# layout fields were labels for the launch scripts' hard-coded layouts.
INFERENCEMAX_LABELLED_LAYOUT_IMAGE = re.compile(r"lmsysorg/sglang:v0\.5\.5\.post2(?![\w.-])")


def _inferencemax_gb200_sglang_layout(row: dict, spec, system: str, backend: str, pools: dict) -> dict | None:
    """Rule 4b(iv): the layouts InferenceMAX's December 2025 GB200 SGLang disaggregated launch scripts ran,
    for a row whose columns write each worker as tp 1 x attention_dp N (`pools`: name -> (tp, pp, dp, ep,
    workers)); None where the rule does not apply. Low-latency modes (4-GPU decode workers): tp N;
    max-throughput modes: attention DP N with expert parallelism N."""
    if not (spec.is_moe and backend == "sglang" and system == "gb200" and row_data_source(row).startswith("InferenceX")
            and INFERENCEMAX_LABELLED_LAYOUT_IMAGE.search(str(row.get("silicon_data_source") or ""))):
        return None
    dtp, _, ddp, _, _ = pools["decode"]
    low_latency = dtp * ddp == 4
    out = {}
    for name, (t, p, d, e, w) in pools.items():
        if t == 1 and d > 1 and e == 1:
            out[name] = (d, p, 1, 1, w) if low_latency else (1, p, d, d, w)
        else:
            out[name] = (t, p, d, e, w)
    return out if out != pools else None


# Rule 4b(v): the InferenceMAX GPU whose DeepSeek entries were all multi-node Dynamo disaggregated runs
_INFERENCEMAX_DISAGG_ONLY = {("gb200", "deepseek-r1"), ("gb200", "deepseek-v3")}


def _check_inferencemax_gb200_disagg_as_agg(row: dict, system: str, model: str, gpu, world: int) -> None:
    """Rule 4b(v): an InferenceX row written as aggregated for a GPU and model whose InferenceMAX
    entries were all multi-node Dynamo disaggregated deployments (GB200 DeepSeek-R1): its tp is the
    deployment's GPU count, and its prefill / decode split is not recorded. Only rows whose world
    size (tp x attention_dp) spans more than one node (`GPUSpec.gpus_per_node`: a 4-GPU GB200 tray):
    a single-tray aggregated entry, which no master config read has, would be a plausible engine."""
    if (system, model) in _INFERENCEMAX_DISAGG_ONLY and row_data_source(row).startswith("InferenceX") \
            and world > gpu.gpus_per_node:
        raise LlmsimError(
            f"an InferenceMAX {system} {model} Dynamo disaggregated run written as aggregated (tp {_cell_text(row, 'tp_size')} "
            "= the deployment's GPU count; its prefill / decode workers are not recorded)"
        )


def row_data_source(row: dict) -> str:
    """Which harness measured `row`, from its `silicon_data_source`: 'InferenceX <file>' for
    InferenceMAX / InferenceX's files ('source_file=2026-04-06.csv'), 'InferenceX db-dump' for a
    dump of its GitHub-workflow results database, 'InferenceX via AIConfigurator gap analysis' for
    AIConfigurator's comparisons against InferenceX measurements ('kimi-k2.5-gap-analysis.csv'),
    'AIConfigurator gap analysis' for AIConfigurator's own collector (Dynamo deployments it
    generated: '.../aic-auto-gap-analysis/data/...'), else 'other' (a user's own CSV)."""
    src = str(row.get("silicon_data_source") or "").strip()
    if src.startswith("db-dump"):
        return "InferenceX db-dump"
    m = re.search(r"source_file=([^;]*)", src)
    if m is None:
        return "other"
    f = m.group(1).strip()
    if re.fullmatch(r"20\d\d-\d\d-\d\d\.csv", f):
        return "InferenceX " + f
    if re.fullmatch(r"[\w.-]+-gap-analysis\.csv", f):
        # AIConfigurator's gap analyses of InferenceX measurements ('kimi-k2.5-gap-analysis.csv',
        # aic_database_mode=SILICON): all 93 such rows repeat an InferenceX row's measurement
        # (same model and ISL/OSL, TTFT within 0.01 ms), so they ran InferenceX's recipe
        return "InferenceX via AIConfigurator gap analysis"
    return "AIConfigurator gap analysis" if "gap" in f else "other"


def row_range_ratio(row: dict) -> float:
    """The length spread of the benchmark that measured `row` (rule 6): InferenceMAX /
    InferenceX rows (`row_data_source`) ran its recipe, `--random-range-ratio 0.8`; any other
    row (AIConfigurator's gap-analysis collector, a user's own CSV) fixed lengths."""
    return INFERENCEX_RANGE_RATIO if row_data_source(row).startswith("InferenceX") else RANGE_RATIO


# (timeout_iters, batching_wait_iters) of the attention-DP balance InferenceX's TRT-LLM scripts switch
# on with DP attention: DeepSeek (`dsr1_fp4_b200_trt.sh`, `dsr1_fp8_b200_trt*.sh`) `attention_dp_config:
# {batching_wait_iters: 0, enable_balance: true, timeout_iters: 60}`; gpt-oss (`gptoss_fp4_b200_trt.sh`)
# `{enable_balance: true}`, i.e. TRT-LLM's `AttentionDpConfig` defaults 50 / 10
_TRTLLM_ADP_BALANCE = {"deepseek-r1": (60, 0), "deepseek-v3": (60, 0), "gpt-oss-120b": (50, 10)}


# Serving images that ran only speculative-decoding benchmarks (rule 4c): image -> the benchmark
# configurations that used it. Facts from SemiAnalysisAI/InferenceX .github/configs/nvidia-master.yaml
# (Apache-2.0): the -mtp entries' `image:` and their rows' `spec-decoding: mtp`; the plain entries
# ran ...1.2.0rc6.post2.
SPEC_DECODING_IMAGES = {
    "nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3":
        "InferenceX dsr1-fp4-b200-trt-mtp / dsr1-fp8-b200-trt-mtp, spec-decoding: mtp",
}


# InferenceX's SGLang DeepSeek-R1 fp8 B200 benchmarks (rule 4c): the plain entry `dsr1-fp8-b200-sglang`
# ran TP8 at CONC 4-64 for 1k/1k and 1k/8k and at CONC 4 only for 8k/1k (TP4 above that); the MTP
# entry `dsr1-fp8-b200-sglang-mtp` (`spec-decoding: mtp`) TP8 at CONC 4-512 for all three, on the same
# image from late March 2026 (SemiAnalysisAI/InferenceX .github/configs/nvidia-master.yaml). A TP8 row
# above the plain entry's concurrency can only be the MTP entry's; inside it, the plain entry's
# measurement of a cell is the database dump's config-87 row (`SGLANG_DSR1_FP8_B200_STP_CONFIG`), and a
# row of the cell measuring something else is the MTP entry's (`plan_rows`). (isl, osl) -> the plain
# entry's highest TP8 concurrency.
SGLANG_DSR1_FP8_B200_STP_MAX_CONC = {(1024, 1024): 64, (1024, 8192): 64, (8192, 1024): 4}
SGLANG_DSR1_FP8_B200_STP_CONFIG = "config_id=87"


# Images that, among one model's InferenceX entries, only its speculative-decoding entry used (rule 4c):
# (model path without a quantisation suffix, lower case; image) -> that configuration. Qwen3.5's fp8
# B200 SGLang entries from March to late April 2026: plain `qwen3.5-fp8-b200-sglang` on
# v0.5.9-cu130-amd64 (TP8 CONC 4-16, TP4 EP4 CONC 16-128), `qwen3.5-fp8-b200-sglang-mtp` on
# v0.5.9-cu130 (TP4 EP1 CONC 4-256, `spec-decoding: mtp`) (.github/configs/nvidia-master.yaml).
# DeepSeek's plain SGLang entries ran v0.5.9-cu130 too, hence the key on the model.
SPEC_DECODING_MODEL_IMAGES = {
    ("qwen/qwen3.5-397b-a17b", "lmsysorg/sglang:v0.5.9-cu130"):
        "InferenceX qwen3.5-fp8-b200-sglang-mtp, spec-decoding: mtp; the plain entry ran v0.5.9-cu130-amd64",
}


# Runs (image, measurement date) that the rows themselves show to be speculative-decoding runs (rule
# 4c): InferenceX's TRT-LLM DeepSeek-R1 B200 rows measured on 2026-01-14 on 1.1.0rc2.post2 (32 rows,
# no master-config version of that date is stored) measure, in each of the 13 cells they share with the
# same image's run of 2025-12-15 (fp8, TP8 EP8, 1k/1k, 1k/8k and 8k/1k, CONC 4-64), 0.47-0.75x its TPOT
# and 1.18-1.75x its TTFT: fewer decode steps per token at a costlier first token, the signature of
# multi-token prediction, where two plain runs of one image differ by a few percent.
SPEC_DECODING_RUNS = {
    ("nvcr.io/nvidia/tensorrt-llm/release:1.1.0rc2.post2", "2026-01-14"):
        "InferenceX TRT-LLM run of 2026-01-14 on 1.1.0rc2.post2: its cells measure 0.47-0.75x the TPOT and 1.18-1.75x "
        "the TTFT of the same image's 2025-12-15 run, the speculative-decoding signature",
}


# Drafts per step of the speculative-decoding benchmarks `validate` simulates (rule 4c), from their
# InferenceX launch scripts (SemiAnalysisAI/InferenceX, Apache-2.0): TRT-LLM DeepSeek-R1 MTP
# (benchmarks/dsr1_fp{4,8}_b200_trt_mtp.sh: num_nextn_predict_layers MTP=3, MTP=1 with attention DP),
# keyed by the image that ran only them -> (without attention DP, with attention DP); SGLang
# DeepSeek-R1 fp8 MTP (benchmarks/dsr1_fp8_b200_mtp.sh: EAGLE with --speculative-num-steps 2,
# --speculative-eagle-topk 1, --speculative-num-draft-tokens 3).
SPEC_DECODING_IMAGE_DRAFTS = {"nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3": (3, 1)}
SGLANG_DSR1_FP8_B200_MTP_DRAFTS = 2

# Per-position acceptance rates of the MTP modules `validate` simulates, from published sources
# (`specdecode.DEEPSEEK_MTP_ACCEPTANCE`), by catalog model. No acceptance is recorded in the rows, and
# none is fitted to them: a speculative row of another model stays skipped.
MTP_ACCEPTANCE_PRIORS = {"deepseek-r1": DEEPSEEK_MTP_ACCEPTANCE, "deepseek-v3": DEEPSEEK_MTP_ACCEPTANCE}


def _row_image(row: dict) -> str | None:
    """The serving image `silicon_data_source` names (`image=...`, '#' written for '/'), or None."""
    m = re.search(r"image=([^;\s]+)", str(row.get("silicon_data_source") or ""))
    return m.group(1).replace("#", "/") if m else None


def _measured_date(row: dict) -> str | None:
    """The date `silicon_data_source` says the row was measured (`measured=2025-11-02...` -> '2025-11-02'), or None."""
    m = re.search(r"measured=(\d{4}-\d\d-\d\d)", str(row.get("silicon_data_source") or ""))
    return m.group(1) if m else None


def _image_drafts(row: dict) -> tuple[int, int] | None:
    """Rule 4c: (drafts without, with attention DP) of the speculative benchmark whose image measured `row`, if known."""
    return SPEC_DECODING_IMAGE_DRAFTS.get(_row_image(row) or "")


def _spec_decoding(conf: str, drafts: int | None, model: str) -> SpecDecoding:
    """Rule 4c: the speculative decoding a row measured with `conf` runs with (`drafts` MTP drafts
    per step, the model's published acceptance prior), or LlmsimError saying why it cannot be simulated."""
    rates = MTP_ACCEPTANCE_PRIORS.get(model)
    if rates is None:
        raise LlmsimError(f"measured with speculative decoding ({conf}); no published acceptance rate for {model}'s MTP module "
                          "is known to llmsim, and the rows record none")
    if drafts is None:
        raise LlmsimError(f"measured with speculative decoding ({conf}); its draft count is not recorded, so llmsim cannot simulate it")
    return SpecDecoding("mtp", drafts, round(chain_acceptance(rates, drafts), 3))


def _spec_note(sd: SpecDecoding, conf: str) -> str:
    return (f"speculative decoding ({conf}): {sd.num_draft_tokens} MTP draft(s) per step, {sd.accepted_per_step} accepted on average "
            "(the model's published MTP acceptance, `MTP_ACCEPTANCE_PRIORS`; not fitted)")


def row_speculative_decoding(row: dict) -> str | None:
    """The benchmark configuration with speculative decoding whose serving image measured `row`
    (rule 4c, `SPEC_DECODING_IMAGES`, `SPEC_DECODING_MODEL_IMAGES`, `SPEC_DECODING_RUNS`), or None. (The SGLang DeepSeek
    cells: `_sglang_dsr1_plain_top`.)"""
    if not row_data_source(row).startswith("InferenceX"):
        return None
    image = _row_image(row)
    if not image:
        return None
    model = _QUANT_SUFFIX.sub("", str(row.get("model_path") or "").strip()).lower()
    d = _measured_date(row)
    return (SPEC_DECODING_IMAGES.get(image) or SPEC_DECODING_MODEL_IMAGES.get((model, image))
            or (SPEC_DECODING_RUNS.get((image, d)) if d else None))


def _sglang_dsr1_plain_top(system: str, model: str, weight_dtype: str, tp: int, dp: int, ep: int, isl: int, osl: int) -> int | None:
    """Rule 4c for an InferenceX SGLang agg row (layout parsed): the plain entry's highest TP8
    concurrency for this ISL/OSL (`SGLANG_DSR1_FP8_B200_STP_MAX_CONC`) if the row is a DeepSeek fp8
    B200 TP8 row, which both the plain and the MTP entry measured; else None."""
    if system != "b200_sxm" or model not in ("deepseek-r1", "deepseek-v3") or weight_dtype != "fp8" or (tp, dp, ep) != (8, 1, 1):
        return None
    return SGLANG_DSR1_FP8_B200_STP_MAX_CONC.get((isl, osl))


def inferencex_engine_settings(row: dict, model: str, backend: str, mode: str, isl: int, osl: int, tp: int,
                               conc: int = 1, weight_dtype: str = "", dp: int = 1) -> dict:
    """`Deployment` settings from the launch script of the InferenceMAX / InferenceX benchmark
    that measured `row` (rule 8c); {} for other rows and where the scripts set nothing that
    llmsim models differently from the backend's defaults."""
    if mode != "agg" or not row_data_source(row).startswith("InferenceX"):
        return {}
    if backend == "sglang":
        system = str(row.get("system") or "")
        if system not in _SGLANG_RECIPE_SYSTEMS:
            return {}
        if model == "qwen3.5-397b-a17b":
            return _inferencex_sglang_qwen3_5(system, conc, weight_dtype)
        if model == "glm-5":
            return _inferencex_sglang_glm5(weight_dtype)
        return _inferencex_sglang_deepseek(model, tp, conc, weight_dtype)
    if backend == "vllm" and model in _VLLM_2025_ASYNC_MODELS and (_measured_date(row) or "").startswith("2025-"):
        # InferenceMAX's 2025 vLLM scripts for these models run `async-scheduling: true`: a new request
        # waits one more iteration (`Backend.overlap_scheduling`). Llama-70B: `70b_fp8_b200_docker.sh`,
        # `70b_fp4_b200_docker.sh`, `70b_fp8_h100_slurm.sh` (every stored version, SemiAnalysisAI/InferenceX
        # @bb4c7f9 and the jyothisambolu/InferenceMAX fork); gpt-oss-120b: every stored copy (45, in 16
        # repositories) of the flat `benchmarks/gptoss_fp4_{b200,h100}{,_docker,_slurm}.sh`, the 2025 layout
        # (its `single_node/` successor dropped it with the v0.15.1 image, PR #789). Their B200
        # `enable_fi_allreduce_fusion` is not applied: vLLM's fused all-reduce stays off in llmsim (see
        # `Backend.allreduce_norm_fusion`)
        return {"overlap_scheduling": True}
    if backend != "trtllm":
        return {}
    balance = _TRTLLM_ADP_BALANCE.get(model) if dp > 1 else None
    adp = {"adp_balance_timeout_iters": balance[0], "adp_balance_batching_iters": balance[1]} if balance else {}
    if model == "llama-3.1-70b":
        kw: dict = {"max_num_batched_tokens": 16384}
        # "For 1k/1k, use batch_wait_max_tokens_ratio and batch_wait_timeout_iters ..."
        if isl == 1024 and osl == 1024 and tp < 8:
            kw.update(batch_wait_iters=20, batch_wait_tokens_ratio=0.9)
        return kw
    if model == "gpt-oss-120b":
        # TRT-LLM's max_num_tokens is each attention-DP rank's; llmsim pools the ranks in one engine
        return {"max_num_batched_tokens": _pooled_budget(20000, dp), **adp}
    if model in ("deepseek-r1", "deepseek-v3"):
        return {**_inferencex_trtllm_deepseek(row, isl, osl, tp, conc, weight_dtype, dp), **adp}
    return adp


# vLLM models whose InferenceMAX launch scripts of 2025 ran async scheduling (`inferencex_engine_settings`)
_VLLM_2025_ASYNC_MODELS = ("llama-3.1-70b", "gpt-oss-120b")


# The image of InferenceX's plain (not speculative) TRT-LLM DeepSeek-R1 B200 entries from PRs #594
# (fp8) and #620 (fp4), which brought in the recipe `_inferencex_trtllm_deepseek` reads and the image
# together; the entries kept both through at least April 2026 (`.github/configs/nvidia-master.yaml`,
# `perf-changelog.yaml`: no performance change for them between #620 and about #1069)
_TRTLLM_DSR1_RECIPE_IMAGE = "1.2.0rc6.post2"


def _inferencex_trtllm_deepseek(row: dict, isl: int, osl: int, tp: int, conc: int, weight_dtype: str, dp: int) -> dict:
    """TRT-LLM DeepSeek-R1 / V3 on B200 measured on the 1.2.0rc6.post2 image (`backend_version`, or the
    image named in `silicon_data_source`): `dsr1_fp8_b200_trt.sh` after PR #594 and `dsr1_fp4_b200_trt.sh`
    after #620 (later `benchmarks/single_node/`, same settings). Both run
    `--max_num_tokens $(( ($CONC+$ISL+64+63)/64*64 ))` floored at 8192 (one whole prompt beside every
    decode; per attention-DP rank, so x dp in llmsim's pooled engine) and `free_gpu_memory_fraction` 0.8;
    fp8 also `batch_wait_timeout_iters: 40`, `batch_wait_max_tokens_ratio: 0.8` for 1k/1k at CONC >= 64,
    and 0.7 for 1k/8k at CONC >= 256, 0.75 for 8k/1k at TP 4. Earlier rows (images 1.1.0rc2.post2 or
    none recorded) ran script versions whose budget the stored history does not date: the budget
    formula without the floor, or a fixed 2200 tokens; they keep TRT-LLM's defaults."""
    if row.get("system") != "b200_sxm":
        return {}
    drafts = _image_drafts(row)  # rule 4c: the MTP entries' image, which names their drafts per step
    if drafts is not None:
        return _inferencex_trtllm_deepseek_mtp(drafts[1 if dp > 1 else 0], isl, conc, weight_dtype, dp)
    image = _row_image(row) or str(row.get("silicon_data_source") or "")  # (the database dump names it bare)
    if str(row.get("backend_version") or "").strip() != _TRTLLM_DSR1_RECIPE_IMAGE and \
            not image.endswith("tensorrt-llm/release:" + _TRTLLM_DSR1_RECIPE_IMAGE):
        return {}
    budget = max(8192, _trtllm_script_budget(conc + isl))
    kw: dict = {"max_num_batched_tokens": _pooled_budget(budget, dp), "memory_fraction": 0.8}
    if weight_dtype == "fp8":
        if (isl, osl) == (1024, 1024) and conc >= 64:
            kw.update(batch_wait_iters=40, batch_wait_tokens_ratio=0.8)
        elif (isl, osl) == (1024, 8192) and conc >= 256:
            kw["memory_fraction"] = 0.7
        elif (isl, osl) == (8192, 1024) and tp == 4:
            kw["memory_fraction"] = 0.75
    return kw


def _trtllm_script_budget(tokens: int) -> int:
    """InferenceX's TRT-LLM `--max_num_tokens $(( (TOKENS+64+63)/64*64 ))`: 64 more, rounded up to 64."""
    return (tokens + 64 + 63) // 64 * 64


def _pooled_budget(per_rank_tokens: int, dp: int) -> int:
    """A TRT-LLM / vLLM token budget, set per attention-DP rank, as llmsim's one engine of the dp ranks takes it."""
    return per_rank_tokens * max(dp, 1)


def _inferencex_trtllm_deepseek_mtp(mtp: int, isl: int, conc: int, weight_dtype: str, dp: int) -> dict:
    """TRT-LLM DeepSeek-R1 MTP on B200 with `mtp` drafts per step (rule 4c: the 1.2.0rc6.post3 image of
    `dsr1_fp8_b200_trt_mtp.sh` since PR #632 and `dsr1_fp4_b200_trt_mtp.sh` since #642; later
    `benchmarks/single_node/`, same settings):
    `--max_num_tokens $(( ((MTP+1)*MAX_BATCH_SIZE+ISL+64+63)/64*64 ))` with no floor -- one whole
    prompt beside every decoding sequence's 1 + MTP verified tokens -- per attention-DP rank, MTP
    3, or 1 with DP attention, MAX_BATCH_SIZE CONC, or with DP attention CONC / 8 (fp8) / CONC / 4
    (fp4) from that CONC up; `free_gpu_memory_fraction` 0.8 (fp8 with DP attention 0.7). llmsim's
    engine counts one token of the budget per decoding sequence, so the MTP x MAX_BATCH_SIZE
    draft tokens come off the script's budget."""
    div = 8 if weight_dtype == "fp8" else 4
    per_rank = (conc if conc < div else conc // div) if dp > 1 else conc
    script = _trtllm_script_budget((mtp + 1) * per_rank + isl)
    return {"max_num_batched_tokens": _pooled_budget(script - mtp * per_rank, dp),
            "memory_fraction": 0.7 if weight_dtype == "fp8" and dp > 1 else 0.8}


# AIConfigurator's benchmark-mode recipe (rule 8d): `agg max_num_tokens = max_batch_size + SlaConfig.isl
# + 1500` (generator/rule_plugin/benchmark/vllm.rule and trtllm.rule), max_num_tokens mapped to vLLM's
# --max-num-batched-tokens and TRT-LLM's build_config.max_num_tokens (generator/config/
# backend_config_mapping.yaml); ai-dynamo/aiconfigurator, Apache-2.0
AIC_RECIPE_EXTRA_TOKENS = 1500
AIC_RECIPE_BACKENDS = ("vllm", "trtllm")


def aiconfigurator_engine_settings(row: dict, backend: str, mode: str, isl: int, conc: int, dp: int = 1) -> dict:
    """`Deployment` settings of the AIConfigurator generator's benchmark-mode recipe for a row of
    AIConfigurator's own gap-analysis collector (rule 8d); {} for other rows. The recipe sizes an
    aggregated worker's token budget to one prompt plus the running decodes: max_num_tokens =
    max_batch_size + ISL + 1500 per attention-DP rank, max_batch_size being the row's batch_size
    (concurrency / dp). Applied for the backends in `AIC_RECIPE_BACKENDS` (see the module docstring
    for why TRT-LLM and SGLang are not)."""
    if mode != "agg" or backend not in AIC_RECIPE_BACKENDS or row_data_source(row) != "AIConfigurator gap analysis":
        return {}
    per_rank = -(-conc // max(dp, 1)) + isl + AIC_RECIPE_EXTRA_TOKENS
    return {"max_num_batched_tokens": _pooled_budget(per_rank, dp)}


# The GPUs whose InferenceX SGLang launch scripts rule 8c reads: the B200 scripts, reused for (or
# copied into) the B300 ones. Other GPUs' scripts (H200, GB200 ...) set other values.
_SGLANG_RECIPE_SYSTEMS = ("b200_sxm", "b300_sxm")


def _inferencex_sglang_deepseek(model: str, tp: int, conc: int, weight_dtype: str) -> dict:
    """SGLang DeepSeek-R1 / V3 on B200 / B300 (`dsr1_fp4_b200.sh`, `dsr1_fp8_b200.sh`; the B300
    script reuses the B200 recipe): `--scheduler-recv-interval` 10, or 30 from CONC 16 (fp8
    TP4: always 10), and fp8's `--chunked-prefill-size` / `--max-prefill-tokens` 32768 (TP8) /
    8192 (TP4); fp4 runs SGLang's default chunk for these GPUs (16384).

    Their `--max-running-requests` (fp8: 128 at TP8, 32 at TP4) is not applied: the rows
    themselves show no such cap was in force in every run -- fp8 TP8 at c = 256 measured a mean
    TTFT of 1.9 s, where a 128-request cap would queue each request behind a whole ~40 s one."""
    if model not in ("deepseek-r1", "deepseek-v3"):
        return {}
    recv = 30 if conc >= 16 else 10
    if weight_dtype == "fp4":
        return {"recv_interval_iters": recv}
    if weight_dtype == "fp8" and tp == 8:
        return {"recv_interval_iters": recv, "max_num_batched_tokens": 32768}
    if weight_dtype == "fp8" and tp == 4:
        return {"recv_interval_iters": 10, "max_num_batched_tokens": 8192}
    return {}


def _inferencex_sglang_qwen3_5(system: str, conc: int, weight_dtype: str) -> dict:
    """SGLang Qwen3.5-397B-A17B (`single_node/qwen3.5_{bf16,fp8,fp4}_{b200,b300}.sh`):
    `--scheduler-recv-interval` 10, or 30 from CONC 16, with `--chunked-prefill-size` /
    `--max-prefill-tokens` 32768 -- every stored version of the B200 bf16 and fp8 scripts, the fp4
    one that ran the rows' image (nightly-dev-20260402), and the B300 bf16 and fp4 scripts; the B300
    fp8 script (every stored version) polls every 10 iterations at any CONC and keeps 16384-token
    chunks (SGLang's own default on these GPUs). Their `--max-running-requests` (128 or CONC) never
    binds below CONC 256 and is not applied, as for DeepSeek."""
    if system == "b300_sxm" and weight_dtype == "fp8":
        return {"recv_interval_iters": 10}
    if weight_dtype not in ("bf16", "fp8", "fp4"):
        return {}
    return {"recv_interval_iters": 30 if conc >= 16 else 10, "max_num_batched_tokens": 32768}


def _inferencex_sglang_glm5(weight_dtype: str) -> dict:
    """SGLang GLM-5 (`single_node/glm5_fp8_b200.sh`, `glm5_fp4_b200.sh`; the B300 fp8 script reuses
    the B200 recipe): `--chunked-prefill-size` / `--max-prefill-tokens` 32768, and for fp4
    `--scheduler-recv-interval 10` at any CONC -- every stored version of each script; fp8 sets no
    polling interval (SGLang's default, every iteration)."""
    if weight_dtype == "fp4":
        return {"recv_interval_iters": 10, "max_num_batched_tokens": 32768}
    if weight_dtype == "fp8":
        return {"max_num_batched_tokens": 32768}
    return {}


# Rule 8c for disaggregated rows: the srt-slurm recipes InferenceX's SGLang DeepSeek-R1 disaggregated
# entries ran on the v0.5.8 / v0.5.8.post1 images (`.github/configs/nvidia-master.yaml`, entries
# dsr1-{fp4,fp8}-{gb200,gb300,b200}-dynamo-sglang: CONFIG_FILE=recipes/... of ishandhanani/srt-slurm,
# branch sa-submission-q1-2026; Apache-2.0). A recipe is tied to a row by its GPU, precision, ISL/OSL and
# both pools' layouts and worker counts (the rows' concurrencies are the recipe's). Only settings llmsim
# models differently from SGLang's defaults are taken: the prefill worker's `chunked-prefill-size`,
# which SGLang divides by the DP size under DP attention (server_args `_handle_data_parallelism`, v0.5.5
# to v0.5.8), so every DP-attention prefill recipe here runs 16384 tokens per rank where the default
# (16384 per worker) gives 2048 (DP 8) or 4096 (DP 4); and `enable-flashinfer-allreduce-fusion: false`
# where a recipe sets it. Not applied: `max-total-tokens` (the prefill worker's KV pool; llmsim sizes
# it from memory), `max-running-requests` (not binding at the rows' concurrencies), the decode workers'
# CUDA-graph sizes. Keys: (system, weight dtype, ISL, OSL, prefill (tp, dp, ep, workers), decode (tp, dp,
# ep, workers)) in llmsim's layout (SGLang's tp-size N with dp-size N and DP attention is tp 1 x dp N).
# Value: (recipe path under recipes/, prefill chunked-prefill-size, all-reduce fusion or None = default).
# Left out: B200 fp8 DEP8 (ep 8) prefill workers, whose stored recipe versions disagree (131072 vs
# 32768-token chunks), and the December 2025 v0.5.5.post2 GB200 runs (rule 4b(iv)), whose launch
# scripts' versions the stored history does not date.
SGLANG_DISAGG_RECIPES: dict[tuple, tuple[str, int, bool | None]] = {
    # GB300 fp8 (v0.5.8.post1-cu130)
    ("gb300", "fp8", 1024, 1024, (1, 8, 8, 1), (1, 8, 8, 1)): ("gb300-fp8/1k1k/stp/max.yaml", 131072, None),
    ("gb300", "fp8", 1024, 1024, (1, 8, 8, 2), (1, 32, 32, 1)): ("gb300-fp8/1k1k/stp/mid.yaml", 131072, None),
    ("gb300", "fp8", 8192, 1024, (1, 8, 8, 5), (1, 32, 32, 1)): ("gb300-fp8/8k1k/stp/mid.yaml", 131072, None),
    ("gb300", "fp8", 1024, 1024, (4, 1, 1, 1), (4, 1, 1, 4)): ("gb300-fp8/1k1k/stp/low-latency.yaml", 8192, False),
    ("gb300", "fp8", 8192, 1024, (4, 1, 1, 1), (4, 1, 1, 1)): ("gb300-fp8/8k1k/stp/low-latency.yaml", 32768, False),
    # GB300 fp4 (v0.5.8.post1-cu130-runtime)
    ("gb300", "fp4", 1024, 1024, (1, 4, 4, 4), (1, 32, 32, 1)): ("gb300-fp4/1k1k/mid_curve.yaml", 65536, None),
    ("gb300", "fp4", 8192, 1024, (4, 1, 1, 10), (1, 32, 32, 1)): ("gb300-fp4/8k1k/max_tpt.yaml", 131072, None),
    ("gb300", "fp4", 1024, 1024, (4, 1, 1, 1), (4, 1, 1, 2)): ("gb300-fp4/1k1k/low_latency.yaml", 8192, None),
    ("gb300", "fp4", 8192, 1024, (4, 1, 1, 1), (4, 1, 1, 4)): ("gb300-fp4/8k1k/low_latency.yaml", 24576, None),
    # GB200 fp8 (v0.5.8.post1-cu130)
    ("gb200", "fp8", 1024, 1024, (1, 8, 8, 1), (1, 8, 8, 1)): ("gb200-fp8/1k1k/ultra-tpt.yaml", 131072, None),
    ("gb200", "fp8", 1024, 1024, (1, 8, 8, 2), (1, 32, 32, 1)): ("gb200-fp8/1k1k/max-tpt.yaml", 131072, None),
    ("gb200", "fp8", 8192, 1024, (1, 8, 8, 5), (1, 32, 32, 1)): ("gb200-fp8/8k1k/mid-curve.yaml", 131072, None),
    ("gb200", "fp8", 1024, 1024, (4, 1, 1, 1), (4, 1, 1, 1)): ("gb200-fp8/1k1k/low-latency.yaml", 8192, None),
    ("gb200", "fp8", 8192, 1024, (8, 1, 1, 1), (8, 1, 1, 1)): ("gb200-fp8/8k1k/low-latency.yaml", 24576, None),
    # GB200 fp4 (v0.5.8-cu130)
    ("gb200", "fp4", 1024, 1024, (1, 4, 4, 4), (1, 32, 32, 1)): ("gb200-fp4/1k1k/mid-curve.yaml", 65536, None),
    ("gb200", "fp4", 8192, 1024, (4, 1, 1, 10), (1, 32, 32, 1)): ("gb200-fp4/8k1k/max-tpt.yaml", 131072, None),
    ("gb200", "fp4", 1024, 1024, (4, 1, 1, 1), (4, 1, 1, 2)): ("gb200-fp4/1k1k/low-latency.yaml", 8192, None),
    ("gb200", "fp4", 8192, 1024, (4, 1, 1, 1), (4, 1, 1, 4)): ("gb200-fp4/8k1k/low-latency.yaml", 24576, None),
    # B200 fp4 (v0.5.8.post1-cu130-runtime)
    ("b200_sxm", "fp4", 8192, 1024, (1, 4, 4, 7), (1, 8, 8, 2)): ("b200-fp4/8k1k/stp/max-tpt-dep4-7p-dep8-2d.yaml", 65536, None),
    ("b200_sxm", "fp4", 8192, 1024, (1, 4, 4, 1), (8, 1, 8, 1)): ("b200-fp4/8k1k/stp/low-latency-dep4-1p-tep8-1d.yaml", 32768, None),
    ("b200_sxm", "fp4", 8192, 1024, (4, 1, 1, 1), (8, 1, 1, 1)): ("b200-fp4/8k1k/stp/low-latency-tp4-1p-tp8-1d.yaml", 32768, None),
    ("b200_sxm", "fp4", 1024, 1024, (1, 4, 4, 1), (1, 8, 8, 1)): ("b200-fp4/1k1k-stp.yaml (max-throughput 1p1d)", 32768, None),
    ("b200_sxm", "fp4", 1024, 1024, (1, 4, 4, 1), (1, 8, 8, 2)): ("b200-fp4/1k1k-stp.yaml (max-throughput 1p2d)", 32768, None),
    # B200 fp8 (v0.5.8.post1-cu130-amd64): DEP8 prefill without EP (8k1k.yaml, also NVIDIA/srt-slurm's
    # copy), TP8 EP8 prefill (1k1k-stp.yaml, 8k1k-stp.yaml)
    ("b200_sxm", "fp8", 8192, 1024, (1, 8, 1, 1), (1, 8, 8, 1)): ("b200-fp8/8k1k.yaml (max-throughput 1p1d)", 65536, None),
    ("b200_sxm", "fp8", 8192, 1024, (1, 8, 1, 1), (1, 8, 8, 2)): ("b200-fp8/8k1k.yaml (max-throughput 1p2d)", 65536, None),
    ("b200_sxm", "fp8", 8192, 1024, (1, 8, 1, 2), (1, 8, 8, 1)): ("b200-fp8/8k1k.yaml (max-throughput 2p1d)", 65536, None),
    ("b200_sxm", "fp8", 8192, 1024, (1, 8, 1, 3), (1, 8, 8, 1)): ("b200-fp8/8k1k.yaml (max-throughput 3p1d)", 65536, None),
    ("b200_sxm", "fp8", 8192, 1024, (1, 8, 1, 1), (8, 1, 1, 4)): ("b200-fp8/8k1k.yaml (low-latency 1p4d)", 65536, None),
    ("b200_sxm", "fp8", 1024, 1024, (8, 1, 8, 1), (8, 1, 8, 1)): ("b200-fp8/1k1k-stp.yaml (low-latency 1p1d)", 32768, None),
    ("b200_sxm", "fp8", 8192, 1024, (8, 1, 8, 1), (8, 1, 8, 1)): ("b200-fp8/8k1k-stp.yaml (1p1d)", 32768, None),
    ("b200_sxm", "fp8", 8192, 1024, (8, 1, 8, 1), (8, 1, 8, 4)): ("b200-fp8/8k1k-stp.yaml (1p4d)", 32768, None),
}
# Rule 8c for disaggregated rows, TRT-LLM: the srt-slurm recipes InferenceX's Dynamo + TRT-LLM DeepSeek-R1
# entries ran on the tensorrtllm-runtime 0.8.1.post1 / .post2 / .post3 (H100) images (`.github/configs/nvidia-master.yaml`:
# CONFIG_FILE=recipes/trtllm/<gpu>-<precision>/<isl><osl>/stp/<name>.yaml, one file per concurrency or short
# list of them), transcribed in `data/trtllm_disagg_recipes.csv` (source and commit in its header). Taken where
# llmsim models them differently from TRT-LLM's defaults: the context (prefill) server's `max_num_tokens` and
# `max_batch_size` and the generation (decode) server's `max_batch_size`, all per attention-DP rank (llmsim's
# pooled engine takes them x DP), and chunked context as the recipe sets it (off unless it sets
# `enable_chunked_prefill: true`, as the H100 1k/1k ones do; TRT-LLM's default is off, llmsim's TRT-LLM default on). A generation server's batch below its share of the clients
# holds the rest at the decode worker: their first token waits for a slot. A recipe is tied to a row by GPU,
# precision, ISL/OSL, the row's concurrency (in the recipe's list) and both pools' layouts and worker counts;
# the B200 fp8 8k/1k context servers run EP 1, which the rows' columns may write as ep = dp (the master
# config's label). Not applied: the servers' `free_gpu_memory_fraction` (0.1-0.9: the KV pools; llmsim sizes
# them from the backend's fraction), values whose stored copies disagree (empty in the file), the 0.5.1
# image's GB200 rows and Kimi-K2.5 (no recipe stored).
TRTLLM_DISAGG_RECIPES_CSV = Path(__file__).with_name("data") / "trtllm_disagg_recipes.csv"
_RECIPE_GPUS = {"b200": "b200_sxm", "gb200": "gb200", "gb300": "gb300", "h100": "h100_sxm"}


@functools.cache
def trtllm_disagg_recipes() -> dict[tuple, dict]:
    """`data/trtllm_disagg_recipes.csv` by (system, weight dtype, ISL, OSL, concurrency, prefill (tp, dp, ep,
    workers), decode (tp, dp, ep, workers)) in llmsim's layout (attention DP: tp 1 x dp N) -> the file's row."""
    def layout(r: dict, side: str) -> tuple[int, int, int, int]:
        tp, ep, w = int(r[side + "_tp"]), int(r[side + "_ep"]), int(r[side + "_workers"])
        return (1, tp, ep, w) if r[side + "_attention_dp"] == "1" else (tp, 1, ep, w)

    table: dict[tuple, dict] = {}
    with open(TRTLLM_DISAGG_RECIPES_CSV, newline="") as f:
        for r in csv.DictReader(line for line in f if not line.startswith("#")):
            weight = r["recipe"].split("/")[0].split("-")[1]  # 'gb200-fp8/...' -> 'fp8'
            for c in r["concurrencies"].split("x"):
                table[(_RECIPE_GPUS[r["gpu"]], weight, int(r["isl"]), int(r["osl"]), int(c),
                       layout(r, "ctx"), layout(r, "gen"))] = r
    return table


TRTLLM_DISAGG_RECIPE_IMAGE = re.compile(r"ai-dynamo/tensorrtllm-runtime:0\.8\.1\.post[123](?![\w.])")
SGLANG_DISAGG_RECIPE_IMAGE = re.compile(r"lmsysorg/sglang:v0\.5\.8(?:\.post1)?-cu130(?![\w.])")


def inferencex_disagg_settings(row: dict, model: str, backend: str, system: str, weight_dtype: str, isl: int, osl: int,
                               pools: dict, conc: int | None = None) -> tuple[str, dict, dict]:
    """Rule 8c for a disaggregated InferenceX row: (recipe, the pools' own settings, Deployment
    settings) from `SGLANG_DISAGG_RECIPES` (SGLang) or `trtllm_disagg_recipes()` (TRT-LLM, matched on
    the row's concurrency `conc` too); ('', {}, {}) where no recipe is known for the row."""
    src = str(row.get("silicon_data_source") or "")
    if model not in ("deepseek-r1", "deepseek-v3") or not row_data_source(row).startswith("InferenceX"):
        return "", {}, {}
    (ptp, _pp, pdp, pep, pw), (dtp, _dp, ddp, dep_, dw) = pools["prefill"], pools["decode"]
    key = (system, weight_dtype, isl, osl, (ptp, pdp, pep, pw), (dtp, ddp, dep_, dw))
    if backend == "sglang" and SGLANG_DISAGG_RECIPE_IMAGE.search(src) and key in SGLANG_DISAGG_RECIPES:
        recipe, chunk, fusion = SGLANG_DISAGG_RECIPES[key]
        return recipe, {"prefill": {"max_num_batched_tokens": chunk}}, ({} if fusion is None else {"allreduce_norm_fusion": fusion})
    if backend == "trtllm" and TRTLLM_DISAGG_RECIPE_IMAGE.search(src) and conc is not None:
        table = trtllm_disagg_recipes()
        d = (dtp, ddp, dep_, dw)
        r = table.get((system, weight_dtype, isl, osl, conc, (ptp, pdp, pep, pw), d))
        if r is None and pdp > 1 and pep == pdp:  # an EP-1 context server the columns label ep = dp
            r = table.get((system, weight_dtype, isl, osl, conc, (ptp, pdp, 1, pw), d))
        if r is None:
            return "", {}, {}
        prefill: dict = {"max_num_seqs": int(r["ctx_max_batch_size"]) * pdp}
        if r["ctx_max_num_tokens"]:
            prefill["max_num_batched_tokens"] = _pooled_budget(int(r["ctx_max_num_tokens"]), pdp)
        own = {"prefill": prefill}
        if r["gen_max_batch_size"]:
            own["decode"] = {"max_num_seqs": int(r["gen_max_batch_size"]) * ddp}
        return "trtllm/" + r["recipe"], own, {"chunked_prefill": r["ctx_enable_chunked_prefill"] == "true"}
    return "", {}, {}


def plan_row(row: dict, *, assume_one_worker: bool = False, check_speculative: bool = True) -> _Plan:
    """Map one CSV row to a deployment and a workload (rules in the module docstring).
    `check_speculative=False` plans a row rule 4c's images would skip (to recognise its copies)."""
    from ..hardware.catalog import get_gpu
    from .backends import get_backend

    mode = (row.get("mode") or "").strip().lower()
    isl, osl = _display_int(row.get("isl")), _display_int(row.get("osl"))  # checked below (the reason names a bad value)
    base = {
        "id": row.get("id", ""),
        "system": row.get("system", ""),
        "backend": row.get("backend", ""),
        "backend_version": row.get("backend_version") or "",
        "mode": mode,
        "model_path": row.get("model_path", ""),
        "model": "",
        "precision": "",
        "isl": isl,
        "osl": osl,
        "concurrency": None,
        "layout": "",
        "num_gpus": None,
        "measured_ttft_ms": _display_num(row.get("silicon_ttft_ms")),
        "measured_tpot_ms": _display_num(row.get("silicon_tpot_ms")),
    }
    plan = _Plan(base, isl=isl, osl=osl, range_ratio=row_range_ratio(row))
    notes: list[str] = []
    try:
        if row.get(MALFORMED):
            raise LlmsimError(f"malformed CSV row: {row[MALFORMED]}")
        if mode not in ("agg", "disagg"):
            raise LlmsimError(f"unknown mode {mode!r}")
        isl, osl = _int(row.get("isl"), 0, "isl") or 0, _int(row.get("osl"), 0, "osl") or 0  # (empty -> 0, refused below)
        if isl < 1 or osl < 1:
            raise LlmsimError(f"isl/osl must be >= 1, got {_cell_text(row, 'isl')}/{_cell_text(row, 'osl')}")
        base["measured_ttft_ms"] = _measured_ms(row, "silicon_ttft_ms", osl)
        base["measured_tpot_ms"] = _measured_ms(row, "silicon_tpot_ms", osl)
        if base["measured_ttft_ms"] is None and base["measured_tpot_ms"] is None:
            raise LlmsimError("no measured TTFT or TPOT")
        spec_dec = row_speculative_decoding(row) if check_speculative else None  # rule 4c
        spec_drafts = _image_drafts(row) if spec_dec else None
        spec = resolve_model(base["model_path"])
        base["model"] = spec.name
        if spec_dec and mode != "agg":
            raise LlmsimError(f"measured with speculative decoding ({spec_dec}) in disaggregated serving, which validate does not simulate")
        if spec_dec and spec_drafts is None:
            _spec_decoding(spec_dec, None, spec.name)  # raises: no acceptance prior, or no draft count
        gpu = get_gpu(base["system"])
        be = get_backend(base["backend"])
        w, a, kv, label = _precision(row)
        if w == "fp4" and "fp4" not in gpu.peak_tflops:
            # no fp4 tensor cores (Hopper): MXFP4/NVFP4 checkpoints run weight-only (W4A16)
            a = "bf16"
            label = f"w{w}/a{a}/kv{kv}"
            notes.append("fp4 weights on a GPU without fp4 tensor cores: weight-only W4A16")
        block_copy = w == "fp8" and "fp8_block" in _quant_modes(row) and not spec.block_scaled(w)
        if block_copy:
            # the row names a block-scaled fp8 checkpoint (e.g. Qwen3-*-FP8) of a catalog model
            # whose config has no quantization_config: serve it as 128x128-block fp8
            spec = spec.model_copy(update={"native_weight_dtype": "fp8", "native_weight_block_size": (128, 128)})
        if spec.block_scaled(w):
            notes.append("block-scaled fp8 checkpoint (128x128 weight blocks): fp8_block GEMMs")
        base["precision"] = label
        conc = _concurrency_from_source(row)
        pool_settings: dict = {}  # rule 8c: pools' own token budgets / request caps (disaggregated recipes)
        if mode == "agg":
            tp, pp, dp, ep = _pool_args(row, "", spec, what="layout")
            _check_inferencemax_gb200_disagg_as_agg(row, base["system"], spec.name, gpu, tp * dp)  # rule 4b(v)
            dp_cols = dp  # the attention_dp the columns (and their batch_size, per rank) were written with
            if _inferencex_dp_attn_encoding(row, spec, tp, dp, ep):  # rule 4b(iii)
                notes.append(f"layout columns tp {tp} x attention_dp {dp}, moe_ep {ep}: InferenceX's {{tp: {tp}, ep: {tp}, "
                             f"dp-attn: true}}, run as tp{tp} ep{tp} on {tp} GPUs")
                dp, ep = 1, tp
            square = _inferencex_square_encoding(row, spec, gpu, tp, dp)
            if square:  # rule 4b(ii')
                written, attn_dp = f"tp {tp} x attention_dp {dp}", dp > 1
                tp, dp, ep = (1, square, square) if attn_dp else (square, 1, square)
                notes.append(f"layout columns {written}, moe_tp {square} x moe_ep {square}: InferenceX's "
                             f"{{tp: {square}, ep: {square}{', dp-attn: true' if attn_dp else ''}}} on {square} GPUs, "
                             f"run as {_layout(tp, pp, dp, ep)}")
                plan.remapped = True
            _check_layout_artefacts(row, spec, gpu, tp, dp, ep)
            base["layout"] = _layout(tp, pp, dp, ep)
            base["num_gpus"] = tp * pp * dp
            bs = _count(row, "batch_size", " (per attention-DP rank; leave it empty if not recorded)")
            if conc is None:
                if not bs:
                    raise LlmsimError("client concurrency not recorded (no silicon_concurrency, no _cN_ in id, no batch_size)")
                conc = bs * dp_cols
                notes.append(f"concurrency = batch_size {bs} x attention_dp {dp_cols} (not recorded)")
            elif bs and bs * dp_cols != conc:
                raise LlmsimError(
                    f"ambiguous layout: client concurrency {conc} != batch_size {bs} x attention_dp {dp_cols}"
                )
            sd = None
            if spec_dec and spec_drafts:  # rule 4c: the draft count the script sets for this layout
                sd = _spec_decoding(spec_dec, spec_drafts[1] if dp > 1 else spec_drafts[0], spec.name)
                notes.append(_spec_note(sd, spec_dec))
            if be.name == "sglang" and row_data_source(row).startswith("InferenceX"):  # rule 4c
                top = _sglang_dsr1_plain_top(base["system"], spec.name, w, tp, dp, ep, isl, osl)
                if top is not None:
                    if conc > top:
                        conf = (f"InferenceX dsr1-fp8-b200-sglang-mtp, spec-decoding: mtp: the plain entry ran TP8 at concurrency "
                                f"<= {top} for this ISL/OSL")
                        sd = _spec_decoding(conf, SGLANG_DSR1_FP8_B200_MTP_DRAFTS, spec.name)
                        notes.append(_spec_note(sd, conf))
                    else:
                        plan.plain_cell = (isl, osl, conc)  # both entries measured this cell: `plan_rows` tells them apart
            pools = {"pool": (tp, pp, dp, ep, 1)}
            engine = inferencex_engine_settings(row, spec.name, be.name, mode, isl, osl, tp, conc, w, dp)
            if engine:
                notes.append("InferenceX launch script: " + ", ".join(f"{k}={v}" for k, v in engine.items()))
            if sd is not None:
                engine = {**engine, "spec_decoding": sd}
            aic = aiconfigurator_engine_settings(row, be.name, mode, isl, conc, dp)  # rule 8d
            if aic:
                notes.append("AIConfigurator benchmark recipe: " + ", ".join(f"{k}={v}" for k, v in aic.items()))
                engine = {**engine, **aic}
        else:
            ptp, ppp, pdp, pep = _pool_args(row, "prefill_", spec, what="prefill layout")
            dtp, dpp, ddp, dep_ = _pool_args(row, "decode_", spec, what="decode layout")
            pw, dw = _count(row, "prefill_num_workers"), _count(row, "decode_num_workers")
            if not pw or not dw:
                if not assume_one_worker:
                    raise LlmsimError("disagg worker counts not recorded (prefill_num_workers / decode_num_workers empty)")
                pw, dw = 1, 1
                notes.append("worker counts not recorded: assumed 1 prefill + 1 decode worker")
            dbs = _count(row, "decode_batch_size", " (per attention-DP rank; leave it empty if not recorded)")
            if conc is None:  # decode_batch_size is per attention-DP rank of the columns' layout
                if not dbs:
                    raise LlmsimError("client concurrency not recorded (no silicon_concurrency, no _cN_ in id, no decode_batch_size)")
                conc = dbs * ddp * dw
                notes.append(f"concurrency = decode_batch_size {dbs} x decode_dp {ddp} x decode workers {dw} (not recorded)")
            pools = {"prefill": (ptp, ppp, pdp, pep, pw), "decode": (dtp, dpp, ddp, dep_, dw)}
            scripted = _inferencemax_gb200_sglang_layout(row, spec, base["system"], be.name, pools)  # rule 4b(iv)
            if scripted:
                notes.append(f"layout columns P {_layout(*pools['prefill'])} + D {_layout(*pools['decode'])} are InferenceMAX labels; "
                             f"run as its launch scripts hard-coded them ({'low latency: tensor parallel' if scripted['decode'][2] == 1 else 'max throughput: attention DP + DeepEP'})")
                pools = scripted
            base["layout"] = f"P {_layout(*pools['prefill'])} + D {_layout(*pools['decode'])}"
            base["num_gpus"] = sum(w_ * t_ * p_ * d_ for t_, p_, d_, _e, w_ in pools.values())
            recipe, pool_settings, engine = inferencex_disagg_settings(row, spec.name, be.name, base["system"], w, isl, osl, pools,
                                                                       conc)  # rule 8c
            if recipe:
                notes.append(f"InferenceX srt-slurm recipe {recipe}: "
                             + ", ".join([f"{pool} {k}={v}" for pool, kv in pool_settings.items() for k, v in kv.items()]
                                         + [f"{k}={v}" for k, v in engine.items()]))
            for pre, (t_, _p, d_, e_, _w) in pools.items():
                _check_node_artefact(row, spec, gpu, t_, d_, e_, pre + "_")
        if conc < 1:
            raise LlmsimError(f"client concurrency {conc} < 1")
        base["concurrency"] = conc
        plan.concurrency = conc
        seqs = max(be.default_max_num_seqs(gpu), conc)
        plan.dep_kwargs = {
            "model": spec if block_copy else spec.name,
            "gpu": gpu.name,
            "pools": pools,
            "backend": be.name,
            "weight_dtype": w,
            "act_dtype": a,
            "kv_dtype": kv,
            "max_num_seqs": seqs,
            # no token budget: each pool takes its engine's default for its GPU and attention-DP
            # size (`Backend.batched_tokens`), raised to max_num_seqs where decodes share it --
            # unless the benchmark's launch script sets one (rule 8c)
            "engine": engine,
        }
        if pool_settings:  # rule 8c: a disaggregated recipe's own settings for a pool
            plan.dep_kwargs["pool_settings"] = pool_settings
    except LlmsimError as e:
        plan.reason = e.message
    plan.note = "; ".join(notes)
    return plan


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def plan_rows(rows: list[dict], *, assume_one_worker: bool = False, count_repeats: bool = False) -> list[_Plan]:
    """`plan_row` for every row, then the rules that need the other rows. 4c inside the plain
    range: where the rows hold the InferenceX SGLang DeepSeek fp8 B200 plain entry's measurement
    of a cell (config 87), a row of that cell measuring something else is the MTP entry's, run with MTP;
    4c for copies: a row repeating the measurement of a row simulated with speculative decoding takes
    its drafts, one of a row skipped as speculative is skipped.
    10: a modelled row repeating an earlier modelled row's measurement is skipped, naming that row
    (`count_repeats=True` keeps every copy)."""
    plans = [plan_row(r, assume_one_worker=assume_one_worker) for r in rows]
    cells = [p.plain_cell if p.dep_kwargs is not None else None for p in plans]
    plain: dict[tuple, tuple] = {}
    for r, p, c in zip(rows, plans, cells):
        if c is not None and re.search(rf"{SGLANG_DSR1_FP8_B200_STP_CONFIG}\b", str(r.get("silicon_data_source") or "")):
            plain[c] = (p.base["measured_ttft_ms"], p.base["measured_tpot_ms"])
    for p, c in zip(plans, cells):
        if c is None or c not in plain:
            continue
        ttft, tpot = plain[c]
        if _same(p.base["measured_ttft_ms"], ttft) and _same(p.base["measured_tpot_ms"], tpot):
            continue
        conf = (f"InferenceX dsr1-fp8-b200-sglang-mtp, spec-decoding: mtp: the plain entry's measurement of this cell is the "
                f"database dump's {SGLANG_DSR1_FP8_B200_STP_CONFIG} row, TTFT {_fmt(ttft)} ms / TPOT {_fmt(tpot, 2)} ms, and this "
                "row measured another")
        sd = _spec_decoding(conf, SGLANG_DSR1_FP8_B200_MTP_DRAFTS, p.base["model"])  # (a cell's rows are DeepSeek's: a prior exists)
        assert p.dep_kwargs is not None  # (only a modelled row has a cell)
        p.dep_kwargs = {**p.dep_kwargs, "engine": {**p.dep_kwargs["engine"], "spec_decoding": sd}}
        p.note = "; ".join(x for x in (p.note, _spec_note(sd, conf)) if x)
    _copies_of_speculative(rows, plans, assume_one_worker)
    if not count_repeats:
        _skip_repeats(plans)
    return plans


def _copies_of_speculative(rows: list[dict], plans: list[_Plan], assume_one_worker: bool) -> None:
    """Rule 4c for copies: a row repeating the measurement of a row measured with speculative
    decoding (rule 10's test on the deployment without its engine settings, which the row's image
    decides: rule 8c) shares its fate, even where it does not name the image itself (the database
    dump's copies name none): the copy of a simulated row takes its speculative decoding and its
    launch script's settings, so that rule 10 then counts the two once; the copy of a skipped one is
    skipped."""
    # (benchmark without engine settings, measured pair, (SpecDecoding, engine settings) or "id: configuration")
    spec: list[tuple[tuple, tuple[float, float], Any]] = []
    for r, p in zip(rows, plans):
        if p.dep_kwargs is not None:
            sd = p.dep_kwargs["engine"].get("spec_decoding")
            fate: Any = (sd, p.dep_kwargs["engine"])
            k = _repeat_key(_without_engine(p)) if sd is not None else None
        else:
            conf = row_speculative_decoding(r)
            fate = f"{p.base['id']}: {conf}"
            k = _repeat_key(_without_engine(plan_row(r, assume_one_worker=assume_one_worker, check_speculative=False))) if conf else None
        if k is not None:
            spec.append((k[0], k[1], fate))
    if not spec:
        return
    for p in plans:
        k = _repeat_key(_without_engine(p))
        if k is None or p.dep_kwargs is None or "spec_decoding" in p.dep_kwargs["engine"]:
            continue
        hit = next((fate for b, v, fate in spec if b == k[0] and _same_measurement(k[1], v)), None)
        if isinstance(hit, tuple):
            sd, engine = hit
            p.dep_kwargs = {**p.dep_kwargs, "engine": dict(engine)}
            p.note = "; ".join(x for x in (p.note, "repeats the measurement of a row measured with speculative decoding: "
                                           f"{sd.num_draft_tokens} MTP draft(s) per step, {sd.accepted_per_step} accepted") if x)
        elif hit is not None:
            p.dep_kwargs = None
            p.reason = f"measured with speculative decoding: repeats the measurement of {hit}, which llmsim does not simulate"


def _without_engine(p: _Plan) -> _Plan:
    """`p` with none of its engine settings (speculative decoding, the launch script's: the benchmark
    as a copy that names no image would read)."""
    return replace(p, dep_kwargs={**p.dep_kwargs, "engine": {}}) if p.dep_kwargs is not None else p


REPEAT_REASON = "repeats the measurement of another row"  # rule 10; the row's reason names that row
REPEAT_DIGITS = 9  # rule 10: measured values equal to 9 significant digits (exports differ in the last float digit)
REPEAT_ROUNDED_DECIMALS = 2  # rule 10: a copy written with at most 2 decimals (0.01 ms) matches its original rounded alike


_NOT_ARCHITECTURE = {"name", "hf_id", "aliases", "source"}


def _repeat_key(p: _Plan) -> tuple[tuple, tuple[float, float]] | None:
    """What makes two modelled rows one measurement (rule 10): the same simulated benchmark --
    deployment (model architecture, GPU, pools, backend, formats, engine settings) and workload
    (ISL / OSL, client concurrency, length recipe), the first item returned -- and the same
    measured (TTFT, TPOT), the second, to `REPEAT_DIGITS` significant digits (`_same_measurement`
    also accepts a copy rounded to a few decimals). The architecture, not the model's name: the
    shared CSV lists DeepSeek-R1 runs as DeepSeek-V3 in one export and -R1 in another."""
    b = p.base
    if p.dep_kwargs is None or b["measured_ttft_ms"] is None or b["measured_tpot_ms"] is None:
        return None
    kw = dict(p.dep_kwargs)
    spec = kw.pop("model")
    if isinstance(spec, str):
        from ..models import get_model

        spec = get_model(spec)
    arch = sorted((k, v) for k, v in spec.model_dump().items() if k not in _NOT_ARCHITECTURE)
    def digits(x: float) -> float:
        return float(f"{float(x):.{REPEAT_DIGITS}g}")

    return ((repr(arch), repr(sorted(kw.items())), p.isl, p.osl, p.concurrency, p.range_ratio),
            (digits(b["measured_ttft_ms"]), digits(b["measured_tpot_ms"])))


def _decimals(x: float) -> int | None:
    """Decimals `x` was written with, if at most REPEAT_ROUNDED_DECIMALS (231.85 -> 2), else None."""
    for d in range(REPEAT_ROUNDED_DECIMALS + 1):
        if round(x, d) == x:
            return d
    return None


def _same_measurement(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether measured (TTFT, TPOT) pairs a and b are one measurement: equal, or one of them
    written rounded (AIConfigurator's gap-analysis exports round InferenceX's values to 0.01 ms)."""
    if a == b:
        return True
    for short, full in ((a, b), (b, a)):
        d = [_decimals(v) for v in short]
        if None not in d:
            places = max(d)  # type: ignore[type-var]
            if all(round(f, places) == s for f, s in zip(full, short)):
                return True
    return False


def _skip_repeats(plans: list[_Plan]) -> None:
    """Rule 10: keep the first modelled row of each measurement, skip its later copies (also a
    copy whose values were rounded to a few decimals: `_same_measurement`). A copy whose layout
    columns say what ran is kept before one read through rule 4b(ii')'s mapping."""
    kept: dict[tuple, list[tuple[tuple[float, float], str]]] = {}  # benchmark -> its kept rows' (measured pair, id)
    for p in sorted(plans, key=lambda q: q.remapped):  # stable: file order within each kind
        k = _repeat_key(p)
        if k is None:
            continue
        bench, pair = k
        rows = kept.setdefault(bench, [])
        kept_id = next((i for v, i in rows if _same_measurement(pair, v)), None)
        if kept_id is None:
            rows.append((pair, p.base["id"]))
            continue
        p.dep_kwargs = None
        p.reason = (f"{REPEAT_REASON} ({kept_id}: the same deployment, ISL/OSL and concurrency as simulated, "
                    f"identical TTFT {_fmt(pair[0], 3)} ms and TPOT {_fmt(pair[1], 3)} ms): one benchmark listed again, counted once")


# ----------------------------------------------------------------------------- running one row


def _ape(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or not (meas > 0) or not math.isfinite(pred):
        return None
    return abs(pred - meas) / meas * 100.0


def row_kernels(kernels: str | None, gpu) -> str | None:
    """The `kernels` setting one row is simulated with: `kernels` where it applies to the
    row's GPU (a GPUSpec or name), else 'auto'. 'profile' applies where a bundled profile
    was measured on that GPU; a directory where its tables were; 'auto' / 'none' always."""
    if kernels is None or str(kernels).lower() in ("auto", "none", "roofline", "off"):
        return kernels
    from ..cost.measured import bundled_profile_path, load_cached

    if str(kernels).lower() == "profile":
        return kernels if bundled_profile_path(gpu) is not None else "auto"
    return kernels if load_cached(kernels).matches_gpu(gpu) else "auto"


def build_deployment(kw: dict, *, cpu_overhead_s: float | None = None, gpu=None, kernels: str | None = "auto"):
    """The row's Deployment; `gpu` (a GPUSpec) replaces the system's catalog GPU in every pool;
    `kernels` as `row_kernels` resolves it for that GPU."""
    from .simulate import Deployment, Pool

    g = kw["gpu"] if gpu is None else gpu
    own = kw.get("pool_settings", {})  # rule 8c: a pool's own token budget / request cap from its launch recipe
    pools = {k: replace(Pool(g, *v), **own.get(k, {})) for k, v in kw["pools"].items()}
    common = {
        "model": kw["model"], "backend": kw["backend"], "weight_dtype": kw["weight_dtype"], "act_dtype": kw["act_dtype"],
        "kv_dtype": kw["kv_dtype"], "max_num_seqs": kw["max_num_seqs"],
        "cpu_overhead_s": cpu_overhead_s, "kernels": row_kernels(kernels, g), **kw.get("engine", {}),
    }
    if "pool" in pools:
        return Deployment(pool=pools["pool"], **common)
    # rule 8b: every disaggregated row's front end streams all tokens from the decode worker
    return Deployment(prefill=pools["prefill"], decode=pools["decode"], first_token_from=DISAGG_FIRST_TOKEN, **common)


def _check_range_ratio(range_ratio: float) -> None:
    if isinstance(range_ratio, bool) or not isinstance(range_ratio, (int, float)) or not 0 < range_ratio <= 1:
        raise LlmsimError(f"range_ratio must be in (0, 1], got {range_ratio!r}",
                          hint="lengths are drawn uniformly from [int(L x ratio), L]; 1 = every request exactly L tokens")


def _check_protocol(rounds: int, warmup_rounds: int) -> None:
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise LlmsimError(f"rounds must be an integer >= 1 (requests per client), got {rounds!r}",
                          hint="the benchmark sends rounds x concurrency requests, e.g. 10 for InferenceMAX")
    if not isinstance(warmup_rounds, int) or isinstance(warmup_rounds, bool) or not 0 <= warmup_rounds < rounds:
        raise LlmsimError(f"warmup_rounds must be an integer in [0, rounds) = [0, {rounds}), got {warmup_rounds!r}",
                          hint="warm-up requests are excluded from the means; at least one round must be measured")


def closed_loop_workload(c: int, isl: int, osl: int, *, rounds: int = ROUNDS, warmup_rounds: int = WARMUP_ROUNDS,
                         stagger: bool = False, range_ratio: float = RANGE_RATIO):
    """The benchmark protocol of rule 6: c clients starting together, rounds x c requests
    (default 10 c, InferenceMAX's recipe) of exactly isl / osl tokens, or with `range_ratio` < 1
    lengths drawn uniformly from [int(isl x range_ratio), isl] and [int(osl x range_ratio), osl]
    (benchmark_serving's --random-range-ratio, 0.8 in InferenceMAX's runs), each sent a U(0, 5 ms)
    client turnaround after its client is free, the first warmup_rounds x c completions
    excluded (default none). With `stagger`, the first round's output lengths are spread evenly
    over 1..osl (request i of the first c gets 1 + i*osl//c tokens) so that the clients' phases
    start spread uniformly over one request cycle."""
    from dataclasses import replace

    from .workload import make_workload

    _check_protocol(rounds, warmup_rounds)
    _check_range_ratio(range_ratio)
    n = rounds * c

    def lengths(L: int) -> str:  # benchmark_serving's random dataset: uniform in [int(L x ratio), L]
        return f"fixed:{L}" if range_ratio == 1 else f"uniform:{max(1, int(L * range_ratio))},{L}"

    wl = make_workload(num_requests=n, input_dist=lengths(isl), output_dist=lengths(osl), concurrency=c,
                       warmup=warmup_rounds * c, seed=SEED, client_jitter_s=CLIENT_JITTER_S)
    if not stagger or c < 2:
        return wl
    out = np.array(wl.output_len, dtype=np.int64)
    k = min(c, n)
    out[:k] = 1 + (np.arange(k, dtype=np.int64) * osl) // k
    np.minimum(out, osl, out=out)
    return replace(wl, output_len=out, name=wl.name + ", staggered first round")


def run_plan(plan: _Plan, *, cpu_overhead_s: float | None = None, stagger: bool = False, rounds: int = ROUNDS,
             warmup_rounds: int = WARMUP_ROUNDS, gpu=None, kernels: str | None = "auto",
             range_ratio: float | None = None) -> dict:
    """Simulate one planned row; returns its report row (status 'ok' or 'skipped').
    `range_ratio`: the length spread to simulate; None = the row's own recipe (`plan.range_ratio`).
    `gpu`: a GPUSpec to simulate instead of the row's catalog GPU (calibration).
    `kernels`: measured tables to use where they apply to the row's GPU (`row_kernels`)."""
    from .simulate import simulate

    out = dict(plan.base)
    ratio = plan.range_ratio if range_ratio is None else range_ratio
    out.update(predicted_ttft_ms=None, predicted_tpot_ms=None, ttft_ape=None, tpot_ape=None, status="skipped",
               reason=plan.reason, note=plan.note, sim_wall_s=0.0, range_ratio=ratio)
    if plan.dep_kwargs is None:
        return out
    assert plan.concurrency is not None  # (a modelled row's plan has its client count)
    t0 = time.perf_counter()
    try:
        wl = closed_loop_workload(plan.concurrency, plan.isl, plan.osl, rounds=rounds, warmup_rounds=warmup_rounds,
                                  stagger=stagger, range_ratio=ratio)
        dep = build_deployment(plan.dep_kwargs, cpu_overhead_s=cpu_overhead_s, gpu=gpu, kernels=kernels)
        res = simulate(dep, wl, keep_itl=False)
        s = res.summary
        ttft = (s.get("ttft_ms") or {}).get("mean")
        tpot = (s.get("tpot_ms") or {}).get("mean") if plan.osl > 1 else None
        out.update(
            predicted_ttft_ms=None if ttft is None else float(ttft),
            predicted_tpot_ms=None if tpot is None else float(tpot),
            status="ok",
            reason="",
        )
        out["ttft_ape"] = _ape(out["predicted_ttft_ms"], out["measured_ttft_ms"])
        out["tpot_ape"] = _ape(out["predicted_tpot_ms"], out["measured_tpot_ms"])
    except LlmsimError as e:
        out["reason"] = e.message
    except Exception as e:  # noqa: BLE001 - listed, never dropped
        out["reason"] = f"internal error: {type(e).__name__}: {e}"
    out["sim_wall_s"] = time.perf_counter() - t0
    return out


def _run_task(args: tuple) -> tuple[int, dict]:
    i, plan, kw = args
    return i, run_plan(plan, **kw)


def run_plans(tasks: list[tuple[_Plan, dict]], jobs: int = 1) -> list[dict]:
    """`run_plan(plan, **kw)` for every (plan, kw), results in task order. With `jobs` > 1 the
    simulations are spread over worker processes (spawn), longest first for load balance."""
    out: list[dict | None] = [None] * len(tasks)
    todo = []
    for i, (plan, kw) in enumerate(tasks):
        if plan.dep_kwargs is None:
            out[i] = run_plan(plan)  # skipped row: nothing to simulate
        else:
            todo.append((i, plan, kw))
    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp

        todo.sort(key=lambda t: -t[1].cost)
        with mp.get_context("spawn").Pool(min(jobs, len(todo))) as pool:
            for i, r in pool.imap_unordered(_run_task, todo, chunksize=1):
                out[i] = r
    else:
        for t in todo:
            i, r = _run_task(t)
            out[i] = r
    done = [r for r in out if r is not None]
    assert len(done) == len(out)  # every task ran
    return done


# ----------------------------------------------------------------------------- statistics


def ape_stats(rows: Iterable[dict]) -> dict:
    """Median / p90 APE (percent) of TTFT and TPOT over the modelled rows, and row counts."""
    rows = list(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    d: dict[str, Any] = {}
    for k in ("ttft", "tpot"):
        v = np.array([r[f"{k}_ape"] for r in ok if r.get(f"{k}_ape") is not None], dtype=float)
        d[f"{k}_median_ape"] = float(np.median(v)) if v.size else None
        d[f"{k}_p90_ape"] = float(np.percentile(v, 90)) if v.size else None
        # signed bias: median of (pred - meas) / meas
        s = np.array([(r[f"predicted_{k}_ms"] - r[f"measured_{k}_ms"]) / r[f"measured_{k}_ms"] * 100 for r in ok
                      if r.get(f"{k}_ape") is not None], dtype=float)
        d[f"{k}_median_signed_error"] = float(np.median(s)) if s.size else None
    d["rows_modelled"] = len(ok)
    d["rows_skipped"] = len(rows) - len(ok)
    return d


def _group_by(rows: list[dict], key) -> dict[str, dict]:
    g: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        g[key(r)].append(r)
    return {k: ape_stats(v) for k, v in sorted(g.items())}


# ----------------------------------------------------------------------------- report


@dataclass
class SiliconReport:
    rows: list[dict]
    source: str = ""
    wall_s: float = 0.0
    jobs: int = 1
    meta: dict = field(default_factory=dict)

    def groups(self) -> dict[str, dict]:
        return _group_by(self.rows, lambda r: f"{r['system']}/{r['backend']}/{r['mode']}")

    def to_dict(self) -> dict:
        rows = self.rows
        skipped = [{"id": r["id"], "reason": r["reason"]} for r in rows if r["status"] != "ok"]
        return {
            "source": self.source,
            "rules": "see llmsim.serving.validate module docstring; APE values in percent; predicted = simulated mean",
            "groups": self.groups(),
            "by_backend": _group_by(rows, lambda r: r["backend"]),
            "by_mode": _group_by(rows, lambda r: r["mode"]),
            "by_backend_mode": _group_by(rows, lambda r: f"{r['backend']}/{r['mode']}"),
            "overall": ape_stats(rows),
            "skipped_reasons": dict(Counter(reason_class(r["reason"]) for r in rows if r["status"] != "ok").most_common()),
            "skipped": skipped,
            "rows": rows,
            "wall_s": self.wall_s,
            "jobs": self.jobs,
            **({"meta": self.meta} if self.meta else {}),
        }

    def render(self, console) -> None:
        from rich.table import Table

        def fmt(x):
            return "-" if x is None else (f"{x:.0f}" if abs(x) >= 99.95 else f"{x:.1f}")

        def table(title: str, stats: dict[str, dict], label: str) -> Table:
            t = Table(title=title)
            for c in (label, "ok", "skip", "TTFT med", "TTFT p90", "TTFT bias", "TPOT med", "TPOT p90", "TPOT bias"):
                t.add_column(c, justify="left" if c == label else "right", no_wrap=c == label)
            for k, s in stats.items():
                t.add_row(k, str(s["rows_modelled"]), str(s["rows_skipped"]), fmt(s["ttft_median_ape"]), fmt(s["ttft_p90_ape"]),
                          fmt(s["ttft_median_signed_error"]), fmt(s["tpot_median_ape"]), fmt(s["tpot_p90_ape"]),
                          fmt(s["tpot_median_signed_error"]))
            return t

        d = self.to_dict()
        console.print(table(f"predicted vs measured mean TTFT / TPOT — {Path(self.source).name or 'silicon rows'}: "
                            "median and p90 APE %, bias = median signed error %", d["groups"], "system/backend/mode"))
        console.print(table("per backend and mode", d["by_backend_mode"], "backend/mode"))
        console.print(table("per backend", d["by_backend"], "backend"))
        console.print(table("per mode", d["by_mode"], "mode"))
        console.print(table("overall", {"all": d["overall"]}, "rows"))
        if d["skipped_reasons"]:
            t = Table(title=f"skipped rows ({len(d['skipped'])}), by reason")
            t.add_column("reason")
            t.add_column("rows", justify="right")
            for k, v in d["skipped_reasons"].items():
                t.add_row(k, str(v))
            console.print(t)
        proto = self.meta.get("protocol")
        if proto:
            ratio = proto.get("range_ratio", 1.0)
            if ratio == "per row":
                n08 = sum(1 for r in self.rows if r.get("status") == "ok" and r.get("range_ratio") not in (None, 1, 1.0))
                lengths = (f"lengths per the row's benchmark recipe ({n08} modelled InferenceMAX / InferenceX rows uniform in "
                           f"[{INFERENCEX_RANGE_RATIO:g} L, L], the rest fixed)")
            else:
                lengths = "fixed lengths" if ratio == 1 else f"lengths uniform in [{ratio:g} L, L]"
            console.print(f"benchmark protocol simulated: {proto['requests_per_client']} x concurrency requests per row, "
                          f"first {proto['warmup_requests_per_client']} x concurrency excluded as warm-up, clients start together, "
                          + lengths)
        console.print(f"{len(self.rows)} rows in {self.wall_s:,.1f} s wall ({self.jobs} job{'s' if self.jobs != 1 else ''})")

    def write_rows(self, path) -> None:
        p = Path(path).expanduser()
        if p.is_dir():
            raise LlmsimError(f"{p} is a directory; the per-row results (--rows) need a file name", hint=f"e.g. {p / 'rows.csv'}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with p.open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
                w.writeheader()
                for r in self.rows:
                    w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})
        except OSError as e:
            raise LlmsimError(f"cannot write the per-row results {p}: {e.strerror or e}",
                              hint="give a writable file path for --rows") from None


def reason_class(reason: str) -> str:
    """Group skip reasons that differ only in numbers / names."""
    if reason.startswith("model not in catalog:"):
        return reason
    if reason.startswith(REPEAT_REASON):
        return REPEAT_REASON + " (counted once; rule 10)"
    # stand-alone numbers only: the digits inside names ('h100_sxm', 'llama-3.1-8b') stay
    r = re.sub(r"(?<![\w.\-])\d+(?:[.,]\d+)*(?!\w)", "N", reason)
    return r if len(r) <= 160 else r[:157] + "..."


# ----------------------------------------------------------------------------- entry point


MALFORMED = "_malformed"  # read_silicon_csv's mark on a row whose field count is not the header's


def read_silicon_csv(path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        what = "is not a regular file" if p.exists() else "not found"
        raise LlmsimError(f"silicon CSV {what}: {p}", hint="give the path of an AIConfigurator silicon CSV")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            dup = sorted({h for h in header if header.count(h) > 1})
            if dup:
                raise LlmsimError(f"silicon CSV {p} names column(s) {dup} more than once",
                                  hint="each column once: which one would be meant is ambiguous")
            rows = []
            for row in reader:
                # a row with more or fewer fields than the header: its values cannot be trusted to
                # sit under the right columns, so it is listed as skipped with the reason (rule 9)
                extra, short = row.pop(None, None), None in row.values()
                if extra or short:
                    n = len(header) + len(extra) if extra else sum(v is not None for v in row.values())
                    row = {k: ("" if v is None else v) for k, v in row.items()}
                    row[MALFORMED] = f"line {reader.line_num} has {n} fields, the header {len(header)}"
                rows.append(row)
    except UnicodeDecodeError as e:
        raise LlmsimError(f"silicon CSV {p} is not UTF-8 text (undecodable byte at offset {e.start}): is it a binary file?",
                          hint="expected the AIConfigurator silicon format: a UTF-8 CSV with header id,backend,model_path,...") from None
    except csv.Error as e:
        raise LlmsimError(f"silicon CSV {p} is not a readable CSV: {e}",
                          hint="expected the AIConfigurator silicon format: a UTF-8 CSV with header id,backend,model_path,...") from None
    except OSError as e:
        raise LlmsimError(f"cannot read silicon CSV {p}: {e.strerror or e}") from None
    if not rows:
        raise LlmsimError(f"silicon CSV {p} has no rows")
    need = {"id", "backend", "model_path", "system", "mode", "isl", "osl", "silicon_ttft_ms", "silicon_tpot_ms"}
    missing = need - set(rows[0].keys())
    if missing:
        raise LlmsimError(f"silicon CSV {p} lacks columns {sorted(missing)}", hint="expected the AIConfigurator silicon format")
    return rows


def validate_silicon(
    path,
    *,
    limit: int | None = None,
    jobs: int = 1,
    assume_one_worker: bool = False,
    cpu_overhead_s: dict[str, float] | None = None,
    stagger: bool = False,
    rounds: int = ROUNDS,
    warmup_rounds: int = WARMUP_ROUNDS,
    rows: list[dict] | None = None,
    kernels: str = "auto",
    range_ratio: float | None = None,
    count_repeats: bool = False,
) -> SiliconReport:
    """Simulate every row of a silicon CSV (or the given parsed `rows`) and compare.

    `limit`: only the first N rows. `jobs`: worker processes (spawn). `assume_one_worker`:
    simulate disagg rows without worker counts as 1 prefill + 1 decode worker (rule 4).
    `cpu_overhead_s`: per-backend override of the backends' `cpu_overhead_s` (calibration
    experiments; None uses backends.py). `rounds` / `warmup_rounds`: the benchmark protocol
    (rule 6): rounds x concurrency requests per row, the first warmup_rounds x concurrency
    completions excluded; the defaults (10, 0) are InferenceMAX's recipe. `kernels`: 'auto'
    (default), 'none', 'profile' or a directory of tables, applied to the rows whose GPU
    the tables were measured on (other rows: 'auto'; `row_kernels`). `count_repeats`: simulate and
    count every copy of a measurement the CSV lists more than once (rule 10; default: the first).
    """
    t0 = time.perf_counter()
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise LlmsimError(f"limit must be an integer >= 1, got {limit!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise LlmsimError(f"jobs must be an integer >= 1, got {jobs!r}")
    _check_protocol(rounds, warmup_rounds)
    if range_ratio is not None:
        _check_range_ratio(range_ratio)
    if kernels is not None and str(kernels).lower() not in ("auto", "none", "roofline", "off", "profile"):
        from ..cost.measured import load_cached

        load_cached(kernels)  # a bad directory is a clear error now, not one per row
    raw = rows if rows is not None else read_silicon_csv(path)
    if limit is not None:
        raw = raw[:limit]
    plans = plan_rows(raw, assume_one_worker=assume_one_worker, count_repeats=count_repeats)
    ovh = cpu_overhead_s or {}
    results = run_plans([(p, {"cpu_overhead_s": ovh.get(p.dep_kwargs["backend"]) if p.dep_kwargs else None, "stagger": stagger,
                              "rounds": rounds, "warmup_rounds": warmup_rounds, "kernels": kernels,
                              "range_ratio": range_ratio})
                         for p in plans], jobs)
    return SiliconReport(rows=results, source=str(path or ""), wall_s=time.perf_counter() - t0,
                         jobs=jobs, meta={"kernels": kernels, "protocol": {"requests_per_client": rounds, "warmup_requests_per_client": warmup_rounds,
                                                                         "range_ratio": "per row" if range_ratio is None else range_ratio,
                                                       "client_jitter_ms": CLIENT_JITTER_S * 1e3, "stagger": stagger},
                                                         "repeats": "every copy counted" if count_repeats else "counted once (rule 10)"})
