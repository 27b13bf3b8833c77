r"""PEPX-ResNet (paper §3.1-3.2): a ResNet-like backbone plus a PEPX network feeding it, one direction only.

Block (§3.2), with learned scalars A, B, C::

    Y = F[F1(x) + x] + A*F1(x) + B*x + C*PEPX(X)            out = ReLU(Y)

* ``F1`` = the block's first two 3x3 convs (conv-BN-ReLU, conv-BN); the block's stride sits in F1's first
  conv.
* ``x`` is the block input; where the block changes width or stride it is replaced by ``proj(x)`` (1x1 conv
  with the stride + BN) everywhere it is added (in ``F1(x) + x`` and in ``B*x``).
* ``F`` = the last two 3x3 convs (conv-BN-ReLU, conv-BN), applied to ``ReLU(F1(x) + x)`` - the post-add ReLU
  of a ResNet basic block.
* ``A = B = C = 1`` at init: with A = B = 1 the block starts as two stacked ResNet basic blocks
  (``F(h) + F1(x) + x`` with ``h = ReLU(F1(x) + x)``), and C = 1 lets the PEPX path contribute and receive
  gradient from the first step. ``abc_init`` overrides the three values.
* A ReLU follows ``Y`` (ResNet style), so blocks chain like ResNet blocks.

Network (§3.1, our reading of the missing Fig. 1), ``pepx_input="stream"`` (default)::

    image -> stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) = s
                |                                                   (PEPX stream, never reads the backbone)
                +--> p1 = PEPX1(s)  --> p2 = PEPX2(p1) --> p3 = PEPX3(p2) --> p4 = PEPX4(p3)
                |       | C                 | C                 | C                 | C
                v       v                   v                   v                   v
                s --> [stage 1] ------> [stage 2] ------> [stage 3] ------> [stage 4] --> avg-pool --> fc

``PEPX_k`` has stage k's stride (1, 2, 2, 2) and width (64, 128, 256, 512 times ``width``), so ``p_k`` has the
shape of stage k's output. ``p_k`` enters every block of stage k through ``C*PEPX(X)`` (with ``depths > 1``
the later blocks receive the same ``p_k``; they have stride 1 and the stage width, so shapes agree). Data
flows only from the PEPX network into the convolution blocks: the "combination of two networks" of §3.1, added
with learned weights.

``pepx_input="block"``: the other reading - each block owns a PEPX applied to its own input ``x`` (with the
block's stride and output width).

``depths=(1, 1, 1, 1)`` by default: one block = four 3x3 convs a stage, as ResNet18's two basic blocks.
``pepx_depthwise=False`` (the paper's full 3x3 conv inside PEPX).

Ablation switches (`pepx reproduce --ablations` tests each against the default):

* ``learn_abc=False``: A, B, C are fixed at ``abc_init`` (buffers, not parameters: the optimiser never sees
  them, and the state-dict keys ``layerK.0.A`` ... stay the same).
* ``use_pepx=False``: no PEPX path at all (C = 0): no stream, no per-block PEPX, no ``C``; each block is
  ``Y = F[F1(x) + x] + A*F1(x) + B*x`` - the bare backbone.

The block's sums are written as the equation reads. Fused ``torch.addcmul`` sums (bit-identical) and in-place
sums were measured against them on an idle 2-core CPU and did not win (`benchmarks/models.py --compare`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .layers import conv_bn_act, init_weights, projection, resnet_stem, scaled
from .pepx import PEPX
from .registry import register_model


class PEPXResNetBlock(nn.Module):
    """``Y = F[F1(x) + x] + A*F1(x) + B*x + C*PEPX(X)``, ``out = ReLU(Y)`` (see module docstring)."""

    def __init__(
        self,
        in_chans: int,
        out_ch: int,
        stride: int = 1,
        own_pepx: bool = False,
        pepx_depthwise: bool = False,
        abc_init: tuple[float, float, float] = (1.0, 1.0, 1.0),
        learn_abc: bool = True,
        use_pepx: bool = True,
    ) -> None:
        super().__init__()
        self.f1 = nn.Sequential(
            conv_bn_act(in_chans, out_ch, 3, stride), conv_bn_act(out_ch, out_ch, 3, act=False)
        )
        self.f = nn.Sequential(conv_bn_act(out_ch, out_ch, 3), conv_bn_act(out_ch, out_ch, 3, act=False))
        self.shortcut = projection(in_chans, out_ch, stride)
        self.use_pepx = use_pepx
        own = own_pepx and use_pepx
        self.pepx = PEPX(in_chans, out_ch, stride, depthwise=pepx_depthwise) if own else None
        a, b, c = abc_init
        for name, value in (("A", a), ("B", b), ("C", c))[: 3 if use_pepx else 2]:
            scalar = torch.tensor(float(value))
            if learn_abc:
                setattr(self, name, nn.Parameter(scalar))
            else:
                self.register_buffer(name, scalar)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, p: Tensor | None = None) -> Tensor:
        """``p``: the stream's PEPX output for this stage; ``None`` if the block owns a PEPX or has none."""
        if self.pepx is not None:
            p = self.pepx(x)
        elif p is None and self.use_pepx:
            raise ValueError("this block has no PEPX of its own: pass the stream's output p")
        f1 = self.f1(x)
        sx = self.shortcut(x)
        y = self.f(torch.relu(f1 + sx)) + self.A * f1 + self.B * sx
        if self.use_pepx:
            y = y + self.C * p
        return self.relu(y)


