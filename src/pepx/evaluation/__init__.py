"""Evaluation: metrics with patient-bootstrap CIs, paired McNemar tests, per-group breakdowns, reports.

Statistics on predictions only: scoring a trained run is `pepx.training.evaluate_run`.
"""

from pepx.evaluation.bootstrap import bootstrap_metrics, metric_samples, patient_resamples
from pepx.evaluation.breakdown import breakdown, breakdowns
from pepx.evaluation.evaluate import evaluate_predictions
from pepx.evaluation.metrics import compute_metrics, confusion_matrix, mean_predictions, metric_names
from pepx.evaluation.stats import holm, mcnemar, pairwise_tests

__all__ = [
    "bootstrap_metrics", "breakdown", "breakdowns", "compute_metrics", "confusion_matrix",
    "evaluate_predictions", "holm", "mcnemar", "mean_predictions", "metric_names",
    "metric_samples", "pairwise_tests", "patient_resamples",
]
