"""Out-of-fold probe predictions: a small network on images, or a logistic regression on features.

Folds are scikit-learn's ``StratifiedGroupKFold``: a patient's films stay in one fold, each probed class is
spread over the folds. Each fold's probe is trained on the other folds and predicts its own, so every film is
scored by a probe that never saw its patient. The network is pepx's ResNet18 at a small width, trained with
class-weighted cross-entropy (balanced accuracy is the score), AdamW and a cosine schedule, no augmentation:
small and fast on purpose. Plain torch, not `pepx.training.fit`: a probe predicts sources, not pepx classes,
from tensors already in memory.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from pepx.models import create_model
from pepx.probes.settings import ProbeSettings

log = logging.getLogger("pepx.probes")


def group_folds(k: int, seed: int) -> StratifiedGroupKFold:
    """The splitter: ``k`` patient-grouped, class-stratified folds, shuffled with ``seed``."""
    return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)


def class_weights(y: torch.Tensor, k: int) -> torch.Tensor:
    counts = torch.bincount(y, minlength=k).clamp_min(1).float()
    return counts.sum() / (k * counts)


def train_network(x: torch.Tensor, y: torch.Tensor, k: int, settings: ProbeSettings, seed: int) -> nn.Module:
    """A ResNet18 (``settings.width``) trained on ``x`` [N, 1, S, S] to predict ``y`` (0..k-1) for
    ``settings.epochs`` epochs, or more on a small set: at least ``settings.min_steps`` optimiser steps."""
    torch.manual_seed(seed)
    model = create_model("resnet18", num_classes=k, width=settings.width)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    batches = [b for b in range(0, len(y), settings.batch_size) if len(y) - b >= 2]  # BatchNorm: >= 2 images
    if not batches:
        raise ValueError(f"a probe network needs >= 2 training images, got {len(y)}")
    steps = max(settings.epochs * len(batches), settings.min_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y, k))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    done = 0
    while done < steps:
        order = torch.randperm(len(y), generator=gen)
        for start in batches[:steps - done]:
            batch = order[start:start + settings.batch_size]
            opt.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            opt.step()
            sched.step()
        done += min(len(batches), steps - done)
    return model.eval()


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    return torch.cat([torch.softmax(model(x[i:i + batch]), dim=1) for i in range(0, len(x), batch)]).numpy()


def network_oof(x: torch.Tensor, y: np.ndarray, groups: np.ndarray, k: int, settings: ProbeSettings,
                what: str = "probe") -> np.ndarray:
    """Out-of-fold class probabilities ``[N, k]`` of the image probe network."""
    prob = np.zeros((len(y), k))
    y_t = torch.tensor(np.asarray(y), dtype=torch.long)
    splitter = group_folds(settings.folds, settings.seed)
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        model = train_network(x[train], y_t[train], k, settings, seed=settings.seed * 1000 + fold)
        prob[test] = probabilities(model, x[test])
        log.info("%s: fold %d/%d done (%d training films, %d scored)", what, fold + 1, settings.folds,
                 len(train), len(test))
    return prob


def linear_oof(features: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int, folds: int,
               seed: int) -> np.ndarray:
    """Out-of-fold class probabilities ``[N, k]`` of a standardised logistic regression on ``features``."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    splitter = group_folds(folds, seed)
    return cross_val_predict(probe, features, y, groups=groups, cv=splitter, method="predict_proba")
