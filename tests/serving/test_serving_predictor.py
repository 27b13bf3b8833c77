"""Predictor: training's preprocessing, batch = single, bad inputs as rows, threads, Grad-CAM geometry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from fakes.bundles import SIZE, make_bundle
from fakes.images import radiograph, save_png
from pepx.data import CXRDataset, read_image
from pepx.serving import Prediction, Predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle") / "b"
    make_bundle(folder, operating_points={"COVID-19": {"threshold": 0.0}, "normal": {"threshold": 1.0}})
    return Predictor.from_bundle(folder, device="cpu")


def test_preprocess_is_trainings(predictor, tmp_path):
    """Same pixels as the run's evaluation (CXRDataset, no augmentation): a bundle scores like its run."""
    path = save_png(tmp_path / "a.png", radiograph(123, 97))
    frame = pd.DataFrame({"path": [str(path)], "label": ["normal"]})
    item, _ = CXRDataset(frame, image_size=SIZE, cache_dir=tmp_path / "cache")[0]
    assert torch.equal(predictor.preprocess(read_image(path)), item)


def test_batch_equals_single_and_python_equals_files(predictor, tmp_path):
    images = [radiograph(80 + 7 * i, 64 + 5 * i, seed=i) for i in range(5)]
    x = torch.stack([predictor.preprocess(im) for im in images])
    batch = predictor.predict_tensor(x)
    single = np.concatenate([predictor.predict_tensor(x[i : i + 1]) for i in range(len(x))])
    assert batch.shape == (5, 3) and np.allclose(batch.sum(1), 1, atol=1e-6)
    assert np.abs(batch - single).max() < 1e-6
    paths = [save_png(tmp_path / f"{i}.png", im) for i, im in enumerate(images)]
    from_files = predictor.predict(paths, batch_size=2)
    decoded = predictor.predict([read_image(p) for p in paths], batch_size=2)  # same batches: same bits
    for f, d in zip(from_files, decoded, strict=True):
        assert f.probabilities == d.probabilities and f.label == d.label


def test_bad_inputs_are_rows_and_the_good_ones_go_on(predictor, tmp_path):
    good = save_png(tmp_path / "good.png", radiograph())
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    inputs = [tmp_path / "empty.png", good, tmp_path / "text.png", radiograph(seed=3), tmp_path / "cut.png",
              tmp_path / "missing.png", np.zeros((4, 4, 3)), radiograph() * 3]
    seen = []
    preds = predictor.predict(inputs, batch_size=3, progress=lambda done, total: seen.append((done, total)))
    assert [p.status for p in preds] == ["error", "ok", "error", "ok", "error", "error", "error", "error"]
    names = [str(tmp_path / "empty.png"), str(good), str(tmp_path / "text.png"), "array[3]"]
    assert [p.source for p in preds][:4] == names
    reasons = [p.error for p in preds]
    assert "empty file" in reasons[0] and "not an image" in reasons[2] and "truncated" in reasons[4]
    assert "not found" in reasons[5] and "2-D grayscale" in reasons[6] and "[0, 1]" in reasons[7]
    assert seen == [(3, 8), (6, 8), (8, 8)]
    ok = preds[1]
    assert ok.label in ok.probabilities and ok.label == max(ok.probabilities, key=ok.probabilities.get)
    assert ok.flagged == ("COVID-19",)  # threshold 0 always flags, 1 never (p < 1 here)
    row = ok.to_row()
    assert list(row) == ["source", "status", "label", "prob_normal", "prob_pneumonia", "prob_COVID-19",
                         "flagged", "error", "gate", "gate_score", "gate_distance", "gate_reason", "caveat"]
    assert preds[0].to_row()["label"] is None and preds[0].to_row()["error"] == reasons[0]
    assert isinstance(preds[0], Prediction) and preds[0].probabilities == {}


def test_predict_tensor_is_thread_safe_while_explaining(predictor):
    x = torch.stack([predictor.preprocess(radiograph(seed=i)) for i in range(4)])
    expected = predictor.predict_tensor(x)
    image = radiograph(100, 80)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(predictor.predict_tensor, x) for _ in range(8)]
        futures += [pool.submit(predictor.explain, image) for _ in range(2)]
        results = [f.result() for f in futures]
    for r in results[:8]:
        assert np.abs(r - expected).max() < 1e-6
    assert np.array_equal(results[8].map, results[9].map)
    assert all(p.grad is None for p in predictor._model.parameters())
    # explain's hooks live on a private copy: a thread in predict_tensor never runs through them
    assert predictor._cam_model is not None and predictor._cam_model is not predictor._model


def test_explain_maps_back_onto_the_image(predictor):
    image = radiograph(120, 80)  # portrait: the network sees the centre 80 x 80 square (rows 20-99)
    maps = [predictor.explain(image, class_index=k) for k in range(3)]
    for k, e in enumerate(maps):
        assert e.map.shape == image.shape and e.map.dtype == np.float32 and e.raw.shape == (SIZE, SIZE)
        assert e.class_index == k and e.class_name == predictor.classes[k] and e.layer == "layer4"
        assert 0.0 <= e.map.min() and e.map.max() <= 1.0
        assert e.map[:20].max() == 0 and e.map[100:].max() == 0  # outside what the network saw
    # (maps of a trained network differ between classes: serving/test_serving_gradcam.py; this one is random)
    default = predictor.explain(image)
    pred = predictor.predict([image])[0]
    assert default.class_name == pred.label
    finer = predictor.explain(image, layer="layer3")
    assert finer.layer == "layer3" and not np.array_equal(finer.raw, default.raw)
    picture = default.overlay(alpha=0.5)
    assert picture.mode == "RGB" and picture.size == (80, 120)
    assert default.overlay(size=60).size == (40, 60)
    rgb = np.asarray(picture, dtype=np.float32)
    cold = default.map < 1e-3  # alpha x map: cold pixels keep the film's grey
    assert np.allclose(rgb[cold][:, 0], rgb[cold][:, 2], atol=1)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        predictor.explain(image, layer="nope")
