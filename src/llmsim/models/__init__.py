"""Model architectures: the ModelSpec class, the built-in catalog and the HF config.json loader."""

from .catalog import get_model, list_models
from .hf import from_hf_config, load_hf_config_file
from .spec import LayerGroup, ModelSpec

__all__ = ["ModelSpec", "LayerGroup", "get_model", "list_models", "from_hf_config", "load_hf_config_file"]
