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
from .registry import create_model, list_models, load_pretrained, model_factory, register_model
from .resnet import ResNet
from .summary import count_flops, count_params, summary_rows

__all__ = [
    "COVIDNet",
    "PEPX",
    "PEPXResNet",
    "PEPXResNetBlock",
    "ResNet",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "load_pretrained",
    "model_factory",
    "register_model",
    "residual_scalars",
    "summary_rows",
]
