"""PEPX: the projection-expansion-projection-extension module (paper §3.3; COVID-Net, Wang et al. 2020).

Five convolutions, in the paper's order::

    x [C_in] --1x1--> [P]  projection to fewer channels    P = round(proj_ratio   * C_in), default C_in/2
             --1x1--> [E]  expansion to more channels       E = round(expand_ratio * C_in), default 3/4 C_in
             --3x3--> [E]  spatial features, stride s       full conv (groups=1) or depthwise (groups=E)
             --1x1--> [P]  projection back to the width of step 1
             --1x1--> [C_out]  extension to the output width

Ratios are taken relative to the *input* width, as in COVID-Net (step 1 must have fewer channels than the
input); every width is rounded to a multiple of 4 and kept >= 8, and E is forced above P. BatchNorm + ReLU
follow each of the first four convs; the last conv gets BatchNorm only, so that the module's output is a
linear term that the caller adds (``C * PEPX(X)`` in PEPX-ResNet, the dense sums in COVID-Net). The stride
sits in the 3x3 conv.

``depthwise=False`` (default) is the paper's choice: a full 3x3 conv mixes channels at each location, which a
depthwise conv cannot. ``depthwise=True`` is COVID-Net's.
"""

from __future__ import annotations

from torch import Tensor, nn

from .layers import conv_bn_act, make_divisible


class PEPX(nn.Module):
    """Projection -> expansion -> 3x3 -> projection -> extension; output is BN-ed, not activated."""

    def __init__(
        self,
        in_chans: int,
        out_ch: int,
        stride: int = 1,
        depthwise: bool = False,
        proj_ratio: float = 0.5,
        expand_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        proj = make_divisible(in_chans * proj_ratio, 4, min_value=8)
        expand = make_divisible(in_chans * expand_ratio, 4, min_value=8)
        if expand <= proj:
            expand = proj + 4
        self.in_chans, self.out_ch, self.proj_ch, self.expand_ch = in_chans, out_ch, proj, expand
        self.project1 = conv_bn_act(in_chans, proj, 1)
        self.expand = conv_bn_act(proj, expand, 1)
        self.conv3x3 = conv_bn_act(expand, expand, 3, stride, groups=expand if depthwise else 1)
        self.project2 = conv_bn_act(expand, proj, 1)
        self.extend = conv_bn_act(proj, out_ch, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.extend(self.project2(self.conv3x3(self.expand(self.project1(x)))))
