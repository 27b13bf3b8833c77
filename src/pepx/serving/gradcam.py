"""Grad-CAM (Selvaraju et al., ICCV 2017), its sanity check and the overlay picture.

    weights_k = mean over (i, j) of d score_c / d A_k(i, j)       A = activations of the target layer
    cam       = ReLU(sum_k weights_k * A_k), upsampled bilinearly to the input, min-max scaled to [0, 1]

Written as ~40 lines of hooks rather than MONAI's `GradCAM`: MONAI's gives the same map on all three networks
(tests/serving/test_serving_gradcam.py compares them), but `import monai` takes seconds - longer than a whole
single-image `pepx predict` - and its wrapper keeps hooks on the module it is given. Here the hook lives only
for the duration of one call.

The default target layer is the one the network's registration names (`pepx.models.registry.ModelInfo`:
its last stage, `layer4` of PEPX-ResNet and ResNet18, `stage4` of COVID-Net); any module name works
(`layer3` gives a finer map). `randomization_check` is the model-parameter randomisation test of Adebayo
et al. (NeurIPS 2018): a map that barely changes when the weights are re-initialised shows the image's
edges, not what the network learnt.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from scipy.stats import spearmanr
from torch import nn

from pepx.errors import ConfigError
from pepx.models.registry import info_of


def default_layer(model: nn.Module) -> str:
    """The Grad-CAM target layer `model`'s registration names (by default its last stage)."""
    info = info_of(model)
    layer = info.target_layer(model) if info else None
    if layer is None:
        raise ConfigError(f"{type(model).__name__} registers no Grad-CAM layer: pass the target layer by "
                          "name")
    return layer


def resolve_layer(model: nn.Module, name: str | None) -> nn.Module:
    """The module called `name` (default: the last stage). A ModuleList, which is never called itself,
    resolves to its last entry."""
    name = name or default_layer(model)
    try:
        module = model.get_submodule(name)
    except AttributeError:
        layers = [n for n, _ in model.named_children()]
        raise ConfigError(f"no layer {name!r} in {type(model).__name__}; top-level layers: {layers}"
                          ) from None
    while isinstance(module, nn.ModuleList):
        module = module[-1]
    return module


def check_layer(model: nn.Module, name: str, size: int, in_chans: int = 1, option: str = "layer") -> None:
    """Raise `ConfigError` naming `option` unless `name` is a layer of `model` whose output is a feature map
    [N, C, H, W] (what Grad-CAM weighs); the message lists the top-level layers that are."""
    children = [n for n, _ in model.named_children()]
    ndims = _output_ndims(model, [*children, name], size, in_chans)
    choices = [n for n in children if ndims.get(n) == 4]
    hint = f"choose one of {', '.join(choices)} (or a sub-module such as {choices[-1]}.0)"
    try:
        resolve_layer(model, name)
    except ConfigError:
        raise ConfigError(f"{option} {name!r}: not a layer of {type(model).__name__}; {hint}") from None
    if ndims.get(name) != 4:
        raise ConfigError(f"{option} {name!r}: its output is not a feature map [N, C, H, W]; {hint}")


def _output_ndims(model: nn.Module, names: list[str], size: int, in_chans: int) -> dict[str, int]:
    """The number of dimensions of each named module's output on one blank image (names that are not
    modules, or are never called, are left out)."""
    seen: dict[str, int] = {}
    handles = []
    for name in dict.fromkeys(names):
        try:
            module = resolve_layer(model, name)
        except ConfigError:
            continue
        handles.append(module.register_forward_hook(_ndim_hook(seen, name)))
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chans, size, size, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _ndim_hook(seen: dict[str, int], name: str):
    def hook(_module: nn.Module, _inputs: object, out: object) -> None:  # returns None: output unchanged
        seen.setdefault(name, getattr(out, "ndim", 0))
    return hook


def grad_cam(model: nn.Module, x: torch.Tensor, class_index: int | None = None,
             layer: str | None = None) -> tuple[np.ndarray, int, torch.Tensor]:
    """Grad-CAM of one input `x` [1, C, S, S] for `class_index` (default: the predicted class).

    Returns `(map [S, S] float32 in [0, 1], class_index, logits [num_classes])`. The model's parameters are
    not changed; its gradients are left at None.
    """
    module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            # the input's grad keeps a graph even where the parameters are frozen
            logits = model(x.detach().requires_grad_(True))
            index = int(logits[0].argmax()) if class_index is None else int(class_index)
            if not 0 <= index < logits.shape[1]:
                raise ConfigError(f"class_index {index} out of range for {logits.shape[1]} classes")
            (grads,) = torch.autograd.grad(logits[0, index], captured[-1])
    finally:
        handle.remove()
    acts = captured[-1].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return _unit(cam.cpu().numpy()), index, logits.detach()[0]


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32)


