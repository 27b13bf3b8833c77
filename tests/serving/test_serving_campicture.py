"""The Grad-CAM picture of `pepx predict --cam`: the film at its resolution (capped at 1024 px), an outline of
the square the network saw, a colour bar and a caption naming the class."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from pepx.serving import Predictor, files
from pepx.serving.cam_picture import MAX_SIDE, OUTLINE, cam_picture
from pepx.serving.gradcam import Explanation, seen_box, to_image_frame


def _explanation(h: int, w: int) -> Explanation:
    yy, xx = np.mgrid[0:8, 0:8]
    raw = ((yy + xx) / 14.0).astype(np.float32)  # 0 top-left .. 1 bottom-right of the seen square
    image = np.full((h, w), 0.5, np.float32)
    return Explanation(to_image_frame(raw, (h, w)), raw, 1, "pneumonia", image, "layer4",
                       seen=seen_box((h, w)))


def test_a_large_film_is_capped_outlined_and_has_a_colour_bar() -> None:
    exp = _explanation(1500, 1200)  # tall film: the network saw the centred 1200 x 1200 square
    pic = np.asarray(cam_picture(exp, "Non-COVID"))
    film_h, film_w = MAX_SIDE, round(1200 * MAX_SIDE / 1500)  # 1024 x 819
    assert pic.shape[0] > film_h and pic.shape[1] > film_w  # caption below, colour bar beside
    top = round(150 * MAX_SIDE / 1500)  # the seen square starts 150 rows down: 102 in the picture
    assert (pic[top + 2, 100:700] == OUTLINE).all()  # its top edge, drawn light on dark
    assert (pic[top, 100:700] == 0).all() and (pic[top - 1, 100:700] == 128).all()
    outside = pic[40, 100:700].astype(int)  # above the box: never seen, no heat: the film's own grey
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()
    inside = pic[film_h - 120, film_w - 120].astype(int)  # low right of the seen square: hot
    assert inside[0] > inside[2] + 40
    bar = pic[:film_h, film_w:film_w + 40].astype(int)
    columns = np.where(np.abs(np.diff(bar, axis=0)).sum(axis=(0, 2)) > 0)[0]
    x = int(columns[0]) + 1  # the bar's strip: colours change down it
    hot, cold = (np.array(colormaps["jet"](v)[:3]) * 255 for v in (1.0, 0.0))
    assert np.abs(bar[0, x] - hot).max() <= 3 and np.abs(bar[film_h - 1, x] - cold).max() <= 3


def test_a_small_film_keeps_its_resolution() -> None:
    exp = _explanation(200, 300)  # wide: the network saw the centred 200 x 200 square
    pic = cam_picture(exp, "Normal")
    overlay = np.asarray(exp.overlay(alpha=0.5))
    got = np.asarray(pic)[:200, :300]
    assert np.array_equal(got[20:180, 60:240], overlay[20:180, 60:240])  # not resampled
    assert (got[100, 52:56] == OUTLINE).all(axis=1).any()  # the box's left edge near x = 50


@pytest.mark.slow
def test_predict_writes_the_annotated_picture(tmp_path) -> None:
    predictor = Predictor.from_bundle(None, device="cpu", gate=False)
    yy, xx = np.mgrid[0:1400, 0:1000]
    lungs = (((xx - 330) / 180.0) ** 2 + ((yy - 700) / 450.0) ** 2 < 1) | \
            (((xx - 670) / 180.0) ** 2 + ((yy - 700) / 450.0) ** 2 < 1)
    Image.fromarray(np.where(lungs, 60, 200).astype(np.uint8)).save(tmp_path / "film.png")
    preds = predictor.predict([str(tmp_path / "film.png")])
    (png,) = files.write_cams(predictor, preds, tmp_path / "cams")
    with Image.open(png) as im:
        assert im.info["Software"] == "pepx Grad-CAM"  # still pepx's mark: may be written over
        assert MAX_SIDE < im.height < MAX_SIDE + 200 and im.width > round(1000 * MAX_SIDE / 1400)
