"""Release a trained run: run folder -> calibrated bundle with its model card and input gate.

`pepx.release.build.bundle_from_run` (`pepx export RUN`), `predictor_from_run` (`pepx predict --model RUN`),
`pepx.release.gate` (`pepx gate fit` / `evaluate`), `pepx.release.card` (the model card and its caveats),
`pepx.release.runs.read_run` (the one place a run folder is read). Sits above `pepx.training` (it loads runs,
so it imports Lightning) and `pepx.serving` (whose `Predictor` scores the run exactly as the bundle will).
"""