def reinitialized(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` with every layer that has `reset_parameters` re-initialised (seeded)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters") and m is not fresh:
                m.reset_parameters()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return fresh.eval()


def randomization_check(model: nn.Module, inputs: Sequence[torch.Tensor], layer: str | None = None,
                        class_index: int | None = None, seed: int = 0) -> np.ndarray:
    """Spearman rank correlation, per input, between the trained model's map and the map of the same class
    from a re-initialised copy (Adebayo et al. 2018). A faithful map changes: correlations well below 0.5."""
    random_model = reinitialized(model, seed)
    out = []
    for x in inputs:
        trained, index, _ = grad_cam(model, x, class_index, layer)
        randomized, _, _ = grad_cam(random_model, x, index, layer)
        rho = spearmanr(trained.ravel(), randomized.ravel()).statistic
        out.append(0.0 if np.isnan(rho) else float(rho))  # a constant map has no rank order
    return np.asarray(out)


# ---------------------------------------------------------------------- pictures
@dataclass(frozen=True, eq=False)
class Explanation:
    """A Grad-CAM heat map over one image.

    `map`: float32 [H, W] in [0, 1] at the input image's size (0 outside the square the network saw);
    `raw`: the map over the network's input [S, S]; `class_index`, `class_name`; `image`: the radiograph
    (float [H, W] in [0, 1]); `layer`: the target layer's name; `seen`: the region of the image the network
    saw, ``(top, left, height, width)`` (`seen_box`; None: all of it).
    """

    map: np.ndarray
    raw: np.ndarray
    class_index: int
    class_name: str
    image: np.ndarray
    layer: str
    seen: tuple[int, int, int, int] | None = None

    def overlay(self, alpha: float = 0.5, size: int | None = None, cmap: str = "jet") -> Image.Image:
        """The radiograph (RGB) with the heat map blended in, `alpha` times the map's value per pixel (cold
        regions keep the film's grey). `size`: longest side in pixels (default: the image's own size)."""
        return overlay(self.image, self.map, alpha=alpha, size=size, cmap=cmap)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, size: int | None = None,
            cmap: str = "jet") -> Image.Image:
    """RGB picture of `image` ([H, W] in [0, 1]) with `heat` ([H, W] in [0, 1]) as a colour map."""
    grey = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    colour = colormaps[cmap](heat)[..., :3].astype(np.float32)
    w = (alpha * heat)[..., None]
    rgb = (1 - w) * grey[..., None] + w * colour
    picture = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8), mode="RGB")
    if size is not None and max(picture.size) != size:
        scale = size / max(picture.size)
        new = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(new, Image.BILINEAR, reducing_gap=2.0)
    return picture


def seen_box(shape: tuple[int, int], top_crop: float = 0.0, square: bool = True) -> tuple[int, int, int, int]:
    """The part of an image of `shape` (H, W) that the network sees, ``(top, left, height, width)``: the
    geometry of `pepx.data.transforms.crop_resize` (the top `top_crop` rows cut, then a centred square)."""
    h, w = shape
    y0 = int(round(h * top_crop)) if top_crop > 0 else 0
    ch, cw = h - y0, w
    x0 = 0
    if square and ch != cw:
        s = min(ch, cw)
        y0, x0 = y0 + (ch - s) // 2, (cw - s) // 2
        ch = cw = s
    return y0, x0, ch, cw


def to_image_frame(raw: np.ndarray, shape: tuple[int, int], top_crop: float = 0.0,
                   square: bool = True) -> np.ndarray:
    """Map a [S, S] map over the network's input back onto the original image of `shape` (H, W): the inverse
    of `pepx.data.transforms.crop_resize`'s geometry; pixels the network never saw are 0."""
    h, w = shape
    y0, x0, ch, cw = seen_box(shape, top_crop, square)
    resized = Image.fromarray(raw.astype(np.float32), mode="F").resize((cw, ch), Image.BILINEAR)
    full = np.zeros((h, w), dtype=np.float32)
    full[y0 : y0 + ch, x0 : x0 + cw] = np.clip(np.asarray(resized), 0, 1)
    return full


__all__ = ["Explanation", "check_layer", "default_layer", "grad_cam", "overlay", "randomization_check",
           "reinitialized", "resolve_layer", "seen_box", "to_image_frame"]
