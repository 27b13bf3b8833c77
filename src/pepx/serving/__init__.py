"""Use a trained model: bundles, `Predictor` (predict + Grad-CAM), the input gate, the HTTP app, export.

Inference only: nothing here imports `pepx.training` or Lightning (`tests/test_architecture.py` checks it);
making a bundle from a run folder is `pepx.release`'s.
"""

from pepx.errors import BundleError
from pepx.serving.bundle import Bundle, default_bundle_path, load_bundle
from pepx.serving.gradcam import Explanation
from pepx.serving.predictor import Prediction, Predictor

__all__ = ["Bundle", "BundleError", "Explanation", "Prediction", "Predictor", "default_bundle_path",
           "load_bundle"]
