"""Discrete-event serving simulation (`llmsim serve`): workloads, the engine and metrics."""
