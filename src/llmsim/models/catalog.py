"""The built-in model catalog: one JSON file per model in `models/data/`.

Each file holds `{"name", "hf_id", "aliases", "source", "config"}` where `config` is the
model's Hugging Face config.json (the keys that matter, values as published; GPT-3 has
no HF config and is written as the gpt2-type config its paper describes). Every entry is
built through `from_hf_config`, so the catalog exercises the same loader users run on
their own config.json files. An optional `checkpoint_unquantized` ({"fp4": ["attention_qkv"]})
records which parts the usual published checkpoint of another weight format leaves in bf16
(its source goes in `source`).

`get_model` accepts a catalog id, an alias or a Hugging Face id (case-insensitive), or a
path to a config.json / model directory.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from ..errors import LlmsimError
from .hf import from_hf_config, load_hf_config_file, read_json_file
from .spec import ModelSpec

__all__ = ["get_model", "list_models", "DATA_DIR"]

DATA_DIR = Path(__file__).parent / "data"
_ENTRY_KEYS = {"name", "hf_id", "aliases", "source", "config", "checkpoint_unquantized"}


def _load_entry(path: Path) -> ModelSpec:
    raw = read_json_file(path)
    if not isinstance(raw, dict):
        raise LlmsimError(f"catalog file {str(path)!r} must hold a JSON object")
    missing = {"name", "config"} - raw.keys()
    extra = raw.keys() - _ENTRY_KEYS
    if missing or extra:
        problems = ([f"missing {sorted(missing)}"] if missing else []) + ([f"unknown {sorted(extra)}"] if extra else [])
        raise LlmsimError(
            f"catalog file {str(path)!r}: " + "; ".join(problems),
            hint=f"catalog entries hold exactly {sorted(_ENTRY_KEYS)}",
        )
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise LlmsimError(f"catalog file {str(path)!r}: 'aliases' must be a list of strings")
    try:
        spec = from_hf_config(
            raw["config"],
            name=raw["name"],
            hf_id=raw.get("hf_id"),
            aliases=tuple(aliases),
            source=raw.get("source", ""),
        )
    except LlmsimError as e:
        raise LlmsimError(f"catalog file {path.name}: {e.message}", hint=e.hint) from None
    other = raw.get("checkpoint_unquantized")
    if other is None:
        return spec
    # {"fp4": ["attention_qkv"]}: parts another format's published checkpoint leaves in bf16
    if not isinstance(other, dict) or not all(isinstance(v, list) for v in other.values()):
        raise LlmsimError(f"catalog file {path.name}: 'checkpoint_unquantized' must map a weight format to a list of parts",
                          hint='e.g. {"fp4": ["attention_qkv"]}')
    try:
        return ModelSpec.model_validate({**spec.model_dump(), "checkpoint_unquantized": tuple((k, tuple(v)) for k, v in other.items())})
    except ValidationError as e:
        raise LlmsimError(f"catalog file {path.name}: invalid 'checkpoint_unquantized': {e.errors()[0]['msg']}",
                          hint="parts are attention, attention_qkv, attention_out, shared_experts, dense_mlp") from None


@lru_cache(maxsize=1)
def _catalog() -> tuple[tuple[ModelSpec, ...], dict[str, ModelSpec]]:
    """All catalog specs (sorted by id) and the lookup table: lower-cased id/alias/HF id -> spec."""
    specs = tuple(sorted((_load_entry(p) for p in DATA_DIR.glob("*.json")), key=lambda s: s.name))
    index: dict[str, ModelSpec] = {}
    for spec in specs:
        for key in {spec.name, *spec.aliases, *([spec.hf_id] if spec.hf_id else [])}:
            k = key.strip().lower()
            other = index.get(k)
            if other is not None and other.name != spec.name:
                raise LlmsimError(f"model catalog: {key!r} names both {other.name!r} and {spec.name!r}")
            index[k] = spec
    return specs, index


def list_models() -> list[ModelSpec]:
    """Every catalog model, sorted by id."""
    return list(_catalog()[0])


@lru_cache(maxsize=256)
def _from_path(resolved: str, mtime_ns: int, size: int) -> ModelSpec:
    # keyed on the file's mtime and size so an edited config.json is re-read
    return load_hf_config_file(resolved)


def _config_file(p: Path) -> Path:
    return p / "config.json" if p.is_dir() else p


@lru_cache(maxsize=1024)
def _lookup(name: str) -> ModelSpec | None:
    return _catalog()[1].get(name.strip().lower())


def get_model(name_or_path: str) -> ModelSpec:
    """Catalog model by id, alias or HF id (case-insensitive), or a HF config.json file/directory."""
    if isinstance(name_or_path, ModelSpec):  # already resolved: convenient for callers
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise LlmsimError(f"a model is named by a string, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    spec = _lookup(text)
    if spec is not None:
        return spec
    p = Path(text).expanduser()
    if text.strip() and p.exists():
        f = _config_file(p)
        try:
            st = f.stat()
        except OSError:
            return load_hf_config_file(p)  # raises a clear LlmsimError (e.g. no config.json)
        return _from_path(str(f.resolve()), st.st_mtime_ns, st.st_size)
    raise _unknown(text)


def _unknown(text: str) -> LlmsimError:
    specs, index = _catalog()
    key = text.strip().lower()
    close = difflib.get_close_matches(key, list(index), n=6, cutoff=0.6)
    # also match on the part after an org prefix ("meta-llama/llama-3-8" -> "llama-3-8b")
    if "/" in key:
        close += difflib.get_close_matches(key.rsplit("/", 1)[-1], list(index), n=6, cutoff=0.6)
    suggestions: list[str] = []
    for k in close:
        sid = index[k].name
        if sid not in suggestions:
            suggestions.append(sid)
    where = " (no catalog entry, and no file or directory at that path)" if ("/" in text or text.endswith(".json")) else ""
    if suggestions:
        hint = f"did you mean {', '.join(repr(s) for s in suggestions[:3])}? run `llmsim models list`; or pass a path to a config.json"
    else:
        hint = "run `llmsim models list` to see the catalog; or pass a path to a config.json"
    return LlmsimError(f"unknown model {text!r}{where}", hint=hint)
