"""The gate's fitted arrays and the two numbers it computes from a film's pooled stage features.

    d_l      = min over classes k of (f_l - mu_lk)^T P_l (f_l - mu_lk)     Mahalanobis, class means,
                                                                          tied covariance (Lee et al. 2018)
    z_l      = (log d_l - c_l) / s_l                                      standardised on training films
    distance = mean over stages l of z_l                                 "unfamiliar" at or above its
                                                                          threshold
    score    = sigmoid(w . standardise([f_1, ..., f_L, log d_1, ..., log d_L]) + b)
                                                                          P(not a frontal chest X-ray):
                                                                          "rejected" at or above its threshold

Plain numpy in float32 on a handful of vectors: next to the network's forward pass it costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GateModel:
    """Per stage `layers[i]`: class means `means[i]` [K, C_i] and shared precision `precision[i]` [C_i, C_i];
    `log_center`, `log_scale` [L] standardise the log distances; the classifier standardises its input with
    `x_mean`, `x_scale` [D] and weighs it with `coef` [D] + `intercept`."""

    layers: tuple[str, ...]
    means: tuple[np.ndarray, ...]
    precision: tuple[np.ndarray, ...]
    log_center: np.ndarray
    log_scale: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def log_distances(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """[N, L]: log of each stage's squared Mahalanobis distance to the nearest class mean."""
        out = []
        for name, mu, prec in zip(self.layers, self.means, self.precision, strict=True):
            diff = np.asarray(feats[name], dtype=np.float32)[:, None, :] - mu[None]  # [N, K, C]
            d = np.einsum("nkc,nkc->nk", diff @ prec, diff).min(axis=1)
            out.append(np.log(np.maximum(d, 1e-12)))
        return np.stack(out, axis=1).astype(np.float32)

    def classifier_input(self, feats: dict[str, np.ndarray], log_d: np.ndarray) -> np.ndarray:
        """[N, D]: the pooled features of every stage, then the log distances (before standardising)."""
        parts = [np.asarray(feats[name], dtype=np.float32) for name in self.layers]
        return np.concatenate([*parts, log_d], axis=1)

    def scores(self, feats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(score [N] in [0, 1]: P(not a frontal chest X-ray); distance [N]: mean standardised log
        distance)."""
        log_d = self.log_distances(feats)
        distance = ((log_d - self.log_center) / self.log_scale).mean(axis=1)
        x = (self.classifier_input(feats, log_d) - self.x_mean) / self.x_scale
        logit = x @ self.coef + np.float32(self.intercept)
        return (1.0 / (1.0 + np.exp(-logit.astype(np.float64)))), distance.astype(np.float64)

    # ------------------------------------------------------------------ storage (gate.safetensors)
    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{name}.means": torch.from_numpy(np.ascontiguousarray(mu, dtype=np.float32))
               for name, mu in zip(self.layers, self.means, strict=True)}
        out |= {f"{name}.precision": torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
                for name, p in zip(self.layers, self.precision, strict=True)}
        for key in ("log_center", "log_scale", "x_mean", "x_scale", "coef"):
            out[key] = torch.from_numpy(np.ascontiguousarray(getattr(self, key), dtype=np.float32))
        out["intercept"] = torch.tensor([self.intercept], dtype=torch.float32)
        return out

    @classmethod
    def from_tensors(cls, layers: tuple[str, ...], tensors: dict[str, torch.Tensor]) -> GateModel:
        """The model stored by `to_tensors`; KeyError / ValueError when the arrays do not fit together."""
        def arr(key: str) -> np.ndarray:
            return tensors[key].float().numpy()

        model = cls(tuple(layers), tuple(arr(f"{n}.means") for n in layers),
                    tuple(arr(f"{n}.precision") for n in layers), arr("log_center"), arr("log_scale"),
                    arr("x_mean"), arr("x_scale"), arr("coef"), float(arr("intercept")[0]))
        dims = [m.shape[1] for m in model.means]
        n, d = (len(layers),), (sum(dims) + len(layers),)
        if ([p.shape for p in model.precision] != [(c, c) for c in dims]
                or not model.log_center.shape == model.log_scale.shape == n
                or not model.x_mean.shape == model.x_scale.shape == model.coef.shape == d):
            raise ValueError(f"gate arrays do not fit together (stages of {dims} features)")
        return model


__all__ = ["GateModel"]
