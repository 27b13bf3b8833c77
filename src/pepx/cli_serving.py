"""The `pepx` sub-commands that use a trained model: `predict`, `export`, `serve`, `gate` — their parsers
and handlers, registered by `pepx.cli` with `add_parsers` (a module of its own to keep `cli.py` short). Each
handler only parses, calls the library and prints; imports are lazy so that `pepx --help` stays instant."""

from __future__ import annotations

import argparse
import os
import sys

from pepx.console import POSITIVE, float_range, int_range


# --------------------------------------------------------------------------- predict
def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="class and calibrated probabilities of chest X-rays, Grad-CAM maps")
    p.add_argument("inputs", nargs="+", help="image files (PNG, JPEG, DICOM, ...), folders (recursive), "
                   "globs")
    p.add_argument("--model", help="bundle or run folder (default: the bundle shipped with pepx)")
    p.add_argument("--out", help="write every row to a .csv or .json file (default: print a table)")
    p.add_argument("--cam", metavar="DIR", help="write a Grad-CAM overlay (.png) and raw map (.npy) per "
                   "image")
    p.add_argument("--cam-class", help="class to explain (default: the predicted one)")
    p.add_argument("--cam-layer", help="Grad-CAM target layer (default: the last stage, e.g. layer4)")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="torch (default), or onnx: the bundle's model.onnx on ONNX Runtime")
    p.add_argument("--batch-size", type=int_range(1, 65_536), default=32,
                   help="images per forward pass (default: 32)")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--no-gate", action="store_true", help="turn the input gate off (a class for any image)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from pepx.serving import files
    from pepx.training.layout import RunLayout

    run_folder = bool(args.model and RunLayout(args.model).config.is_file())
    if run_folder:  # imports Lightning
        from pepx.release.build import predictor_from_run

        predictor = predictor_from_run(args.model, runtime=args.runtime, device=args.device)
    else:
        from pepx.serving import Predictor

        predictor = Predictor.from_bundle(args.model, runtime=args.runtime, device=args.device,
                                          gate=not args.no_gate)
    inputs = files.collect_inputs(args.inputs)
    files.check_outputs(predictor, args.inputs, inputs, args.out, args.cam, args.cam_class, args.cam_layer)
    preds = predictor.predict(inputs, batch_size=args.batch_size)
    for p in preds:
        if p.status != "ok":
            print(f"pepx predict: skipped {p.to_row()['source']}: {p.error}", file=sys.stderr)
    print("\n".join(files.report(predictor, preds, args.out, args.cam, args.cam_class, args.cam_layer,
                                  calibrated=not run_folder)))
    if not any(p.status == "ok" for p in preds):
        print(f"pepx predict: error: none of the {len(preds)} inputs could be read", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------- export
def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export",
                       help="bundle a trained run (calibrated, with a model card); ONNX, TorchScript")
    p.add_argument("source", help="run folder written by `pepx train`, or a bundle folder")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--format", nargs="+", choices=["onnx", "torchscript"], default=[],
                   help="also write model.onnx / model.torchscript.pt and check their parity")
    p.add_argument("--calibrate", metavar="SOURCE",
                   help="data to fit the temperature on (default: the run's val split)")
    p.add_argument("--target", nargs="*", metavar="CLASS=SENS", default=None,
                   help="operating points: validation sensitivity per class (default: COVID-19=0.95)")
    p.add_argument("--id", help="bundle id (default: MODEL-LOSS-RUNNAME)")
    p.add_argument("--version", default="0.1.0", help="the bundle's version (default: 0.1.0)")
    p.add_argument("--fp32", action="store_true", help="store every weight as fp32 (default: fp16 for large)")
    p.add_argument("--n-boot", type=POSITIVE, default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--report", help="evaluation folder (default: RUN/bundle_report)")
    p.add_argument("--recipe", help="the command that trained the run, quoted in the model card")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out (never a run folder)")
    p.add_argument("--gate-ood", metavar="DIR", help="images of other kinds (cxr-ood layout) for the gate")
    p.add_argument("--no-gate", action="store_true", help="make no input gate")
    p.add_argument("--history", metavar="JSON", help="earlier versions of this bundle (a list of objects of "
                   "short texts) for config.json and the card's History table")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pepx.serving.bundle import check_bundle_out, is_bundle, load_bundle
    from pepx.serving.export import export_report

    if is_bundle(args.source):
        bundle = load_bundle(args.source)
        if Path(args.out).resolve() != bundle.path.resolve():
            bundle = bundle.save(check_bundle_out(args.out, bundle.id, args.force))
    else:
        from pepx.release.build import bundle_from_run, parse_targets, read_history
        from pepx.release.settings import ExportSettings

        settings = ExportSettings(bundle_id=args.id, version=args.version, calibrate=args.calibrate,
                                  targets=parse_targets(args.target), half=not args.fp32, n_boot=args.n_boot,
                                  report_dir=args.report, command=args.recipe, force=args.force,
                                  gate=not args.no_gate, gate_ood=args.gate_ood,
                                  history=read_history(args.history) if args.history else None)
        result = bundle_from_run(args.source, args.out, settings)
        bundle = result.bundle
        print(result.text)
    print(f"bundle: {bundle.path} ({bundle.weights_bytes / 1e6:.1f} MB weights, sha256 "
          f"{bundle.sha256[:16]}...)")
    if args.format:
        print("\n".join(export_report(bundle, args.format)))
    return 0


# --------------------------------------------------------------------------- serve
def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="REST API and web page for a bundle (FastAPI on uvicorn)")
    p.add_argument("--model", help="bundle folder (default: the bundle shipped with pepx)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1: this machine)")
    p.add_argument("--port", type=POSITIVE, default=8000, help="port (default: 8000)")
    p.add_argument("--token", default=os.environ.get("PEPX_TOKEN") or None,
                   help="bearer token required on every /v1/ call (default: $PEPX_TOKEN; unset: none)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from ORIGIN (repeatable; default: no CORS)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: ONNX Runtime when the bundle has an ONNX export and it measures faster")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--channels-last", action="store_true",
                   help="torch in channels-last memory format: faster on many CPUs, ~1e-6 from pepx predict")
    p.add_argument("--max-upload-mb", type=float_range(0.0, True), default=32.0,
                   help="largest request body (default: 32)")
    p.add_argument("--max-batch", type=POSITIVE, default=16,
                   help="images per forward pass (1: no batching)")
    p.add_argument("--max-wait-ms", type=float_range(0.0, False), default=5.0,
                   help="wait for a batch to fill (default: 5)")
    p.add_argument("--max-queue", type=POSITIVE, default=64,
                   help="images waiting before 503 (default: 64)")
    p.add_argument("--decode-workers", type=POSITIVE, default=2,
                   help="threads decoding uploads and drawing Grad-CAM (default: 2)")
    p.add_argument("--no-gate", action="store_true", help="turn the input gate off")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from pepx.serving.server import serve
    from pepx.serving.settings import ServeSettings

    settings = ServeSettings(token=args.token, cors_origins=tuple(args.cors),
                             max_upload_mb=args.max_upload_mb, max_batch=args.max_batch,
                             max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                             decode_workers=args.decode_workers)
    serve(args.model, host=args.host, port=args.port, runtime=args.runtime, device=args.device,
          channels_last=args.channels_last, settings=settings, gate=not args.no_gate)
    return 0


