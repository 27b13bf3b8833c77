"""What the gate measures inside the network: each stage's output map pooled over space, taken in the same
forward pass as the logits (forward hooks; nothing is computed twice).

A stage's map [N, C, h, w] becomes its spatial mean [N, C] (Lee et al. 2018 pool the same way); the last
stage's mean is the network's penultimate feature vector (`forward_head(x, pre_logits=True)`), which a test
checks. Hooks write into thread-local storage, so one network may serve several threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import nn

from pepx.errors import ConfigError
from pepx.models.registry import info_of
from pepx.serving.gradcam import resolve_layer


def stage_names(model: nn.Module) -> tuple[str, ...]:
    """The names of `model`'s stages, first to last, as its registration declares them."""
    info = info_of(model)
    if info is None or not info.stages:
        raise ConfigError(f"{type(model).__name__} registers no stages: the gate cannot read its features")
    return info.stages


class FeatureTap:
    """Forward hooks on `layers` of `model` that keep each one's spatially pooled output.

    `tap(x)` runs the network once and returns `(logits [N, K], {layer: features [N, C]})`.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        self.model, self.layers = model, tuple(layers)
        self._local = threading.local()
        self._handles = [resolve_layer(model, name).register_forward_hook(self._hook(name))
                         for name in self.layers]

    def _hook(self, name: str):
        def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            store = getattr(self._local, "store", None)
            if store is not None:
                store[name] = output.float().mean(dim=(2, 3))
        return keep

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._local.store = {}
        try:
            with torch.inference_mode():
                logits = self.model(x).float()
            return logits, dict(self._local.store)
        finally:
            self._local.store = None

    def remove(self) -> None:
        """Take the hooks off the network."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


__all__ = ["FeatureTap", "stage_names"]
