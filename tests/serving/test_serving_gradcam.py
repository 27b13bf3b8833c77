"""Grad-CAM: same maps as MONAI's; image-sized maps that differ between classes and change under weight
randomisation (trained network: the shipped bundle); the synthetic set's lesion masks; localisation scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from pepx.data import load_source, read_image
from pepx.evaluation.localisation import energy_share, localisation_scores, localisation_table, pointing_hit
from pepx.models import create_model
from pepx.serving import Predictor
from pepx.serving.gradcam import grad_cam, randomization_check

LAYERS = {"pepx_resnet": "layer4", "resnet18": "layer4", "covidnet": "stage4"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAYERS))
def test_same_map_as_monai(name):
    GradCAM = pytest.importorskip("monai.visualize").GradCAM  # noqa: N806 - MONAI's class

    torch.manual_seed(0)
    model = create_model(name, width=0.25, **({"zero_init_last": False} if name == "covidnet" else {})).eval()
    x = torch.randn(1, 1, 64, 64)
    monai_layer = "layer4.0" if name == "pepx_resnet" else LAYERS[name]  # MONAI cannot hook a ModuleList
    compared = 0
    for k in range(3):
        ours, index, _ = grad_cam(model, x, k, LAYERS[name])
        assert index == k and ours.shape == (64, 64)
        if ours.max() == 0:  # an all-negative map of a random network: nothing to compare
            continue
        theirs = GradCAM(nn_module=model, target_layers=monai_layer)(x, class_idx=k)[0, 0].detach().numpy()
        np.testing.assert_allclose(ours, 1.0 - theirs, atol=1e-5)  # MONAI's normaliser maps max -> 0
        compared += 1
    assert compared >= 2


@pytest.fixture(scope="module")
def shipped():
    return Predictor.from_bundle(None, device="cpu")


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """Synthetic pneumonia / COVID-19 films with their lesion masks (size 96, non-square crop added)."""
    import os

    old = os.environ.get("PEPX_CACHE")
    os.environ["PEPX_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        manifest = load_source("synthetic:n_per_class=6,size=96").manifest
    finally:
        if old is None:
            os.environ.pop("PEPX_CACHE", None)
        else:
            os.environ["PEPX_CACHE"] = old
    return manifest


def test_synthetic_set_writes_lesion_masks(films):
    assert "mask_path" in films.columns
    normal = films[films["label"] == "normal"]
    assert normal["mask_path"].isna().all() or (normal["mask_path"].fillna("") == "").all()
    sick = films[films["label"] != "normal"]
    root = Path(films["path"].iloc[0]).parents[2]
    for row in sick.itertuples():
        mask = np.asarray(Image.open(root / row.mask_path)) > 0
        image = read_image(row.path)
        assert mask.shape == image.shape and 0.002 < mask.mean() < 0.15
        ring = ndimage.binary_dilation(mask, iterations=4) & ~mask
        assert image[mask].mean() > image[ring].mean()  # the lesion is denser than its surroundings


def test_maps_have_the_image_size_and_differ_between_classes(shipped, films):
    image = read_image(films[films["label"] == "pneumonia"]["path"].iloc[0])
    wide = np.concatenate([image, image[:, :40]], axis=1)  # 96 x 136: the network sees the centre square
    maps = [shipped.explain(wide, class_index=k) for k in range(3)]
    for e in maps:
        assert e.map.shape == wide.shape and e.raw.shape == (shipped.image_size,) * 2
        assert e.map[:, :20].max() == 0 and e.map[:, -20:].max() == 0 and e.map.max() > 0.95
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert np.abs(maps[a].raw - maps[b].raw).mean() > 0.05


def test_randomisation_check_of_the_trained_network(shipped, films):
    model = shipped.bundle.build_model()
    xs = [shipped.preprocess(read_image(p)).unsqueeze(0) for p in films["path"].iloc[::3]]
    rho = randomization_check(model, xs, seed=0)
    assert len(rho) == len(xs) and rho.mean() < 0.5 and np.median(rho) < 0.5


def test_pointing_game_and_energy_by_hand():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:3] = True  # area 4 / 20
    heat = np.zeros((4, 5))
    heat[1, 2], heat[0, 0] = 1.0, 0.5
    assert pointing_hit(heat, mask) and energy_share(heat, mask) == pytest.approx(1.0 / 1.5)
    heat[0, 0] = 2.0
    assert not pointing_hit(heat, mask)
    assert np.isnan(energy_share(np.zeros((4, 5)), mask))
    scores = localisation_scores([mask.astype(float), np.ones((4, 5))], [mask, mask])
    assert scores["hit"].tolist() == [True, False] and scores["energy"].tolist() == [1.0, 0.2]
    table = localisation_table(scores, ["a", "b"], n_boot=200).set_index("metric")
    assert table.loc["pointing_game", "value"] == 0.5 and table.loc["uniform_baseline", "value"] == 0.2
    assert table.loc["energy_gain", "value"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="differ in shape"):
        pointing_hit(np.zeros((3, 3)), mask)
