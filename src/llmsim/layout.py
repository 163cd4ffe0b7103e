"""Parallel layout and precision of a deployment, with the divisibility rules checked up front.

Conventions (the same as TRT-LLM / AIConfigurator):
- `tp` splits attention heads and dense MLPs across GPUs; KV heads are split when
  tp divides them and *replicated* when tp is a multiple of them (tp=8 on 8 KV heads
  gives one KV head per GPU; tp=16 gives each KV head to two GPUs).
- `dp` is attention data parallelism inside one instance: dp groups of tp GPUs each
  run attention on their own requests (used with expert parallelism for MoE).
- MoE layers run on all tp*dp GPUs of a stage: `ep` GPUs each hold num_experts/ep
  experts, and each expert is split `moe_tp = tp*dp/ep` ways.
- `pp` splits the layers into stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import is_int, python_scalars
from .dtypes import ACT_DTYPES, KV_DTYPES, WEIGHT_DTYPES, check_allowed
from .errors import LlmsimError
from .models.spec import ModelSpec


MAX_GPUS_PER_REPLICA = 1 << 16  # tp*pp*dp of one engine replica (NVL576-class domains are 576)


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        python_scalars(self)

    @property
    def gpus_per_stage(self) -> int:
        return self.tp * self.dp

    @property
    def num_gpus(self) -> int:
        return self.tp * self.dp * self.pp

    @property
    def moe_tp(self) -> int:
        return self.gpus_per_stage // self.ep

    def kv_heads_per_gpu(self, model: ModelSpec) -> int:
        return max(1, model.num_kv_heads // self.tp)

    def validate(self, model: ModelSpec) -> "Parallel":
        for k in ("tp", "pp", "dp", "ep"):
            v = getattr(self, k)
            if not is_int(v):
                raise LlmsimError(f"{k} must be an integer, got {v!r}", hint=f"e.g. {k}=2")
            if v < 1:
                raise LlmsimError(f"{k} must be ≥ 1, got {v}")
        if self.num_gpus > MAX_GPUS_PER_REPLICA:
            raise LlmsimError(f"tp*pp*dp = {self.num_gpus:,} GPUs in one replica is more than llmsim models ({MAX_GPUS_PER_REPLICA:,})",
                              hint="check the parallel degrees; use replicas / workers for many copies of a layout")
        if model.num_heads % self.tp:
            divs = [d for d in range(1, model.num_heads + 1) if model.num_heads % d == 0 and d <= 64]
            raise LlmsimError(
                f"tp={self.tp} does not divide the {model.num_heads} attention heads of {model.name}",
                hint=f"use tp in {divs}",
            )
        if not model.is_mla and model.num_kv_heads % self.tp and self.tp % model.num_kv_heads:
            raise LlmsimError(
                f"tp={self.tp} neither divides nor is a multiple of the {model.num_kv_heads} KV heads of {model.name}",
                hint="KV heads are split when tp divides them and replicated when tp is a multiple of them",
            )
        if model.num_linear_layers and (model.linear_num_key_heads % self.tp or model.linear_num_value_heads % self.tp):
            nk = model.linear_num_key_heads
            raise LlmsimError(
                f"tp={self.tp} does not divide the {nk} key / {model.linear_num_value_heads} value heads of "
                f"{model.name}'s linear-attention layers",
                hint=f"use tp in {[d for d in range(1, nk + 1) if nk % d == 0]}",
            )
        if self.pp > model.num_layers:
            raise LlmsimError(f"pp={self.pp} exceeds the {model.num_layers} layers of {model.name}")
        if model.is_moe:
            if self.gpus_per_stage % self.ep:
                raise LlmsimError(
                    f"ep={self.ep} must divide tp*dp={self.gpus_per_stage}",
                    hint="MoE layers run on the tp*dp GPUs of a stage: ep * moe_tp = tp * dp",
                )
            if model.num_experts % self.ep:
                raise LlmsimError(
                    f"ep={self.ep} does not divide the {model.num_experts} experts of {model.name}"
                )
        elif self.ep != 1:
            raise LlmsimError(f"ep={self.ep} given but {model.name} is not a mixture-of-experts model", hint="use ep=1")
        return self


@dataclass(frozen=True)
class Precision:
    """Formats of weights, activations (GEMM inputs) and the KV cache."""

    weight: str = "bf16"
    act: str = "bf16"
    kv: str = "bf16"

    def __post_init__(self) -> None:
        if self.act == "fp8" and self.weight in ("bf16", "fp16"):
            # no engine runs a GEMM on 16-bit weights with fp8 inputs: fp8 tensor cores take
            # both operands in fp8, so the weights would have to be quantised too
            raise LlmsimError(f"fp8 activations need quantised weights (fp8, fp4, int8 or int4), got {self.weight} weights",
                              hint=f"drop the activation dtype ({self.weight} weights run {self.weight} GEMMs) or use fp8 weights (W8A8)")

    @classmethod
    def make(cls, weight: str = "bf16", act: str | None = None, kv: str | None = None) -> "Precision":
        """Defaults as serving engines do: fp8/fp4 weights imply fp8 activations (W8A8 / W4A8);
        int8/int4 weights are weight-only (W8A16 / W4A16); the KV cache stays bf16 unless asked."""
        w = check_allowed(weight, WEIGHT_DTYPES, "weight")
        if act is None:
            act = "fp8" if w in ("fp8", "fp4") else "bf16"
        a = check_allowed(act, ACT_DTYPES, "activation")
        k = check_allowed("bf16" if kv is None else kv, KV_DTYPES, "KV-cache")
        return cls(w, a, k)
