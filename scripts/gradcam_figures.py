"""Grad-CAM checked two ways, plus examples on real films: the figures and numbers of docs/use.md and README.

1. Localisation on synthetic data with known lesions: train PEPX-ResNet + focal on the synthetic set (which
   writes each image's lesion mask), then score Grad-CAM of the true class on every pneumonia / COVID-19 test
   image: pointing game and energy in the lesion against a uniform map, for the last stage (layer4), the
   stage before (layer3), and the same network re-initialised.
2. The randomisation sanity check (Adebayo et al. 2018): Spearman correlation between the trained and the
   re-initialised network's maps, per image.
3. Examples on real films of ../shared/data/cxr-real with the shipped bundle (small overlays only; the raw
   images never enter the repository).

    python scripts/gradcam_figures.py     # a few minutes on one CPU thread; writes docs/figures, docs/results
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image
from scipy import ndimage

from pepx import CLASS_DISPLAY, CLASSES
from pepx.data import read_image
from pepx.data.cache import cache_root
from pepx.data.sources import parse_synthetic
from pepx.data.synthetic import ensure_synthetic
from pepx.evaluation.localisation import localisation_scores, localisation_table
from pepx.evaluation.report import fmt_ci
from pepx.markdown import markdown_table
from pepx.release.build import predictor_from_run
from pepx.serving import Predictor
from pepx.serving.gradcam import grad_cam, overlay, reinitialized
from pepx.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "cxr-real"
SYNTHETIC = "synthetic:n_per_class=200,size=224"
RECIPE = ["model=pepx_resnet", "model_kwargs.width=0.5", "loss=focal", "loss_kwargs.alpha=1.0",
          "loss_kwargs.gamma=1.0", f"data={SYNTHETIC}", "n_train=130", "n_test=70", "n_val=0",
          "image_size=224", "augment=true", "epochs=8", "seed=0", "num_threads=1", "progress=false"]


def contour(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def synthetic_part(work: Path, docs: Path, n_boot: int) -> dict:
    run = work / "synthetic-run"
    if not (run / "predictions.csv").is_file():
        fit(TrainConfig().with_overrides(RECIPE), run)
    folder = ensure_synthetic(parse_synthetic(SYNTHETIC), cache_root())
    preds = pd.read_csv(run / "predictions.csv")
    accuracy = float((preds["y_true"] == preds["y_pred"]).mean())
    split = pd.read_csv(run / "split.csv", dtype={"patient_id": str})
    test = split[(split["split"] == "test") & (split["label"] != "normal")].reset_index(drop=True)
    predictor = predictor_from_run(run, device="cpu")
    model = predictor.bundle.build_model()
    random_model = reinitialized(model, seed=0)
    images = [read_image(p) for p in test["path"]]
    masks = [np.asarray(Image.open(folder / m)) > 0 for m in test["mask_path"]]
    targets = [CLASSES.index(lbl) for lbl in test["label"]]
    maps: dict[str, list[np.ndarray]] = {"layer4": [], "layer3": [], "re-initialised, layer4": []}
    for img, k in zip(images, targets, strict=True):
        x = predictor.preprocess(img).unsqueeze(0)
        maps["layer4"].append(grad_cam(model, x, k, "layer4")[0])
        maps["layer3"].append(grad_cam(model, x, k, "layer3")[0])
        maps["re-initialised, layer4"].append(grad_cam(random_model, x, k, "layer4")[0])
    rows, tables = [], {}
    groups = {"all": np.ones(len(test), dtype=bool), **{lbl: (test["label"] == lbl).to_numpy()
                                                         for lbl in ("pneumonia", "COVID-19")}}
    for name, m in [*maps.items(), ("uniform (baseline)", None)]:
        row = {"map": name if m is None else f"Grad-CAM, {name}"}
        for group, sel in groups.items():
            idx = np.flatnonzero(sel)
            chosen = maps["layer4"] if m is None else m  # the baseline needs only the masks
            scores = localisation_scores([chosen[i] for i in idx], [masks[i] for i in idx])
            table = localisation_table(scores, test["patient_id"].iloc[idx], n_boot=n_boot)
            table = table.set_index("metric")
            tables[f"{row['map']} | {group}"] = table.reset_index()
            for key, label in (("pointing_game", "pointing game"), ("energy_in_lesion", "energy in lesion")):
                key = "uniform_baseline" if m is None else key
                row[f"{label} ({group})"] = fmt_ci(*table.loc[key, ["value", "low", "high"]])
        rows.append(row)
    from scipy.stats import spearmanr

    rho = np.array([spearmanr(a.ravel(), b.ravel()).statistic
                    for a, b in zip(maps["layer4"], maps["re-initialised, layer4"], strict=True)])
    rho = np.nan_to_num(rho)
    _synthetic_figure(images, masks, maps, test, docs / "figures" / "gradcam_synthetic.png")
    return {"data": SYNTHETIC, "recipe": RECIPE, "test_accuracy": accuracy, "n_images": len(test),
            "n_patients": int(test["patient_id"].nunique()), "table": markdown_table(pd.DataFrame(rows)),
            "tables": {k: v.to_dict(orient="records") for k, v in tables.items()},
            "randomisation_spearman": {"mean": float(rho.mean()), "median": float(np.median(rho)),
                                       "max": float(rho.max()), "share_below_0.5": float((rho < 0.5).mean())}}


def _synthetic_figure(images, masks, maps, test, path: Path, per_class: int = 3) -> None:
    picks = [i for lbl in ("pneumonia", "COVID-19") for i in np.flatnonzero(test["label"] == lbl)[:per_class]]
    rows = ["image + lesion", "layer4", "layer3", "re-initialised, layer4"]
    fig = Figure(figsize=(1.6 * len(picks), 1.7 * len(rows)))
    for c, i in enumerate(picks):
        edge = contour(masks[i])
        for r, name in enumerate(rows):
            ax = fig.add_subplot(len(rows), len(picks), r * len(picks) + c + 1)
            if r == 0:
                rgb = np.repeat(images[i][..., None], 3, axis=2)
            else:
                rgb = np.asarray(overlay(images[i], maps[name][i], alpha=0.6), dtype=np.float32) / 255
            rgb = rgb.copy()
            rgb[edge] = (0.0, 1.0, 0.0)
            ax.imshow(rgb)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(CLASS_DISPLAY[CLASSES.index(test["label"][i])], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle("Grad-CAM of the true class; green: the lesion mask", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def real_part(docs: Path, per_class: int = 2) -> dict:
    predictor = Predictor.from_bundle(None, device="cpu")
    checks = predictor.bundle.config["checks"]["images"]
    meta = pd.read_csv(REAL / "metadata.csv").set_index("filename")
    picks = []
    for cls in CLASSES:  # the bundle's own test images: adults first where the class has them
        rows = [c for c in checks if c["label"] == cls]
        rows.sort(key=lambda c: meta.loc[c["path"], "age_group"] != "adult")
        picks += rows[:per_class]
    out_dir = docs / "figures" / "gradcam"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(2.4 * len(picks), 2.9))
    shown = []
    for j, c in enumerate(picks):
        image = read_image(REAL / c["path"])
        pred = predictor.predict([image])[0]
        e = predictor.explain(image)
        small = e.overlay(alpha=0.5, size=224)
        name = f"{c['label']}_{j}.png"
        small.save(out_dir / name)
        ax = fig.add_subplot(1, len(picks), j + 1)
        ax.imshow(np.asarray(small))
        ax.set_xticks([])
        ax.set_yticks([])
        age = meta.loc[c["path"], "age_group"]
        source = meta.loc[c["path"], "source_key"]
        ax.set_title(f"true {c['label']} ({age}, {source})\npred {pred.label} "
                     f"p={pred.probabilities[pred.label]:.2f}", fontsize=7)
        shown.append({"file": f"figures/gradcam/{name}", "true": c["label"], "age_group": age,
                      "source": source, "predicted": pred.label,
                      "p": round(pred.probabilities[pred.label], 3)})
    fig.suptitle(f"Grad-CAM (layer4) of the predicted class, bundle {predictor.bundle.id}", fontsize=9)
    fig.savefig(docs / "figures" / "gradcam_real.png", dpi=110, bbox_inches="tight")
    model = predictor.bundle.build_model()
    xs = [predictor.preprocess(read_image(REAL / c["path"])).unsqueeze(0) for c in checks]
    from pepx.serving.gradcam import randomization_check

    rho = randomization_check(model, xs)
    return {"examples": shown, "randomisation_spearman_real": {"n": len(rho), "mean": float(rho.mean()),
                                                               "max": float(rho.max())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/gradcam", help="folder for the synthetic training run")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    docs = Path(args.docs)
    results = {"synthetic": synthetic_part(Path(args.work), docs, args.n_boot)}
    if not args.skip_real and (REAL / "metadata.csv").is_file():
        results["real"] = real_part(docs)
    out = docs / "results" / "gradcam"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradcam.json").write_text(json.dumps(results, indent=1) + "\n")
    print(results["synthetic"]["table"])
    brief = {k: v for k, v in results["synthetic"].items() if k not in ("table", "tables")}
    print(json.dumps(brief, indent=1))
    if "real" in results:
        print(json.dumps(results["real"], indent=1))


if __name__ == "__main__":
    main()
