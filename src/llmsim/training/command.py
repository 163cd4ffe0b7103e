"""`train_command`: what `llmsim train` does, as a Python function the CLI wraps.

    obj = train_command("llama-3.1-70b", "h100-sxm", num_gpus=1024, tp=8, pp=4, tokens="15T")
    obj = train_command("gpt3-175b", "h100-sxm", num_gpus=1024, search=True, global_batch=1536, seq_len=2048)

Returns the TrainResult (or SearchResults with ``search=True``); with ``console`` it is also
rendered there, with ``as_json=True`` the JSON-ready dict is returned instead. Bad inputs raise
LlmsimError (message + hint), which the CLI prints and exits with status 2.
"""

from __future__ import annotations

from .estimate import train_estimate
from .result import SearchResults, TrainResult
from .search import search_layouts

_SEARCH_ONLY = ("top", "zero_stages", "recompute_modes", "micro_batches", "max_micro_batch", "max_tp", "max_cp", "max_vpp",
                "ep_options", "include_unfit")


def train_command(model, gpu="h100-sxm", *, search: bool = False, console=None, as_json: bool = False, **kwargs):
    """Estimate one layout (default) or search all layouts (``search=True``) and optionally render."""
    obj: TrainResult | SearchResults
    if search:
        kw = dict(kwargs)
        num_gpus = kw.pop("num_gpus", None)
        if num_gpus is None:
            from ..errors import LlmsimError

            raise LlmsimError("the layout search needs num_gpus", hint="e.g. --num-gpus 1024")
        for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch", "recompute"):
            kw.pop(k, None)  # the search chooses these
        if "zero_stages" in kw:
            kw["zero"] = tuple(kw.pop("zero_stages"))
        else:
            kw.pop("zero", None)
        if "recompute_modes" in kw:
            kw["recompute"] = tuple(kw.pop("recompute_modes"))
        if "ep_options" in kw:
            kw["ep"] = kw.pop("ep_options")
        if kw.get("global_batch") is None:
            kw["global_batch"] = 1024
        obj = search_layouts(model, gpu, num_gpus, **kw)
    else:
        kw = {k: v for k, v in kwargs.items() if k not in _SEARCH_ONLY}
        obj = train_estimate(model, gpu, **kw)
    if console is not None and not as_json:
        obj.render(console)
    return obj.to_dict() if as_json else obj