# --------------------------------------------------------------------------- gate
def _add_gate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="the input gate: fit it onto a bundle, measure it")
    gsub = p.add_subparsers(dest="gate_cmd", required=True)
    for name, text in (("fit", "fit a bundle's gate on a split (train: fit, val: thresholds, test: report)"),
                       ("evaluate", "AUROC per kind of image, frontal films rejected by source and age")):
        g = gsub.add_parser(name, help=text)
        g.add_argument("bundle", help="bundle folder")
        g.add_argument("--split", required=True, help="split CSV (`pepx data split`, a run's split.csv)")
        g.add_argument("--ood", metavar="DIR", help="images of other kinds (cxr-ood layout: metadata.csv "
                       "with kind); fit reads its dev part, evaluate its test part")
        g.add_argument("--n-boot", type=POSITIVE, default=1000, help="bootstrap resamples (default 1000)")
        g.set_defaults(func=_cmd_gate)
    fit_p, eval_p = gsub.choices["fit"], gsub.choices["evaluate"]
    fit_p.add_argument("--out", help="new bundle folder: a gated copy of BUNDLE")
    fit_p.add_argument("--in-place", action="store_true", help="rewrite only BUNDLE's gate (file, config "
                       "section, card section)")
    fit_p.add_argument("--report", help="test evaluation folder (default: OUT-gate-report)")
    eval_p.add_argument("--out", required=True, help="report folder")
    eval_p.add_argument("--unseen", metavar="SOURCE", help="frontal films of sources the network never saw")
    eval_p.add_argument("--unseen-source", nargs="+", help="keep only these `source` values of --unseen")


def _cmd_gate(args: argparse.Namespace) -> int:
    from pepx.release import gate

    if args.gate_cmd == "fit":
        lines = gate.fit_command(args.bundle, args.split, args.out, args.in_place, args.ood, args.report,
                                 args.n_boot)
    else:
        lines = gate.evaluate_command(args.bundle, args.split, args.out, args.ood, args.unseen,
                                      args.unseen_source, args.n_boot)
    print("\n".join(lines))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register predict, export, serve and gate on the `pepx` parser's sub-commands."""
    for add in (_add_predict_parser, _add_export_parser, _add_serve_parser, _add_gate_parser):
        add(sub)


__all__ = ["add_parsers"]
