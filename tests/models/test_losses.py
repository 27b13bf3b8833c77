"""pepx.losses: the softmax focal loss against cross-entropy and against numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pepx.losses import FocalLoss, create_loss

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.5, -1.0, 3.0]])
TARGET = torch.tensor([0, 1])


def _by_hand(gamma: float, alphas=(1.0, 1.0)) -> list[float]:
    # sample 0: true class logit 2 of (2, 1, 0); sample 1: true class logit -1 of (0.5, -1, 3)
    p0 = math.exp(2.0) / (math.exp(2.0) + math.exp(1.0) + math.exp(0.0))
    p1 = math.exp(-1.0) / (math.exp(0.5) + math.exp(-1.0) + math.exp(3.0))
    return [-a * (1 - p) ** gamma * math.log(p) for p, a in zip((p0, p1), alphas, strict=True)]


def test_gamma0_alpha1_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 3), torch.randint(0, 3, (16,))
    ce = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(FocalLoss(gamma=0.0, alpha=1.0)(logits, target), ce.mean())
    torch.testing.assert_close(FocalLoss(gamma=0.0, reduction="none")(logits, target), ce)


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_matches_hand_computed_values(gamma):
    expected = _by_hand(gamma)
    if gamma == 1.0:  # p0 = 0.66524, p1 = 0.01052: the well-classified sample is down-weighted 3x
        assert expected[0] == pytest.approx(0.33476 * 0.40761, rel=1e-4)
    loss = FocalLoss(gamma=gamma, reduction="none")(LOGITS, TARGET)
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)
    assert FocalLoss(gamma=gamma)(LOGITS, TARGET).item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    total = FocalLoss(gamma=gamma, reduction="sum")(LOGITS, TARGET).item()
    assert total == pytest.approx(sum(expected), rel=1e-5)


def test_scalar_and_per_class_alpha():
    scalar = FocalLoss(gamma=2.0, alpha=0.25, reduction="none")(LOGITS, TARGET)
    assert scalar.tolist() == pytest.approx(_by_hand(2.0, (0.25, 0.25)), rel=1e-5)
    per_class = FocalLoss(gamma=1.0, alpha=[0.2, 0.5, 3.0], reduction="none")(LOGITS, TARGET)
    assert per_class.tolist() == pytest.approx(_by_hand(1.0, (0.2, 0.5)), rel=1e-5)  # alpha_t = alpha[target]
    # unlike MONAI's binary alpha, alpha=1 leaves class 0 at full weight
    assert FocalLoss(alpha=1.0, reduction="none")(LOGITS, TARGET)[0] > 0


def test_large_logits_stay_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [3e4, 3e4, -3e4]], requires_grad=True)
    target = torch.tensor([1, 0])
    loss = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == pytest.approx(2e4, rel=1e-6)  # p_t ~ e^-20000: (1-p_t)^2 = 1, -log p_t = 2e4
    assert loss[1].item() == pytest.approx(0.25 * math.log(2), rel=1e-5)  # p_t = 1/2
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    confident = FocalLoss(gamma=1.0)(torch.tensor([[200.0, 0.0, 0.0]]), torch.tensor([0]))
    assert confident.item() == 0.0


def test_create_loss():
    assert isinstance(create_loss("ce"), nn.CrossEntropyLoss)
    focal = create_loss("focal", gamma=2.0, alpha=[1.0, 1.0, 2.0])
    assert isinstance(focal, FocalLoss) and focal.gamma == 2.0
    assert focal(LOGITS, TARGET).ndim == 0
    with pytest.raises(ValueError):
        create_loss("dice")
    with pytest.raises(ValueError):
        FocalLoss(reduction="max")


def test_per_class_alpha_follows_the_device_and_state_dict():
    loss = FocalLoss(alpha=[1.0, 2.0, 3.0])
    assert "alpha" in loss.state_dict()
    assert loss.to(torch.float64).alpha is not None


def test_label_smoothing_gamma0_is_cross_entropys_and_gamma1_matches_by_hand():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 3), torch.randint(0, 3, (16,))
    ce = F.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(FocalLoss(gamma=0.0, label_smoothing=0.1)(logits, target), ce)
    # sample 0 by hand at gamma 1, eps 0.3: q = (0.8, 0.1, 0.1)
    z = [2.0, 1.0, 0.0]
    p = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
    expected = -sum(q * (1 - pk) * math.log(pk) for q, pk in zip((0.8, 0.1, 0.1), p, strict=True))
    got = FocalLoss(gamma=1.0, label_smoothing=0.3, reduction="none")(LOGITS, TARGET)[0].item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert create_loss("ce", label_smoothing=0.1)(logits, target).item() == pytest.approx(ce.item())
    with pytest.raises(ValueError, match="label_smoothing"):
        FocalLoss(label_smoothing=1.0)
