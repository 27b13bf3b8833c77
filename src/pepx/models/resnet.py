"""ResNet18 (He et al. 2016), state-dict compatible with torchvision's ``resnet18``.

Same module names as torchvision (``conv1``, ``bn1``, ``layer1..4`` of ``BasicBlock`` with
``conv1/bn1/conv2/bn2`` and ``downsample.0/.1``, ``fc``), so ImageNet weights downloaded for torchvision load
with ``create_model("resnet18", pretrained="resnet18.pth")`` (see :mod:`pepx.models.registry`). ``width``
scales the channels (64-128-256-512); only ``width=1`` matches torchvision's shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import init_weights, resnet_stem, scaled
from .registry import register_model


def conv3x3(in_chans: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_ch, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """``y = ReLU(BN(conv(ReLU(BN(conv(x))))) + downsample(x))``; stride in ``conv1`` (ResNet v1.5)."""

    def __init__(self, in_chans: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chans, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chans != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chans, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with BasicBlocks: stem, four stages (strides 1, 2, 2, 2), global average pool, linear ``fc``.

    Args:
        depths: BasicBlocks per stage ((2, 2, 2, 2) is ResNet18).
        num_classes: outputs of the classifier ``fc``.
        in_chans: input channels (1 for grey radiographs).
        width: channel multiplier (64, 128, 256, 512 times ``width``; only 1.0 matches torchvision's shapes).
    """

    pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}

    def __init__(
        self,
        depths: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 3,
        in_chans: int = 1,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1, self.bn1, self.relu, self.maxpool = resnet_stem(in_chans, widths[0])
        prev = widths[0]
        for i, (n, w) in enumerate(zip(depths, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(prev, w, stride)] + [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            prev = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        self.num_features = prev
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features [N, num_features] (``pre_logits``) or logits of the last stage's map ``x``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(display="ResNet18", color="C0", order=1, stages=("layer1", "layer2", "layer3", "layer4"))
def resnet18(*, num_classes: int = 3, in_chans: int = 1, width: float = 1.0) -> ResNet:
    """ResNet18: two BasicBlocks per stage, 11.7 M parameters at width 1 with 1000 classes."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans, width=width)
