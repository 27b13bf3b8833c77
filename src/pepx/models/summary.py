"""Parameter and FLOP counts (``torch.utils.flop_counter.FlopCounterMode``; 1 MAC = 2 FLOPs)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model, list_models


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, size: int = 224, in_chans: int = 1, batch: int = 1) -> int:
    """Forward FLOPs of one ``batch`` at ``size`` x ``size`` in eval mode (convs, matmuls; not BN/ReLU)."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(batch, in_chans, size, size, device=param.device, dtype=param.dtype)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def summary_rows(
    names: list[str] | None = None,
    sizes: tuple[int, ...] = (224,),
    in_chans: int = 1,
    num_classes: int = 3,
    **kwargs,
) -> list[dict[str, float | str]]:
    """One row per model: ``model``, ``params_M``, ``gflops_<size>`` (forward, batch 1)."""
    rows = []
    for name in names or list_models():
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
        row: dict[str, float | str] = {"model": name, "params_M": count_params(model) / 1e6}
        for s in sizes:
            row[f"gflops_{s}"] = count_flops(model, s, in_chans) / 1e9
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, float | str]]) -> str:
    """Plain-text table of :func:`summary_rows`."""
    cols = list(rows[0])
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    for row in cells:
        pairs = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in pairs))
    return "\n".join(lines)
