"""Model registry: ``@register_model`` on a factory, ``create_model(name, ...)``, ``list_models()``.

``create_model(..., pretrained=PATH)`` loads a local ``.safetensors`` / ``.pth`` / ``.pt`` state dict. Each
model class names its first conv and classifier in a ``pretrained_cfg`` dict (as timm does) so that one loader
adapts weights for any of them: the first conv's RGB kernels are summed for 1-channel input, and the
classifier is left at its fresh init when its shape differs from the file's (``num_classes`` != the file's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from pepx.checks import check_kwargs
from pepx.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module], name: str | None = None) -> Callable[..., nn.Module]:
    """Register a factory or a model class, taking ``num_classes``, ``in_chans`` and ``width`` and naming
    every other argument (no ``**kwargs``), under ``name`` (default: its ``__name__``); also a decorator."""
    name = name or fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = fn
    return fn


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The registered factory or class of ``name`` (its signature lists the model's arguments)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose from {list_models()}")
    return _REGISTRY[name]


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
