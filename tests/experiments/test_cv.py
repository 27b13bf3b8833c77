"""`pepx reproduce --cv`: folds, pooled tables from fake runs, ablations, leave-source-out, --jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fakes.runs import fake_metrics_csv, mark_complete
from pepx import CLASSES
from pepx.cli import main
from pepx.data import load_source
from pepx.data.folds import TRAIN_ONLY, assign_folds, fold_split, lso_sources
from pepx.errors import ConfigError, RunError
from pepx.evaluation.metrics import PROB_COLUMNS
from pepx.experiments import get_profile
from pepx.experiments.ablations import ablation_names, ablation_runs
from pepx.experiments.cv import prepare_cv, reproduce_cv
from pepx.experiments.external import lso_runs
from pepx.experiments.grid import plan, pooled_predictions, run_dir, split_file
from pepx.experiments.parallel import threads_per_job
from pepx.experiments.profiles import ABLATIONS
from pepx.models import create_model
from pepx.training import TrainConfig

SYNTH = "synthetic:n_per_class=24,size=64"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    import os

    os.environ.setdefault("PEPX_CACHE", str(tmp_path_factory.mktemp("cache")))
    frame = load_source(SYNTH).manifest
    assert frame.groupby("patient_id").size().max() > 1  # patients with several images
    return frame


def _with_pseudo(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest with every site_c row turned into a per-image pseudo id (like cxr-real's crd)."""
    site_c = manifest["source"] == "site_c"
    return manifest.assign(patient_id_kind=np.where(site_c, "per_image_pseudo", "source_patient_id"),
                           patient_id=np.where(site_c, "pseudo-" + manifest.index.astype(str),
                                               manifest["patient_id"]))


# ---------------------------------------------------------------------- folds
def test_folds_are_patient_disjoint_class_stratified_and_cover_every_image_once(manifest):
    folded = assign_folds(manifest, 3, seed=0)
    assert len(folded) == len(manifest) and set(folded["fold"]) == {0, 1, 2}
    assert (folded.groupby("patient_id")["fold"].nunique() == 1).all()  # a patient sits in one fold
    counts = pd.crosstab(folded["fold"], folded["label"])
    assert (counts.max() - counts.min()).max() <= 2  # each class spread evenly
    seen = pd.concat([fold_split(folded, k).query("split == 'test'") for k in range(3)])
    assert sorted(seen["path"]) == sorted(manifest["path"])  # every image tested exactly once
    for k in range(3):
        split = fold_split(folded, k)
        train, test = split[split["split"] == "train"], split[split["split"] == "test"]
        assert not set(train["patient_id"]) & set(test["patient_id"])
        assert len(train) + len(test) == len(manifest)
    assert assign_folds(manifest, 3, seed=1)["fold"].tolist() != folded["fold"].tolist()


def test_pseudo_id_rows_train_only_unless_allowed(manifest):
    pseudo = _with_pseudo(manifest)
    folded = assign_folds(pseudo, 3)
    is_pseudo = folded["patient_id_kind"] == "per_image_pseudo"
    assert (folded.loc[is_pseudo, "fold"] == TRAIN_ONLY).all() and (folded.loc[~is_pseudo, "fold"] >= 0).all()
    for k in range(3):
        split = fold_split(folded, k)
        assert (split.loc[split["patient_id_kind"] == "per_image_pseudo", "split"] == "train").all()
    allowed = assign_folds(pseudo, 3, pseudo_test=True)
    assert (allowed["fold"] >= 0).all()


def test_inner_validation_never_touches_the_test_fold(manifest):
    folded = assign_folds(manifest, 3)
    split = fold_split(folded, 1, inner_val=True)
    test_fold = set(folded.loc[folded["fold"] == 1, "path"])
    assert not test_fold & set(split["path"])  # neither trained on nor scored
    assert set(split.loc[split["split"] == "test", "path"]) == set(folded.loc[folded["fold"] == 2, "path"])
    assert set(split["cv_role"]) == {"train", "inner_val"}
    with pytest.raises(ConfigError, match="--cv 3"):
        fold_split(assign_folds(manifest, 2), 0, inner_val=True)


