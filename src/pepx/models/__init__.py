"""pepx.models: PEPX-ResNet, ResNet18 and COVID-Net behind one registry.

>>> from pepx.models import create_model, list_models, residual_scalars
>>> model = create_model("pepx_resnet", num_classes=3, in_chans=1, width=0.5)
"""

from . import covidnet as _covidnet  # noqa: F401  (registers "covidnet")
from . import pepx_resnet as _pepx_resnet  # noqa: F401  (registers "pepx_resnet")
from . import resnet as _resnet  # noqa: F401  (registers "resnet18")
from .covidnet import COVIDNet
from .pepx import PEPX
from .pepx_resnet import PEPXResNet, PEPXResNetBlock, residual_scalars
from .registry import (
    ModelInfo,
    create_model,
    display_name,
    info_of,
    list_models,
    load_pretrained,
    model_factory,
    model_info,
    model_infos,
    register_model,
    registered_info,
    unregister_model,
)
from .resnet import ResNet
from .summary import count_flops, count_params, summary_rows

__all__ = [
    "COVIDNet",
    "ModelInfo",
    "PEPX",
    "PEPXResNet",
    "PEPXResNetBlock",
    "ResNet",
    "count_flops",
    "count_params",
    "create_model",
    "display_name",
    "info_of",
    "list_models",
    "load_pretrained",
    "model_factory",
    "model_info",
    "model_infos",
    "register_model",
    "registered_info",
    "residual_scalars",
    "summary_rows",
    "unregister_model",
]
