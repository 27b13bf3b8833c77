"""Model registry: ``register_model`` on a factory with the network's facts, ``create_model(name, ...)``,
``list_models()``, ``model_info(name)``.

A network is one file plus its registration, which declares once what the rest of pepx knows about it
(`ModelInfo`): the name reports and figures print, its curves' colour, its stages (the input gate reads
them) and its Grad-CAM target layer (default: the last stage). Figures, tables, comparisons, the grid's
model list, ``pepx models`` and Grad-CAM read them here.

``create_model(..., pretrained=PATH)`` loads a local ``.safetensors`` / ``.pth`` / ``.pt`` state dict. Each
model class names its first conv and classifier in a ``pretrained_cfg`` dict (as timm does) so that one loader
adapts weights for any of them: the first conv's RGB kernels are summed for 1-channel input, and the
classifier is left at its fresh init when its shape differs from the file's (``num_classes`` != the file's).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from pepx.checks import check_kwargs
from pepx.errors import ConfigError

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What pepx knows about one registered network.

    Args:
        name: the registry name (``create_model(name)``, run folders, tables' ``model`` column).
        factory: the class or function that builds it.
        display: the name figures, tables and reports print (default: ``name``).
        color: a matplotlib colour of its curves (None: the colour cycle's next).
        stages: its stages' module names, first to last (the input gate pools their outputs).
        cam_layer: the Grad-CAM target: a module name, or a callable taking the model and returning one
            (None: the last stage).
        order: its place in the grid, tables and figures (lower first; ties: the order registered).
    """

    name: str
    factory: Factory
    display: str
    color: str | None = None
    stages: tuple[str, ...] = ()
    cam_layer: str | Callable[[nn.Module], str] | None = None
    order: int = 100

    @property
    def model_class(self) -> type | None:
        """The class the factory builds: the factory itself, or a function's return annotation."""
        if isinstance(self.factory, type):
            return self.factory
        returned = typing.get_type_hints(self.factory).get("return")
        return returned if isinstance(returned, type) else None

    @property
    def default_width(self) -> float:
        """The factory's default ``width`` (channel multiplier)."""
        return inspect.signature(self.factory).parameters["width"].default

    def target_layer(self, model: nn.Module) -> str | None:
        """The Grad-CAM target layer's name in ``model`` (None when neither it nor stages are declared)."""
        layer = self.cam_layer if self.cam_layer is not None else (self.stages[-1] if self.stages else None)
        return layer(model) if callable(layer) else layer


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(fn: Factory | None = None, name: str | None = None, *, display: str | None = None,
                   color: str | None = None, stages: tuple[str, ...] = (),
                   cam_layer: str | Callable[[nn.Module], str] | None = None, order: int = 100):
    """Register a factory or a model class, taking ``num_classes``, ``in_chans`` and ``width`` and naming
    every other argument (no ``**kwargs``), under ``name`` (default: its ``__name__``) with its facts (see
    `ModelInfo`). Also a decorator, bare or with arguments:
    ``@register_model(name="tiny", display="Tiny")``."""
    if fn is None:
        return lambda f: register_model(f, name, display=display, color=color, stages=stages,
                                        cam_layer=cam_layer, order=order)
    name = name or fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = ModelInfo(name, fn, display or name, color, tuple(stages), cam_layer, order)
    return fn


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a network of their own)."""
    _REGISTRY.pop(name, None)


def model_info(name: str) -> ModelInfo:
    """The facts of registered model ``name``; `ConfigError` for an unknown name."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose from {list_models()}")
    return _REGISTRY[name]


def model_infos() -> tuple[ModelInfo, ...]:
    """Every registered network's facts, by `ModelInfo.order` (the grid's, tables' and figures' order)."""
    return tuple(sorted(_REGISTRY.values(), key=lambda i: i.order))


def info_of(model: nn.Module) -> ModelInfo | None:
    """The facts of the first registered network whose factory builds ``model``'s class (None: none)."""
    return next((i for i in _REGISTRY.values() if i.model_class is type(model)), None)


def registered_info(name: str) -> ModelInfo | None:
    """The facts of model ``name``, or None when it is not registered (e.g. a removed network's old runs)."""
    return _REGISTRY.get(name)


def display_name(name: str) -> str:
    """How reports name model ``name`` (a name not registered: itself)."""
    info = _REGISTRY.get(name)
    return info.display if info else name


def model_factory(name: str) -> Factory:
    """The registered factory or class of ``name`` (its signature lists the model's arguments)."""
    return model_info(name).factory


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str,
    *,
    num_classes: int = 3,
    in_chans: int = 1,
    pretrained: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """Build model ``name``; ``kwargs`` are its factory's arguments (every model takes ``width``, the channel
    multiplier, default 1.0; see each model class's ``Args``).

    ``pretrained``: a local state-dict file (``.safetensors``, ``.pth``, ``.pt``); see the module docstring.
    Raises `pepx.errors.ConfigError` (a `ValueError`) for an unknown name, an unknown argument or a value
    of the wrong type, naming it.
    """
    factory = model_factory(name)
    check_kwargs(factory, kwargs, "model_kwargs", reserved=("num_classes", "in_chans"), owner=f"model {name}")
    model = factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or torch-pickle file, minus ``__`` keys, ``module.``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("__")}


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly, adapting the first conv's input channels and the classifier."""
    state = read_state_dict(path)
    cfg = getattr(model, "pretrained_cfg", {})
    own = model.state_dict()
    first = cfg.get("first_conv")
    if first:
        key = f"{first}.weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            w = state[key]
            if own[key].shape[1] == 1:
                state[key] = w.sum(dim=1, keepdim=True)  # grey = R = G = B: summing the kernels is exact
            elif w.shape[1] == 1:
                state[key] = w.repeat(1, own[key].shape[1], 1, 1) / own[key].shape[1]
            else:
                raise ValueError(f"cannot adapt {key} from {tuple(w.shape)} to {tuple(own[key].shape)}")
    classifier = cfg.get("classifier")
    if classifier:
        keys = [k for k in state if k.startswith(classifier + ".")]
        if any(k in own and state[k].shape != own[k].shape for k in keys):
            for k in keys:  # new head: keep the fresh init
                state[k] = own[k]
    model.load_state_dict(state, strict=True)
    return model
