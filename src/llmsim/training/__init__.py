"""Training estimator: step time, throughput, MFU, memory and time / cost / energy to train.

Public API (the CLI's `llmsim train` wraps these):

    train_estimate(model, gpu, *, num_gpus, tp=1, pp=1, vpp=1, cp=1, ep=1, dp=None, zero=1,
                   micro_batch=1, global_batch=None, seq_len=None, recompute='none',
                   dtype='bf16', tokens=None, price_per_hour_usd=None, ...) -> TrainResult
    search_layouts(model, gpu, num_gpus, *, global_batch, seq_len, dtype='bf16', top=20, ...)
                   -> SearchResults (a list of TrainResult ranked by throughput)
    TrainResult.to_dict() / .render(console)
    train_command(model, gpu, *, search=False, console=None, as_json=False, **kw)   what `llmsim train` runs

Modules: layout (degrees and divisibility rules), flops (shapes and the MFU convention),
schedule (pipeline bubble, in-flight micro-batches), memory (ZeRO stages, activations),
comm (collectives on their link tier), step (the vectorised step-time model), estimate
(the scalar API), search (vectorised layout search), result (JSON and rendering), command
(the CLI-facing entry point).
"""

from .command import train_command
from .estimate import parse_tokens, train_estimate
from .layout import TrainLayout
from .result import MFU_DEFINITION, SearchResults, TrainResult
from .search import search_layouts

__all__ = ["MFU_DEFINITION", "SearchResults", "TrainLayout", "TrainResult", "parse_tokens", "search_layouts", "train_command", "train_estimate"]
