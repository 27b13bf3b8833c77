"""Use a trained model: bundles, `Predictor` (predict + Grad-CAM), calibration and export.

The inference path (`load_bundle`, `Predictor`, `Prediction`, Grad-CAM) never imports Lightning; making a
bundle from a run folder (`pepx.serving.build`) does, through `pepx.training`.
"""

from pepx.errors import BundleError
from pepx.serving.bundle import Bundle, default_bundle_path, load_bundle
from pepx.serving.gradcam import Explanation
from pepx.serving.predictor import Prediction, Predictor

__all__ = ["Bundle", "BundleError", "Explanation", "Prediction", "Predictor", "default_bundle_path",
           "load_bundle"]