def test_too_many_folds_and_leave_source_out_sources(manifest):
    with pytest.raises(ConfigError, match="patients"):
        assign_folds(manifest, 30)
    real = pd.DataFrame({"source": ["a"] * 10 + ["b"] * 6 + ["c"] * 12,
                         "label": ["normal"] * 5 + ["pneumonia"] * 5 + ["normal"] * 2 + ["COVID-19"] * 4
                         + ["COVID-19"] * 12})
    assert lso_sources(real) == ["a"]  # b has only 2 normal images, c a single class


def test_threads_per_job():
    assert threads_per_job(1, None, cores=8) is None and threads_per_job(1, 3, cores=8) == 3
    assert threads_per_job(2, None, cores=8) == 4 and threads_per_job(4, 1, cores=8) == 1
    assert threads_per_job(3, None, cores=2) == 1
    with pytest.raises(ConfigError):
        threads_per_job(0, None)


def test_ablation_variants_build_the_switched_models():
    profile = get_profile("smoke")
    checks = {
        "fixed-abc": lambda m: not any(n.endswith(".A") for n, _ in m.named_parameters()),
        "no-pepx": lambda m: m.pepx_stream is None and not hasattr(m.layer1[0], "C"),
        "depthwise": lambda m: m.pepx_stream[1].conv3x3[0].groups > 1,
        "pepx-on-block": lambda m: m.pepx_stream is None and m.layer1[0].pepx is not None,
    }
    for variant, check in checks.items():
        values = profile.train_config("pepx_resnet", "focal", 0, "s.csv", variant=variant)
        config = TrainConfig.from_dict(values)
        assert check(create_model(config.model, **config.model_kwargs)), variant
    with pytest.raises(ConfigError, match="PEPX-ResNet switch"):
        profile.train_config("resnet18", "focal", 0, "s.csv", variant="no-pepx")


# ---------------------------------------------------------------------- report from fake runs
ACCURACY = {("pepx_resnet", ""): 0.9, ("resnet18", ""): 0.7, ("covidnet", ""): 0.5,
            ("pepx_resnet", "no-pepx"): 0.6}


