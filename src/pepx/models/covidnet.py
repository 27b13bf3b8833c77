r"""COVID-Net (Wang, Lin & Wong, Sci Rep 2020, Fig. 2): stages of depthwise PEPX modules, densely connected.

::

    image -> 7x7/2 conv, BN, ReLU, 3x3/2 max-pool -> t_0
    stage s (s = 1..4, n_s = 3, 4, 6, 3 PEPX modules, stride 1, 2, 2, 2, width c_s):
        r   = proj_s(t_{s-1})                    1x1 conv (+ stride) + BN where width/stride differ, else id
        o_1 = PEPX_s1(t_{s-1})                   the stage's stride sits in o_1's 3x3 conv
        o_j = PEPX_sj(ReLU(r + o_1 + ... + o_{j-1}))     j = 2..n_s: every earlier output of the stage
        t_s = ReLU(r + o_1 + ... + o_{n_s})      stage output (all of its outputs, every one exactly once)
    head "avg":     global avg-pool -> FC 1024 -> ReLU -> FC 256 -> ReLU -> FC num_classes
    head "flatten": the published head: flatten the (img_size/32)^2 x c_4 map -> the same FC layers

The dense long-range connections are the sums: each PEPX in a stage reads the sum of the stage's shortcut
``r`` and the outputs of *all* earlier PEPX of the stage, and the next stage reads the sum of all of them. The
public PyTorch ports feed stage 3's second module twice and drop its third when building stage 4's input; here
the sums are built in one loop, so each output enters each later sum exactly once. PEPX outputs are BN-ed, not
activated (see :mod:`pepx.models.pepx`); the ReLU sits on each sum before a module reads it.

Initialisation: summing BN-ed outputs densely multiplies the gradient paths (2^n within a stage of n modules);
with unit BN scales the gradient reaching stage 1 was ~500x (relative to weights) that reaching stage 4 and
the net did not fit a 12-image batch in 12 SGD steps. ``zero_init_last=True`` (default) zeroes the BN scale of
each PEPX's last conv, so every stage starts as its shortcut (as torchvision's ``zero_init_residual``;
Goyal et al. 2017); the hidden FC layers get Kaiming init.

Variants (stage widths ``c_1..c_4``, stem 64): "small" (160, 320, 640, 1280, the default) and "large"
(200, 400, 800, 1600) were chosen so that the MACs at 224x224 match the published COVIDNet-CXR Small / Large
(2.26 / 3.59 G); the published graphs' exact widths are not public as code. See docs/models.md for parameter
and MAC counts beside the published ones. ``widths`` overrides a variant; ``width`` multiplies it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .layers import init_weights, projection, resnet_stem, scaled
from .pepx import PEPX
from .registry import register_model

VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "small": (160, 320, 640, 1280),
    "large": (200, 400, 800, 1600),
}
DEPTHS = (3, 4, 6, 3)


class DenseStage(nn.Module):
    """One COVID-Net stage: ``n`` PEPX modules, each reading the sum of all earlier outputs of the stage."""

    def __init__(self, in_chans: int, out_ch: int, n: int, stride: int, depthwise: bool = True) -> None:
        super().__init__()
        self.proj = projection(in_chans, out_ch, stride)
        self.blocks = nn.ModuleList(
            [PEPX(in_chans, out_ch, stride, depthwise)]
            + [PEPX(out_ch, out_ch, 1, depthwise) for _ in range(n - 1)]
        )

    def forward(self, x: Tensor) -> Tensor:
        acc = self.proj(x)
        for j, block in enumerate(self.blocks):
            acc = acc + block(x if j == 0 else torch.relu(acc))
        return torch.relu(acc)


class COVIDNet(nn.Module):
    """Stem, four :class:`DenseStage` (3, 4, 6, 3 depthwise PEPX), MLP head (avg-pool or flatten).

    Args:
        num_classes: outputs of the classifier ``fc``.
        in_chans: input channels (1 for grey radiographs).
        width: channel multiplier of every layer (stem, stages and the hidden FC layers).
        variant: stage widths ``"small"`` (160, 320, 640, 1280) or ``"large"`` (200, 400, 800, 1600).
        widths: four stage widths overriding ``variant``.
        head: ``"avg"`` (global average pool, then the FC layers) or ``"flatten"`` (the published head).
        img_size: input size the ``"flatten"`` head is built for (its map is pooled to ``img_size // 32``).
        depthwise: depthwise 3x3 inside PEPX (COVID-Net's); False gives the full 3x3 conv.
        zero_init_last: zero the BN scale of each PEPX's last conv so every stage starts as its shortcut.
    """

    pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 1,
        width: float = 1.0,
        variant: Literal["small", "large"] = "small",
        widths: tuple[int, int, int, int] | None = None,
        head: Literal["avg", "flatten"] = "avg",
        img_size: int = 224,
        depthwise: bool = True,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if head not in ("avg", "flatten"):
            raise ValueError(f"head must be 'avg' or 'flatten', got {head!r}")
        chans = [scaled(c, width) for c in (widths or VARIANTS[variant])]
        stem = scaled(64, width)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet_stem(in_chans, stem)
        prev = stem
        for i, (n, c) in enumerate(zip(DEPTHS, chans, strict=True)):
            setattr(self, f"stage{i + 1}", DenseStage(prev, c, n, 1 if i == 0 else 2, depthwise))
            prev = c
        if head == "avg":
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
            feat = prev
        else:  # published head: flatten the final (img_size/32)^2 map (pooled to that size for other inputs)
            side = max(1, img_size // 32)
            self.pool = nn.AdaptiveAvgPool2d(side)
            feat = prev * side * side
        hidden1, hidden2 = scaled(1024, width), scaled(256, width)
        self.fc1 = nn.Sequential(nn.Linear(feat, hidden1), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Linear(hidden1, hidden2), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden2, num_classes)
        self.num_features = prev
        init_weights(self)
        for m in (self.fc1[0], self.fc2[0]):  # ReLU MLP: Kaiming keeps the logits' scale through two layers
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        if zero_init_last:  # every stage starts as its shortcut: see the module docstring
            for m in self.modules():
                if isinstance(m, PEPX):
                    nn.init.zeros_(m.extend[1].weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.stage4(self.stage3(self.stage2(self.stage1(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """The MLP's last hidden layer [N, 256 x width] (``pre_logits``) or logits of the map ``x``."""
        x = self.fc2(self.fc1(torch.flatten(self.pool(x), 1)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


register_model(COVIDNet, name="covidnet", display="COVID-Net", color="C2", order=2,
               stages=("stage1", "stage2", "stage3", "stage4"))
