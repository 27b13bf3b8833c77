"""Small building blocks shared by every pepx model (no copy-pasted twins)."""

from __future__ import annotations

from torch import nn

from pepx.checks import MAX_WIDTH


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (at least ``min_value``, default ``divisor``).

    As in timm / MobileNet: never round down by more than 10 %, so small width multipliers keep their
    capacity.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded by :func:`make_divisible` (>= 8 channels)."""
    if not 0 < width <= MAX_WIDTH:  # also refuses nan and inf
        raise ValueError(f"width must be > 0 and <= {MAX_WIDTH:g}, got {width}")
    return make_divisible(channels * width, divisor)


def conv_bn_act(
    in_chans: int,
    out_ch: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """``Conv2d(bias=False) -> BatchNorm2d -> ReLU`` (ReLU omitted when ``act=False``), 'same' padding."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_chans, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def projection(in_chans: int, out_ch: int, stride: int = 1) -> nn.Module:
    """Shortcut that matches width and stride: 1x1 conv (stride) + BN, or identity when nothing changes."""
    if in_chans == out_ch and stride == 1:
        return nn.Identity()
    return conv_bn_act(in_chans, out_ch, 1, stride, act=False)


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet init: Kaiming-normal (fan_out) convs, BN weight 1 / bias 0, default Linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet_stem(in_chans: int, out_ch: int) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]:
    """ResNet stem parts (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), separate for torchvision's names."""
    return (
        nn.Conv2d(in_chans, out_ch, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