def _fake_predictions(rows: pd.DataFrame, accuracy: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y_true = rows["label"].map(CLASSES.index).to_numpy()
    y_pred = np.where(rng.random(len(rows)) < accuracy, y_true, (y_true + 1) % 3)
    probs = np.full((len(rows), 3), 0.1)
    probs[np.arange(len(rows)), y_pred] = 0.8
    out = rows[["path", "label", "patient_id", "source", "age_group"]].assign(split="test", y_true=y_true,
                                                                               y_pred=y_pred)
    out[list(PROB_COLUMNS)] = probs
    return out


def _fake_cv(out: Path, profile, manifest: pd.DataFrame) -> list:
    """Complete fake run folders for the grid, the ablations and leave-source-out (nothing to train)."""
    cv = prepare_cv(profile, out, 3)
    runs = plan(profile.models, profile.losses, [0], range(3)) + ablation_runs("focal", [0], range(3))
    runs = list(dict.fromkeys(runs + lso_runs(["pepx_resnet"], "focal", [0], lso_sources(cv.folded))))
    for i, run in enumerate(runs):
        split = pd.read_csv(cv.write_split(split_file(out, run.fold, held_out=run.held_out), run.fold,
                                          held_out=run.held_out))
        test = split.query("split == 'test'")
        accuracy = ACCURACY.get((run.model, run.variant), 0.85)
        folder = run_dir(out, run)
        fake_metrics_csv(folder / "metrics.csv", epochs=profile.epochs, seed=i, level=accuracy,
                         residuals=run.model == "pepx_resnet")
        _fake_predictions(test, accuracy, seed=i).to_csv(folder / "predictions.csv", index=False)
        split.to_csv(folder / "split.csv", index=False)  # as training writes it (with `view`)
        mark_complete(folder, profile.epochs)
    return runs


def test_pooled_tables_equal_a_hand_computation_from_the_fold_predictions(manifest, tmp_path):
    profile = get_profile("smoke", data=SYNTH, epochs=3, seeds=1, n_boot=200)
    out = tmp_path / "cv"
    runs = _fake_cv(out, profile, manifest)
    logs: list[str] = []
    report = reproduce_cv(profile, out, 3, ablations=list(ABLATIONS), leave_source_out=True,
                          lso_models=["pepx_resnet"], log=logs.append)
    assert sum("complete, skipped" in line for line in logs) == len(runs)  # nothing trained
    summary = pd.read_csv(out / "summary.csv").set_index(["model", "loss", "metric"])
    for model in profile.models:
        folds = [pd.read_csv(run_dir(out, r) / "predictions.csv") for r in runs
                 if r.model == model and r.loss == "focal" and not r.variant and not r.held_out]
        pooled = pd.concat(folds)
        assert len(pooled) == len(manifest) and pooled["path"].is_unique
        right = pooled["y_true"] == pooled["y_pred"]
        assert summary.loc[(model, "focal", "accuracy"), "mean"] == pytest.approx(right.mean())
        covid = pooled["y_true"] == 2
        assert summary.loc[(model, "focal", "recall_COVID-19"), "mean"] == pytest.approx(right[covid].mean())
        per_fold = pd.read_csv(out / "fold_accuracy.csv").set_index("cell")
        label = {"pepx_resnet": "PEPX-ResNet", "resnet18": "ResNet18", "covidnet": "COVID-Net"}[model]
        assert per_fold.loc[f"{label} + focal", "fold 0"] == pytest.approx(
            (folds[0]["y_true"] == folds[0]["y_pred"]).mean())
    table1 = pd.read_csv(out / "table1.csv").set_index(["model", "loss"])
    assert table1.loc[("pepx_resnet", "focal"), "Accuracy_mean"] == summary.loc[
        ("pepx_resnet", "focal", "accuracy"), "mean"]
    ablations = pd.read_csv(out / "ablations.csv").set_index("ablation")
    assert list(ablations.index) == ["fixed-abc", "no-pepx", "depthwise", "pepx-on-block"]
    no_pepx = ablations.loc["no-pepx"]
    assert no_pepx["diff"] > 0.15 and no_pepx["p_holm"] < 0.05 and no_pepx["sentence"].startswith("Matters")
    lso = pd.read_csv(out / "leave_source_out.csv")
    assert set(lso["source"]) == {"site_a", "site_b", "site_c"}
    held = pd.read_csv(run_dir(out, next(r for r in runs if r.held_out == "site_a")) / "predictions.csv")
    row = lso.set_index("source").loc["site_a"]
    assert len(held) == (manifest["source"] == "site_a").sum()
    assert row["accuracy"] == pytest.approx((held["y_true"] == held["y_pred"]).mean())
    text = report.read_text()
    for heading in ("## Tables 1–4", "### Accuracy per fold", "## Paired tests", "80 % power for",
                    "## Ablations of the paper's choices", "## Leave-source-out", "### Leak check per split",
                    "### By source", "Every row has a real patient id"):
        assert heading in text, heading
    assert "can be neither confirmed nor ruled out" in text or "is ruled out" in text or "is better" in text
    # adults-only table beside the headline; by view (from each run's split.csv: predictions lack `view`)
    adults = text.split("## Adults only: normal / pneumonia / COVID-19 (PEPX-ResNet + focal)", 1)[1]
    n_adults = int((manifest["age_group"] == "adult").sum())
    assert adults.index("## Tables 1–4") > adults.index(f"{n_adults} adult images of")
    assert f"| PA | {len(manifest)} |" in text.split("### By view", 1)[1]  # the synthetic films are all PA
    # easier to optimise: epoch 3 of 3 here (too short for an early epoch), paired over the 3 folds
    assert "## Is PEPX-ResNet easier to optimise?" in text and "epoch 3 of 3 (the last" in text
    tests = pd.read_csv(out / "optimisation.csv").set_index(["b", "measure"])
    acc = [pd.read_csv(run_dir(out, r) / "metrics.csv").set_index("epoch").loc[3, "test_acc"]
           for m in ("pepx_resnet", "covidnet") for r in runs
           if (r.model, r.loss, r.variant, r.held_out) == (m, "focal", "", "")]
    expected = np.mean(acc[:3]) - np.mean(acc[3:])
    assert tests.loc[("COVID-Net + focal", "test_acc"), "diff"] == pytest.approx(expected)
    assert tests.loc[("COVID-Net + focal", "test_acc"), "n_folds"] == 3
    assert tests.loc[("COVID-Net + focal", "train_loss"), "verdict"] == "no significant difference"  # equal
    _png(out / "figure_optimisation.png")


def _png(path: Path) -> None:
    """A real PNG, two rows of panels (one per loss) high."""
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 500 and im.size[1] > 0.6 * im.size[0]


def test_an_image_predicted_by_two_folds_is_refused(manifest, tmp_path):
    profile = get_profile("smoke", data=SYNTH, epochs=3, seeds=1, n_boot=200)
    runs = _fake_cv(tmp_path / "cv", profile, manifest)
    folders = {r: run_dir(tmp_path / "cv", r) for r in runs
               if r.model == "resnet18" and r.loss == "ce" and r.fold in (0, 1)}
    first = next(iter(folders.values())) / "predictions.csv"
    second = list(folders.values())[1] / "predictions.csv"
    pd.concat([pd.read_csv(second), pd.read_csv(first).head(1)]).to_csv(second, index=False)
    with pytest.raises(RunError, match="predicted by two folds"):
        pooled_predictions(folders)


def test_report_only_rebuilds_the_report_and_refuses_missing_runs(manifest, tmp_path, capsys):
    profile = get_profile("smoke", data=SYNTH, epochs=3, seeds=1, n_boot=200)
    out = tmp_path / "cv"
    runs = _fake_cv(out, profile, manifest)
    kwargs = dict(ablations=list(ABLATIONS), leave_source_out=True, lso_models=["pepx_resnet"], log=print)
    before = reproduce_cv(profile, out, 3, **kwargs).read_text()
    (out / "report.md").unlink()
    (out / "summary.csv").unlink()
    after = reproduce_cv(profile, out, 3, report_only=True, **kwargs).read_text()
    assert "training" not in capsys.readouterr().out and (out / "summary.csv").exists()
    untimed = [[line for line in text.splitlines() if "this call" not in line] for text in (before, after)]
    assert untimed[0] == untimed[1]
    (run_dir(out, runs[5]) / "model.safetensors").unlink()  # a run the other machine has not finished
    (run_dir(out, runs[7]) / "model.safetensors").unlink()
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    args = ["reproduce", "--cv", "3", "--profile", "smoke", "--data", SYNTH, "--epochs", "3", "--seeds", "1",
            "--ablations", "--leave-source-out", "--lso-models", "pepx_resnet", "--report-only",
            "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"2 of {len(runs)} runs in {out} are not complete" in err and err.count("\n") == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == files  # nothing written
    assert main(["reproduce", "--report-only", "--out", str(tmp_path / "none")]) == 2
    assert "no grid here (grid.json not found)" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_cv_folder_refuses_other_settings(manifest, tmp_path):
    profile = get_profile("smoke", data=SYNTH, epochs=3)
    prepare_cv(profile, tmp_path, 3)
    prepare_cv(profile.with_overrides(seeds=5, models=["resnet18"]), tmp_path, 3)  # free settings
    with pytest.raises(ConfigError, match="cv"):
        prepare_cv(profile, tmp_path, 4)
    with pytest.raises(ConfigError, match="pseudo_test"):
        prepare_cv(profile, tmp_path, 3, pseudo_test=True)


def test_cv_only_flags_need_cv():
    assert main(["reproduce", "--ablations"]) == 2


def test_ablations_by_name_train_and_report_only_those(manifest, tmp_path, capsys):
    assert ablation_names(None) == ablation_names([]) == list(ABLATIONS)
    assert ablation_names(["no-pepx", "fixed-abc", "no-pepx"]) == ["no-pepx", "fixed-abc"]
    with pytest.raises(ConfigError, match="unknown ablation nope: choose among fixed-abc"):
        ablation_names(["nope"])
    runs = ablation_runs("focal", [0], [0, 1], variants=["no-pepx"])
    assert [(r.variant, r.fold) for r in runs] == [("", 0), ("", 1), ("no-pepx", 0), ("no-pepx", 1)]
    assert main(["reproduce", "--cv", "3", "--ablations", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown ablation nope" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    profile = get_profile("smoke", data=SYNTH, epochs=3, seeds=1, n_boot=200)
    out = tmp_path / "cv"
    _fake_cv(out, profile, manifest)
    logs: list[str] = []
    report = reproduce_cv(profile, out, 3, ablations=["no-pepx", "depthwise"], log=logs.append)
    assert not any("training" in line for line in logs)
    assert list(pd.read_csv(out / "ablations.csv")["ablation"]) == ["no-pepx", "depthwise"]
    assert "Not run here: fixed-abc, pepx-on-block" in report.read_text()


# ---------------------------------------------------------------------- training, in parallel
@pytest.mark.slow
def test_jobs_2_gives_the_same_predictions_as_jobs_1(tmp_path, monkeypatch):
    monkeypatch.setenv("PEPX_CACHE", str(tmp_path / "cache"))
    args = ["reproduce", "--cv", "3", "--folds", "0", "1", "--profile", "smoke", "--data", SYNTH,
            "--epochs", "1", "--seeds", "1", "--models", "pepx_resnet", "resnet18", "--losses", "focal"]
    assert main([*args, "--out", str(tmp_path / "one"), "--jobs", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "one" / "runs").iterdir())
    assert len(names) == 4
    for name in names:
        one = pd.read_csv(tmp_path / "one" / "runs" / name / "predictions.csv")
        two = pd.read_csv(tmp_path / "two" / "runs" / name / "predictions.csv")
        pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert "2 (0, 1) of the folds run" in (tmp_path / "two" / "report.md").read_text()


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc; zombies excluded)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_to_a_parallel_grid_stops_its_workers_and_resumes(tmp_path):
    """SIGTERM to `pepx reproduce --jobs 2` (a scheduler's pre-emption) stops the workers too: exit 143 with
    one line, no worker left training, and the same command then finishes the grid (resuming)."""
    env = {**os.environ, "PEPX_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "pepx.cli", "reproduce", "--cv", "3", "--folds", "0", "--profile", "smoke",
            "--data", "synthetic:n_per_class=60,size=64", "--epochs", "4", "--seeds", "1",
            "--models", "pepx_resnet", "resnet18", "--losses", "focal", "--jobs", "2",
            "--out", str(tmp_path / "g")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "g" / "runs"
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and not list(runs.glob("*/checkpoints/*.ckpt")):
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "the grid ended before a checkpoint: nothing to stop"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, (proc.returncode, stdout, stderr)
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert "interrupted by SIGTERM" in stderr
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "workers still running after the grid was stopped"
    assert not (runs / "pepx_resnet-focal-seed0-fold0" / "model.safetensors").exists()
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout and (tmp_path / "g" / "report.md").exists()


def test_recipe_ranking_from_fake_inner_runs(manifest, tmp_path):
    from pepx.experiments.recipe import score_recipes

    accuracy = {"base": 0.4, "aug": 0.95}
    for name, acc in accuracy.items():
        profile = get_profile(name, data=SYNTH, epochs=3, seeds=1, models=["pepx_resnet"], losses=["focal"],
                              n_boot=200)
        out = tmp_path / name
        cv = prepare_cv(profile, out, 3)
        folded = cv.folded
        for fold in range(3):
            run = plan(["pepx_resnet"], ["focal"], [0], [fold], inner=True)[0]
            test = pd.read_csv(cv.write_split(split_file(out, fold, True), fold, True)).query("split=='test'")
            assert set(test["path"]) == set(folded.loc[folded["fold"] == (fold + 1) % 3, "path"])
            fake_metrics_csv(run_dir(out, run) / "metrics.csv", epochs=3, level=acc)
            _fake_predictions(test, acc, seed=fold).to_csv(run_dir(out, run) / "predictions.csv", index=False)
            mark_complete(run_dir(out, run), 3)
    report = score_recipes(["base", "aug"], tmp_path, k=3, data=SYNTH, epochs=3, n_boot=200,
                           log=lambda _: None)
    table = pd.read_csv(tmp_path / "recipes.csv")
    assert table["candidate"].tolist() == ["aug", "base"]
    assert table["changes"].tolist() == ["augment=True", "(base)"]
    assert table.loc[0, "n_images"] == len(manifest)  # every image validated once, over the outer folds
    assert table.loc[1, "best_minus_diff"] > 0.3 and table.loc[1, "p_holm"] < 0.05
    assert "inner validation folds" in report.read_text()
