"""Deployment planner: which GPUs, how many, in what layout and at what cost to serve a model
to a workload under latency targets (`llmsim plan`). See `plan.py` for the pipeline."""

from .compose import OBJECTIVES, Budget, Config
from .evaluate import EvalContext, Point, Sweep
from .plan import PlanResult, plan, plan_command
from .space import parse_duration_ms, parse_gpus, parse_precisions

__all__ = ["OBJECTIVES", "Budget", "Config", "EvalContext", "PlanResult", "Point", "Sweep", "parse_duration_ms", "parse_gpus",
           "parse_precisions", "plan", "plan_command"]
