"""`pepx evaluate RUN` prints its headline: accuracy, macro-F1, recall per class with CIs, and adults only."""

from __future__ import annotations

import json
import re

import pytest

from pepx.cli import main
from pepx.evaluation.report import fmt_ci


@pytest.mark.slow
def test_evaluate_prints_the_headline(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "epochs=1", "image_size=32", "n_train=8", "n_test=6",
                 "batch_size=8", "model_kwargs={width: 0.25}", "progress=false"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out.splitlines()
    saved = json.loads((run / "eval" / "metrics.json").read_text())
    rows = {r["metric"]: r for r in saved["metrics"]}

    def ci(name: str) -> str:
        return fmt_ci(rows[name]["value"], rows[name]["low"], rows[name]["high"])

    assert out[0].startswith("18 images of ") and "95 % CIs" in out[0]
    assert out[1] == f"accuracy  {ci('accuracy')}"
    assert out[2] == f"macro-F1  {ci('macro_f1')}"
    assert re.fullmatch(r"recall    Normal \S+ \[\S+, \S+\]   Non-COVID \S+ \[\S+, \S+\]   COVID-19 \S+ "
                        r"\[\S+, \S+\]", out[3]), out[3]
    assert f"COVID-19 {ci('recall_COVID-19')}" in out[3]
    adults = saved["adults"]
    expected = (adults["note"] if adults.get("note") else
                f"accuracy {fmt_ci(*[adults['metrics'][0][k] for k in ('value', 'low', 'high')])}")
    assert out[4].startswith("adults    ") and expected in out[4]
    assert out[5] == f"report: {run / 'eval' / 'report.md'}"
