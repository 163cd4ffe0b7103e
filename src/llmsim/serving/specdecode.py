"""Speculative decoding (MTP / EAGLE draft heads): what a decode step costs and what it yields.

With speculative decoding each decode step of a sequence
1. drafts k tokens with a small draft head -- DeepSeek / Qwen's native multi-token-prediction
   (MTP, "NextN") module or an EAGLE head: one decoder layer of the target model's width that
   shares its embedding and LM head, run k times (SGLang's EAGLE worker, TRT-LLM's MTP-Eagle and
   vLLM's `deepseek_mtp` reuse the one module for every draft position);
2. verifies them in one target-model pass over q = k + 1 tokens per sequence (the pending token
   and the k drafts): q tokens through every GEMM and the LM head, attention of q queries over a
   context whose KV is read once (`cost.ops.Batch.decode_q`);
3. keeps the drafts up to the first mismatch plus the target's own next token: 1 + a tokens,
   where a (`accepted_per_step`, 0 <= a <= k) is the mean number of accepted drafts per step.

So one step costs verify(n sequences x q tokens) + draft(k passes of one layer + LM head) and
yields 1 + a tokens per sequence. The engines report a as "average acceptance length" - 1
(SGLang's accept length, vLLM's mean acceptance length, TRT-LLM's acceptance rate); like
AIConfigurator's `nextn_accepted` it is a property of the model, the draft head and the *text*
(code is accepted more than prose), so llmsim takes it as an input and assumes none.

How the simulator uses it (`StepTimeModel`, spec_draft_tokens / spec_tokens_per_step): the
engine keeps counting one token per sequence per decode tick, and a decode-only iteration's
time is the step's time divided by 1 + a -- the same tokens per second, the same KV growth,
contexts in tokens as before. An iteration that also runs prefill work is charged in full
(the prompt's chunk takes as long as it really does) while its decodes still advance one
token, not 1 + a: the decodes lag (a / (1 + a)) x verify step per such iteration, small next
to the prefill work that iteration carries. Mean TPOT is what the expected-value model gives.
A client sees a step's 1 + a tokens arrive together, and benchmark_serving records one ITL per
streamed chunk, so the engine records the ITL per step: a decode-only run's gaps as 1 / (1 + a)
as many chunks of (1 + a) ticks (`Engine._advance_ticks`, per_chunk), an iteration with prefill
work one chunk per decode. Every chunk is one step: the spread of accepted tokens per step
changes how many chunks there are, not their times.

`chain_acceptance` turns per-position acceptance rates into a; `DEEPSEEK_MTP_ACCEPTANCE` is
the published prior `llmsim validate` uses for DeepSeek-V3 / R1 MTP rows, which record none.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import is_int, is_number, python_scalars
from ..errors import LlmsimError

METHODS = ("mtp", "eagle")


@dataclass(frozen=True)
class SpecDecoding:
    """Speculative decoding with a one-layer draft head (`method`: 'mtp' = the model's own
    multi-token-prediction module, which its config must have; 'eagle' = an EAGLE head of the
    same cost), `num_draft_tokens` drafts per step, `accepted_per_step` of them accepted on
    average (the engines' mean acceptance length - 1)."""

    method: str = "mtp"
    num_draft_tokens: int = 1
    accepted_per_step: float = 0.0

    def __post_init__(self) -> None:
        python_scalars(self)
        if self.method not in METHODS:
            raise LlmsimError(f"unknown speculative-decoding method {self.method!r}", hint=f"use one of {', '.join(METHODS)}")
        k = self.num_draft_tokens
        if not is_int(k) or k < 1:
            raise LlmsimError(f"num_draft_tokens must be a whole number >= 1, got {k!r}",
                              hint="the drafts per step: SGLang's --speculative-num-steps, TRT-LLM's num_nextn_predict_layers, "
                                   "vLLM's num_speculative_tokens")
        a = self.accepted_per_step
        if not is_number(a) or not 0.0 <= a <= k:
            raise LlmsimError(f"accepted_per_step must be a number between 0 and num_draft_tokens ({k}), got {a!r}",
                              hint="the mean accepted drafts per step: the engine's reported average acceptance length minus 1")

    @property
    def tokens_per_step(self) -> float:
        """Tokens one verify step emits per sequence on average: 1 + accepted_per_step."""
        return 1.0 + float(self.accepted_per_step)

    def check_model(self, model) -> None:
        """'mtp' needs the model's own MTP module (`ModelSpec.num_mtp_layers`)."""
        if self.method == "mtp" and not model.num_mtp_layers:
            raise LlmsimError(f"{model.name} has no multi-token-prediction module (num_nextn_predict_layers = 0 in its config)",
                              hint="use --spec-decoding eagle (an EAGLE draft head), or a model that ships MTP layers")


def chain_acceptance(rates: list[float] | tuple[float, ...], k: int) -> float:
    """Mean accepted drafts per step of a chain of k drafts whose i-th is accepted with
    conditional probability rates[i] given the ones before were (the last rate repeats beyond
    the list): sum over i <= k of the product of the first i rates."""
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise LlmsimError(f"acceptance rates must be probabilities in [0, 1], got {list(rates)!r}")
    a, p = 0.0, 1.0
    for i in range(k):
        p *= rates[min(i, len(rates) - 1)]
        a += p
    return a


def _deepseek_mtp_rates(positions: int = 8) -> tuple[float, ...]:
    """Conditional acceptance of DeepSeek-V3 / R1's MTP module at draft positions 1, 2, ...:
    0.875 at the first -- the DeepSeek-V3 Technical Report (arXiv 2412.19437, sec. 5.4.3):
    "the acceptance rate of the second token prediction ranges between 85% and 90%" -- and
    0.83x the one before at each later position (the module is trained for the first position
    and reused for later ones), the decay that makes a 7-draft chain's mean acceptance length
    3.20, as Nebius measured the original module at temperature 0 over MT-Bench, HumanEval and
    GSM8K (huggingface.co/nebius/MTP-DeepSeek-V3-0324 model card)."""
    return tuple(0.875 * 0.83**i for i in range(positions))


# published prior for DeepSeek-V3 / R1 MTP (see `_deepseek_mtp_rates`); nothing here is fitted
# to llmsim's silicon rows. chain_acceptance of it: k = 1 -> 0.875, 2 -> 1.51, 3 -> 1.89
DEEPSEEK_MTP_ACCEPTANCE = _deepseek_mtp_rates()


def draft_kv_tokens(capacity_tokens: int, token_bytes: float, draft_token_bytes: float, draft_weight_bytes: float, dp: int) -> int:
    """KV tokens left in a pool of `capacity_tokens` (over its dp ranks; `token_bytes` per token
    per GPU) when a one-layer draft head joins: its weights (`draft_weight_bytes` per GPU, one mean
    layer's) come out of the KV space, and every cached token also holds the draft layer's KV
    (`draft_token_bytes` per token per GPU, one attention layer's)."""
    if token_bytes <= 0:
        return capacity_tokens
    unit = token_bytes + draft_token_bytes
    tokens = capacity_tokens * token_bytes / unit - draft_weight_bytes / unit * dp
    return max(0, int(tokens))