class PEPXResNet(nn.Module):
    """Stem, four stages of :class:`PEPXResNetBlock`, PEPX stream (or per-block PEPX), avg-pool, ``fc``.

    Args:
        num_classes: outputs of the classifier ``fc``.
        in_chans: input channels (1 for grey radiographs).
        width: channel multiplier of every layer (stage widths 64, 128, 256, 512 times ``width``).
        depths: PEPX-ResNet blocks per stage (four integers >= 1; one block = four 3x3 convs).
        pepx_input: ``"stream"``: a separate PEPX network fed by the stem, stage k's PEPX output entering
            stage k's blocks (our reading of the paper's Fig. 1); ``"block"``: each block owns a PEPX on its
            own input.
        pepx_depthwise: depthwise 3x3 inside PEPX (COVID-Net's) instead of the paper's full 3x3.
        abc_init: initial values of every block's learned scalars A, B, C.
        learn_abc: learn A, B, C (default) or keep them fixed at ``abc_init`` (ablation "A, B, C frozen").
        use_pepx: ``False`` removes the PEPX path and C altogether (ablation "C = 0": the bare backbone).
    """

    pretrained_cfg = {"first_conv": "conv1", "classifier": "fc"}

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 1,
        width: float = 1.0,
        depths: tuple[int, ...] = (1, 1, 1, 1),
        pepx_input: Literal["stream", "block"] = "stream",
        pepx_depthwise: bool = False,
        abc_init: tuple[float, float, float] = (1.0, 1.0, 1.0),
        learn_abc: bool = True,
        use_pepx: bool = True,
    ) -> None:
        super().__init__()
        if pepx_input not in ("stream", "block"):
            raise ValueError(f"pepx_input must be 'stream' or 'block', got {pepx_input!r}")
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError(f"depths must be four integers >= 1, got {depths}")
        self.pepx_input = pepx_input
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1, self.bn1, self.relu, self.maxpool = resnet_stem(in_chans, widths[0])
        own = pepx_input == "block"
        prev = widths[0]
        stream = []
        kw = dict(own_pepx=own, pepx_depthwise=pepx_depthwise, abc_init=abc_init, learn_abc=learn_abc,
                  use_pepx=use_pepx)
        for i, (n, w) in enumerate(zip(depths, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [PEPXResNetBlock(prev, w, stride, **kw)]
            blocks += [PEPXResNetBlock(w, w, 1, **kw) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.ModuleList(blocks))
            stream.append(PEPX(prev, w, stride, depthwise=pepx_depthwise))
            prev = w
        self.pepx_stream = None if own or not use_pepx else nn.ModuleList(stream)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        self.num_features = prev
        init_weights(self)

    def stages(self) -> list[nn.ModuleList]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        p: Tensor | None = x
        for k, stage in enumerate(self.stages()):
            if self.pepx_stream is not None:
                p = self.pepx_stream[k](p)  # p_k = PEPX_k(p_{k-1}), p_0 = stem output
            for block in stage:
                x = block(x, p if self.pepx_stream is not None else None)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features [N, num_features] (``pre_logits``) or logits of the last stage's map ``x``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


register_model(PEPXResNet, name="pepx_resnet", display="PEPX-ResNet", color="C3", order=0,
               stages=("layer1", "layer2", "layer3", "layer4"))


def residual_scalars(model: nn.Module) -> dict[str, float]:
    """Every PEPX-ResNet block's learned A, B, C as ``{"layer1.0.A": ..., ...}``; ``{}`` for other models."""
    out: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, PEPXResNetBlock):
            name = name.removeprefix("_orig_mod.")  # torch.compile wrapper
            for s in ("A", "B", "C") if module.use_pepx else ("A", "B"):
                out[f"{name}.{s}"] = float(getattr(module, s).detach())
    return out
