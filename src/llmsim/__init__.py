"""llmsim: predict speed, memory and cost of LLMs on GPUs, and explain every number.

The public API (stable names):

    estimate(model, gpu, tp=.., batch=.., isl=.., osl=.., ...) -> EstimateResult
    get_model(name_or_path) -> ModelSpec;   list_models()
    get_gpu(name_or_path) -> GPUSpec;       list_gpus()
    LlmsimError                              every bad-input error
"""

from .errors import LlmsimError
from .estimate import EstimateResult, estimate
from .hardware import GPUSpec, get_gpu, list_gpus
from .models import ModelSpec, get_model, list_models

__version__ = "0.1.0"
__all__ = ["estimate", "EstimateResult", "get_model", "list_models", "ModelSpec", "get_gpu", "list_gpus", "GPUSpec", "LlmsimError"]
