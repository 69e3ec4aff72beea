"""`sensorium-serve insilico`: in-silico experiments on a model (docs/INSILICO.md).

- ``insilico tuning``: drifting gratings and sparse noise through a served model's PredictClip (numpy only,
  models.insilico), or through the synthetic generator's own noise-free response function (``--generator``);
  with a truth folder, the agreement with the ground truth too.
- ``insilico mei``: most exciting inputs by gradient ascent on the training checkpoint (torch, training side:
  models.insilico.mei, imported only when the command runs).

Both write into a results folder (``--out``, one subfolder per model) that ``sensorium-serve web --insilico``
shows as report pages.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("insilico")
REQUEST_TIMEOUT_S = (
    600.0  # one PredictClip request carries a batch of clips (seconds of compute for 8,000 neurons)
)

TUNING_EPILOG = """\
examples:
  sensorium-serve insilico tuning --target localhost:50051 --model SESSION --truth runs/demo/data/truth
  sensorium-serve insilico tuning --generator runs/demo/data --model SESSION

writes OUT/<label>/tuning.npz (every per-neuron array) and tuning.json (population summary); with a truth
folder also truth_check.json / .npz (agreement with the synthetic ground truth, binned by test correlation).
Behaviour and eye position are held at the training means, the grey level at the mean pixel: read from the
session's released statistics (--data, else the training data folder the model's provenance names, else the
truth folder's sibling public/).
"""


def parse_unit_ids(text: str) -> list[int]:
    """``"12,40,77"`` -> [12, 40, 77]; ValueError naming the bad item."""
    ids = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            ids.append(int(item))
        except ValueError:
            raise ValueError(
                f"--neurons: {item!r} is not a unit id (give comma-separated integers)"
            ) from None
    if not ids:
        raise ValueError("--neurons: no unit ids given")
    return ids


class ServedModel:
    """A `models.insilico.experiment.ResponseModel` over a server's PredictClip (one clip batch per call)."""

    def __init__(self, client: Any, model: str, version: int = 0) -> None:
        info = client.get_model(model).version(version)
        if not info.clip_ready:
            raise LookupError(f"model {model} v{info.version}: clip graph not ready ({info.clip_reason})")
        self.client, self.model, self.version = client, model, info.version
        self.unit_ids = np.asarray(info.unit_ids, dtype=np.int64)
        self.warmup = info.receptive_field - 1
        self.info = info

    def predict(self, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        clip = self.client.predict_clip(self.model, video, behavior, pupil_center, version=self.version)
        return clip.responses


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "insilico",
        help="in-silico experiments: tuning curves, receptive fields, most exciting inputs",
        description="In-silico experiments on a model of visual cortex (docs/INSILICO.md).",
    )
    sub = p.add_subparsers(dest="insilico_command", required=True, metavar="EXPERIMENT")
    _add_tuning(sub)
    _add_mei(sub)


