"""Losses: cross-entropy and the softmax focal loss of the paper (§3.4, Lin et al. 2017).

``FL = -alpha_t * (1 - p_t)^gamma * log p_t``, ``p_t`` the softmax probability of the true class, computed
from ``log_softmax`` so that huge logits stay finite. ``alpha`` is a scalar or a per-class tensor (``alpha_t =
alpha[target]``). The paper uses ``alpha = 1, gamma = 1``.

``label_smoothing = eps`` spreads the target as cross-entropy does (``q = (1 - eps) * onehot + eps / C``) and
sums the focal term over classes: ``FL = -alpha_t * sum_k q_k (1 - p_k)^gamma log p_k``; at ``eps = 0``
this is the formula above.

Hand-written on purpose: MONAI's ``FocalLoss`` applies ``alpha`` the binary (sigmoid) way, weighting class 0
by ``1 - alpha`` and the others by ``alpha``, so ``alpha=1`` there zeroes class 0's weight instead of being
the paper's neutral value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pepx.checks import check_kwargs
from pepx.errors import ConfigError


class FocalLoss(nn.Module):
    """Softmax focal loss on ``(logits [N, C], target [N] long)``.

    Args:
        gamma: focusing exponent (>= 0); 0 gives cross-entropy (times ``alpha``). The paper uses 1.
        alpha: class weight: a scalar for every class, or one weight per class (``alpha_t = alpha[target]``).
            The paper uses 1.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one loss per sample).
        label_smoothing: ``eps`` in [0, 1): the target becomes ``(1 - eps) * onehot + eps / C`` and the loss
            ``-sum_c q_c * (1 - p_c)^gamma * log p_c`` (0 = the paper's loss).
    """

    def __init__(
        self,
        gamma: float = 1.0,
        alpha: float | Sequence[float] | Tensor = 1.0,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if gamma < 0:
            raise ConfigError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.reduction = reduction
        if isinstance(alpha, (int, float)):
            self.alpha_scalar: float | None = float(alpha)
            self.register_buffer("alpha", None)
        else:
            self.alpha_scalar = None
            self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32).flatten())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        if self.label_smoothing:
            eps, n = self.label_smoothing, logp.shape[1]
            q = torch.full_like(logp, eps / n).scatter_(1, target.long().unsqueeze(1), 1.0 - eps + eps / n)
            loss = -(q * torch.pow((1.0 - logp.exp()).clamp(min=0.0), self.gamma) * logp).sum(dim=1)
        else:
            logp_t = logp.gather(1, target.long().unsqueeze(1)).squeeze(1)
            # (1 - p_t)^0 must be 1 even where p_t == 1; torch.pow(0., 0.) == 1 already.
            loss = -torch.pow((1.0 - logp_t.exp()).clamp(min=0.0), self.gamma) * logp_t
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[target]
        elif self.alpha_scalar != 1.0:
            loss = loss * self.alpha_scalar
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        alpha = self.alpha_scalar if self.alpha is None else self.alpha.tolist()
        return (f"gamma={self.gamma}, alpha={alpha}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}")


#: Loss names and their classes; ``create_loss``'s keyword arguments are the class's constructor arguments.
LOSSES: dict[str, type[nn.Module]] = {"ce": nn.CrossEntropyLoss, "focal": FocalLoss}


def create_loss(name: str, **kwargs) -> nn.Module:
    """``"ce"`` -> ``nn.CrossEntropyLoss(**kwargs)`` (``weight``, ``label_smoothing``, ``reduction``, ...);
    ``"focal"`` -> :class:`FocalLoss` (``gamma``, ``alpha``, ``reduction``, ``label_smoothing``).

    Raises `pepx.errors.ConfigError` (a `ValueError`) for an unknown name or an argument the class does not
    take, naming the ones it does.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    check_kwargs(LOSSES[name], kwargs, "loss_kwargs", owner=f"loss {name}")
    return LOSSES[name](**kwargs)
