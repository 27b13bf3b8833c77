"""`TrainModule`: a LightningModule holding the model, the loss and torchmetrics metrics per split."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from pepx import CLASSES
from pepx.errors import RunError
from pepx.training.adversary import DomainAdversary, ganin_ramp
from pepx.training.config import TrainConfig


class NonFiniteLoss(RunError):
    """The training loss (or a weight) became NaN or infinite: training stops before the weights are saved."""


class SplitMetrics(nn.Module):
    """Loss, accuracy and per-class precision/recall/F1 of one split; synchronised across processes."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.loss = MeanMetric()
        self.acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        kw: dict[str, Any] = {"average": None, "validate_args": False, "zero_division": 0}
        self.precision = MulticlassPrecision(num_classes, **kw)
        self.recall = MulticlassRecall(num_classes, **kw)
        self.f1 = MulticlassF1Score(num_classes, **kw)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        preds = logits.argmax(dim=1)
        self.loss.update(loss.detach().float(), weight=target.numel())
        for metric in (self.acc, self.precision, self.recall, self.f1):
            metric.update(preds, target)

    def compute(self, prefix: str) -> dict[str, float]:
        """Row entries `prefix_loss, prefix_acc, prefix_macro_f1, prefix_precision_<cls>, ...`; resets."""
        f1 = self.f1.compute()
        row = {f"{prefix}_loss": self.loss.compute().item(), f"{prefix}_acc": self.acc.compute().item(),
               f"{prefix}_macro_f1": f1.mean().item()}
        for name, values in (("precision", self.precision.compute()), ("recall", self.recall.compute()),
                             ("f1", f1)):
            row.update({f"{prefix}_{name}_{cls}": v.item() for cls, v in zip(CLASSES, values, strict=True)})
        for metric in (self.loss, self.acc, self.precision, self.recall, self.f1):
            metric.reset()
        return row


class TrainModule(L.LightningModule):
    """Trains `model` with `loss_fn`; evaluates each of `eval_names` (one val dataloader each) every epoch.

    With ``num_domains`` > 1 and ``config.domain_adversary`` set, training batches carry each image's domain
    and a `DomainAdversary` on the penultimate features adds its loss (Ganin's ramp over the run times
    ``config.domain_adversary_weight`` scales the reversed gradient); ``train_domain_acc`` is logged. The
    adversary is not part of `model`, so saved weights and bundles hold the classifier alone.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, config: TrainConfig,
                 eval_names: list[str], num_domains: int = 0) -> None:
        super().__init__()
        self.model, self.loss_fn, self.config = model, loss_fn, config
        self.eval_names = list(eval_names)
        num_classes = len(CLASSES)
        self.train_loss = MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.adversary = (DomainAdversary(model.fc.in_features, num_domains, num_classes,
                                          conditional=config.domain_adversary == "source-given-class")
                          if config.domain_adversary != "none" and num_domains > 1 else None)
        self.train_domain_acc = MeanMetric()
        self.eval_metrics = nn.ModuleDict({name: SplitMetrics(num_classes) for name in self.eval_names})
        self.epoch_lr = float("nan")
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        # Randomness inside the model (dropout, ...) depends only on (seed, epoch, rank): resume repeats it.
        torch.manual_seed(self.config.seed * 1_000_003 + self.current_epoch * 1_009 + self.global_rank)
        self.epoch_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if self.adversary is None:
            logits, domain_loss = self(x), None
        else:
            logits, domain_loss = self._adversarial_forward(x, y, batch[2])
        loss = self.loss_fn(logits.float(), y)
        total = loss if domain_loss is None else loss + domain_loss
        if self.trainer.world_size == 1 and not torch.isfinite(total):  # DDP: checked at the epoch's end
            raise NonFiniteLoss(f"the training loss became non-finite ({total.item()}) at epoch "
                                f"{self.current_epoch + 1}, step {batch_idx + 1} (lr={self.config.lr})")
        self.train_loss.update(loss.detach(), weight=y.numel())  # class loss alone: comparable
        self.train_acc.update(logits.detach().argmax(dim=1), y)
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return total

    def _adversarial_forward(self, x: torch.Tensor, y: torch.Tensor, domain: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and the domain adversary's loss (its reversed gradient reaches the features)."""
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        logits = self.model.fc(features)
        total = max(1, self.trainer.estimated_stepping_batches)
        scale = self.config.domain_adversary_weight * ganin_ramp(self.global_step / total)
        domain_loss, correct = self.adversary.loss(features.float(), y, domain, scale)
        self.train_domain_acc.update(correct.float() / len(y), weight=len(y))
        return logits, domain_loss

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        x, y = batch
        logits = self(x).float()
        self.eval_metrics[self.eval_names[dataloader_idx]].update(logits, y, self.loss_fn(logits, y))

    def check_finite(self, train_loss: float) -> None:
        """Raise `NonFiniteLoss` when this epoch's (all-reduced) training loss or any weight is not finite:
        every process sees the same values, so under DDP they all stop together."""
        bad = [n for n, t in self.model.state_dict().items()
               if t.is_floating_point() and not bool(t.isfinite().all())]
        if math.isfinite(train_loss) and not bad:
            return
        what = (f"the training loss became {train_loss}" if not math.isfinite(train_loss)
                else f"{len(bad)} weight tensors became non-finite (e.g. {bad[0]})")
        raise NonFiniteLoss(f"{what} in epoch {self.current_epoch + 1} (lr={self.config.lr})")

    def epoch_summary(self) -> dict[str, float]:
        """This epoch's train and eval metrics as one flat row (a collective call under DDP); resets them."""
        row = {"train_loss": self.train_loss.compute().item(), "train_acc": self.train_acc.compute().item(),
               "lr": self.epoch_lr}
        if self.adversary is not None:
            row["train_domain_acc"] = self.train_domain_acc.compute().item()
        self.train_loss.reset()
        self.train_acc.reset()
        self.train_domain_acc.reset()
        for name in self.eval_names:
            row.update(self.eval_metrics[name].compute(name))
        return row

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        c = self.config
        params = self.parameters()  # the model's, and the domain adversary's when there is one
        if c.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum,
                                                         weight_decay=c.weight_decay)
        elif c.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.scheduler == "cosine":
            sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
        elif c.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=c.lr_step_size, gamma=c.lr_gamma)
        else:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