def _add_tuning(sub: argparse._SubParsersAction) -> None:
    from models.insilico.stimuli import GratingProtocol, SparseNoiseProtocol

    g, s = GratingProtocol(), SparseNoiseProtocol()
    p = sub.add_parser(
        "tuning",
        help="drifting-grating tuning and sparse-noise receptive fields of every neuron",
        description=textwrap.fill(
            f"Show a model drifting gratings ({g.directions} directions x {len(g.spatial_frequencies)} spatial x "
            f"{len(g.temporal_frequencies)} temporal frequencies, one clip each) and sparse noise of drifting "
            "Gabor patches, then fit per neuron: preferred direction and orientation, OSI, DSI, response "
            "amplitude, F1/F0 (simple vs complex), and a Gaussian receptive field (centre, size). The model is a "
            "served one (--target, through PredictClip, in batches of clips) or the synthetic generator's own "
            "noise-free response function (--generator).",
            100,
        ),
        epilog=TUNING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--target", metavar="H:P", help="server address of the model (host:port)")
    source.add_argument(
        "--generator",
        type=Path,
        metavar="DIR",
        help="a synthetic dataset (DIR/public + DIR/truth): analyse the generator's noise-free response function",
    )
    _add_target_options(p)
    p.add_argument("--model", required=True, metavar="MOUSE", help="model (session) name")
    p.add_argument(
        "--truth",
        type=Path,
        metavar="DIR/truth",
        help="synthetic truth folder: also check the result against each neuron's true parameters",
    )
    p.add_argument("--data", type=Path, metavar="DIR/public", help="released data (training means)")
    p.add_argument("--neurons", metavar="IDS", help="comma-separated unit ids (default: every neuron)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    p.add_argument(
        "--label", help="subfolder name (default: the model name, '<model>-generator' with --generator)"
    )
    p.add_argument(
        "--flashes",
        type=int,
        default=s.flashes,
        help=f"sparse-noise flashes of {s.patches} patches each (default {s.flashes}; fewer is faster, noisier)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (summary + truth check) on stdout"
    )
    p.set_defaults(handler=_run_tuning)


def _add_target_options(p: argparse.ArgumentParser) -> None:
    """--round-robin, --version and the security flags of the client commands (--target is optional here)."""
    from client.predictor import add_security_arguments

    p.add_argument(
        "--round-robin", action="store_true", help="client-side round_robin over the target's addresses"
    )
    p.add_argument("--version", type=int, default=0, help="model version (default 0: the newest ready one)")
    add_security_arguments(p)


def _add_mei(sub: argparse._SubParsersAction) -> None:
    from models.insilico.results import MEIOptions

    d = MEIOptions()
    p = sub.add_parser(
        "mei",
        help="most exciting inputs (MEIs) of neurons by gradient ascent on the training checkpoint",
        description=(
            "Optimise a short clip per neuron to maximise its predicted response (mean over the clip's last "
            "output frames) under a fixed RMS-contrast budget around the training grey level: gradient ascent "
            "with a Gaussian-blurred gradient, clipping to the pixel range and projection onto the budget after "
            "every step, several random starts (Walker et al. 2019). Reports each MEI's activation next to that of "
            "the best natural clip (training videos, rescaled to the same budget). Needs the train extra (torch)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", required=True, type=Path, help="training output folder (best.pt) or checkpoint")
    p.add_argument("--mouse", required=True, metavar="MOUSE", help="session name")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--neurons", metavar="IDS", help="comma-separated unit ids")
    which.add_argument(
        "--top", type=int, metavar="K", help="the K neurons the model predicts best (oracle-tier correlation)"
    )
    p.add_argument(
        "--data", type=Path, metavar="DIR/public", help="released data (default: the run's training data)"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--label", help="subfolder name (default: the mouse)")
    p.add_argument("--starts", type=int, default=d.starts, help="random starts per neuron")
    p.add_argument("--steps", type=int, default=d.steps, help="gradient steps")
    p.add_argument("--contrast", type=float, default=None, help="RMS contrast budget in grey levels "
                   "(default: the median RMS contrast of the natural clips)")  # fmt: skip
    p.add_argument("--natural-clips", type=int, default=d.natural_clips, help="natural clips to compare with")
    p.add_argument("--seed", type=int, default=d.seed, help="random starts and natural clips")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=_run_mei)


# ------------------------------------------------------------------------------------------------ tuning


def _errors() -> tuple[type[BaseException], ...]:
    from client.errors import PredictorError

    return (PredictorError, FileNotFoundError, LookupError, ValueError)


def _run_tuning(args: argparse.Namespace) -> int:
    try:
        return _tuning(args)
    except _errors() as exc:
        raise SystemExit(f"insilico tuning: {exc}") from exc


def _public_session(args: argparse.Namespace, provenance: dict[str, Any]) -> Path | None:
    """Where the model's released statistics are: --data, the provenance's data folder, the truth's sibling."""
    candidates = []
    if args.data:
        candidates.append(Path(args.data))
    if args.generator:
        candidates.append(Path(args.generator) / "public")
    if provenance.get("data_dir"):
        candidates.append(Path(provenance["data_dir"]))
    if args.truth:
        candidates.append(Path(args.truth).parent / "public")
    for folder in candidates:
        if (folder / args.model).is_dir():
            return folder / args.model
    if args.data:
        raise FileNotFoundError(f"{args.data / args.model}: no such session folder")
    return None


def _tuning(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from models.data.reader import open_mouse
    from models.data.synthetic.neurons import read_truth
    from models.insilico.experiment import NeuronSubset, run_protocol
    from models.insilico.results import analyse
    from models.insilico.stimuli import Background, Protocol, SparseNoiseProtocol
    from models.insilico.truth_check import compare, per_neuron_test_correlation, save_check

    if args.flashes < 1:
        raise ValueError("--flashes must be >= 1")
    truth_root = Path(args.generator) / "truth" if args.generator else args.truth
    with ExitStack() as stack:
        if args.generator:
            from models.insilico.generator_model import GeneratorModel

            model: Any = GeneratorModel.from_truth(
                Path(args.generator) / "truth" / args.model, Path(args.generator) / "public" / args.model
            )
            source, provenance, version = f"generator:{Path(args.generator).resolve()}", {}, None
        else:
            from client.predictor import PredictorClient, security_from_args

            client = stack.enter_context(
                PredictorClient(
                    args.target,
                    round_robin=args.round_robin,
                    timeout=REQUEST_TIMEOUT_S,
                    **security_from_args(args),
                )
            )
            client.wait_ready()
            model = ServedModel(client, args.model, args.version)
            source, provenance, version = f"served:{args.target}", model.info.provenance, model.version
        public = _public_session(args, provenance)
        if public is None:
            raise FileNotFoundError(
                "cannot find the model's released statistics for the training means: give --data DIR/public"
            )
        background = Background.from_statistics(open_mouse(public, validate="off").statistics)
        if args.neurons:
            model = NeuronSubset(model, parse_unit_ids(args.neurons))
        protocol = Protocol(sparse_noise=SparseNoiseProtocol(flashes=args.flashes))
        label = args.label or (f"{args.model}-generator" if args.generator else args.model)
        started = time.perf_counter()
        gratings, noise = run_protocol(
            model, protocol, background, progress=not args.json and sys.stderr.isatty(), desc=label
        )
        meta = {
            "model": args.model,
            "label": label,
            "source": source,
            "version": version,
            "units": "model units (response / per-neuron std)",
            "background": background.to_dict(),
            "seconds": round(time.perf_counter() - started, 2),
        }
        result = analyse(meta, model.unit_ids, protocol, gratings, noise)
        folder = Path(args.out) / label
        result.save(folder)
        report: dict[str, Any] = {"folder": str(folder), "summary": result.summary()}
        if truth_root is not None:
            truth_session = Path(truth_root) / args.model
            correlation = per_neuron_test_correlation(model, public, truth_session, progress=not args.json)
            check, arrays = compare(result, read_truth(truth_session), correlation)
            save_check(folder, check, arrays)
            report["truth_check"] = check
    if args.json:
        print(json.dumps(report))
    else:
        print(_tuning_table(report))
    return 0


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _tuning_table(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"{s['label']}: {s['neurons']} neurons in {s['seconds']:.1f} s -> {report['folder']}",
        f"  driven by gratings {s['driven_by_gratings']}, median OSI {_fmt(s['median_osi'])}, "
        f"DSI {_fmt(s['median_dsi'])}, simple cells (F1/F0 > 1) {_fmt(s['share_simple_cells'], '{:.0%}')}",
        f"  receptive fields found {s['receptive_fields_found']}, median sigma {_fmt(s['median_rf_sigma_px'], '{:.2f}')} px",
    ]
    check = report.get("truth_check")
    if check:
        lines.append(
            f"  vs ground truth (neurons binned by {check['test_tier']} single-trial correlation, "
            f"median {check['median_test_correlation']:.3f}):"
        )
        lines.append(f"    {'test corr':<12}{'neurons':>8}{'ori <= 22.5':>13}{'RF err px':>11}{'type ok':>9}")
        for row in [*check["by_test_correlation"], {"test_correlation": "all", **check["all"]}]:
            lines.append(
                f"    {row['test_correlation']:<12}{row['neurons']:>8}"
                f"{_fmt(row['share_orientation_within_22.5'], '{:.1%}'):>13}"
                f"{_fmt(row['median_rf_centre_error_px'], '{:.2f}'):>11}"
                f"{_fmt(row['share_type_correct'], '{:.1%}'):>9}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ mei


def _run_mei(args: argparse.Namespace) -> int:
    from models.insilico.results import MEIOptions

    try:
        from models.insilico import mei
    except ImportError as exc:  # a serving install has no torch
        raise SystemExit(f"insilico mei needs the training extra (pip install '.[train]'): {exc}") from exc
    try:
        report = mei.run(
            args.run,
            args.mouse,
            out=Path(args.out) / (args.label or args.mouse),
            unit_ids=parse_unit_ids(args.neurons) if args.neurons else None,
            top=args.top,
            data=args.data,
            options=MEIOptions(
                starts=args.starts,
                steps=args.steps,
                contrast=args.contrast,
                natural_clips=args.natural_clips,
                seed=args.seed,
            ),
            progress=not args.json and sys.stderr.isatty(),
        )
    except (FileNotFoundError, LookupError, ValueError) as exc:
        raise SystemExit(f"insilico mei: {exc}") from exc
    if args.json:
        print(json.dumps(report))
    else:
        print(mei.table(report))
    return 0
