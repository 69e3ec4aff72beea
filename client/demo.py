"""`sensorium-serve demo`: the main job end to end on the built-in default, with a printed report.

synthetic data -> oracle ceilings -> train -> export (ONNX per mouse) -> serve -> 30 Hz rig stream ->
predict the test tiers -> score them (model, oracle, trivial baseline) -> leaderboard -> clean shutdown.

Every step runs the public command line in a subprocess (what a user would type), so the demo exercises the
real interfaces; outputs are kept under --workdir and reused on a second run unless --fresh is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.benchmark import SKIP_FRAMES, TRACKS

ROUND = "final"  # the demo scores the final test tiers (the benchmark's ranking round)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline end to end on a default synthetic dataset and print a report",
        description=(
            "Generate the default synthetic SENSORIUM dataset, print its oracle ceilings, train the default "
            "model, export it to ONNX, start the server, stream a test trial at 30 Hz like a rig, predict and "
            "score the main and bonus test tiers next to the oracle and a trivial baseline, print the "
            "leaderboard, and stop the server. Outputs stay in --workdir; finished steps are reused."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="where every output goes")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--mice", type=int, default=None, help="synthetic mice (default: the generator's default)")
    p.add_argument(
        "--neurons", type=int, default=None, help="neurons per mouse (default: the generator's default)"
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the training default)")
    p.add_argument("--fresh", action="store_true", help="delete --workdir first and redo every step")
    p.set_defaults(handler=run_demo)


class Step:
    """Prints a numbered section header and its duration."""

    counter = 0

    def __init__(self, title: str) -> None:
        Step.counter += 1
        self.title = title
        self.number = Step.counter

    def __enter__(self) -> Step:
        print(f"\n== {self.number}. {self.title}", flush=True)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"   ({time.perf_counter() - self.t0:.1f} s)", flush=True)


def _cli(*args: str | Path, capture: bool = False) -> str:
    """Run `sensorium-serve ARGS` in a subprocess; stream its stderr (progress bars) to ours."""
    cmd = [sys.executable, "-m", "server.cli", *map(str, args)]
    result = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: `sensorium-serve {' '.join(map(str, args))}` failed ({result.returncode})")
    return result.stdout if capture else ""


def _cli_json(*args: str | Path) -> dict[str, Any]:
    return json.loads(_cli(*args, "--json", capture=True))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


# ---------------------------------------------------------------- data + oracle


def _oracle_table(data_dir: Path) -> dict[str, dict[str, float]]:
    """Oracle ceilings per tier (noise-free rate vs noisy response), pooled over mice and per mouse."""
    from models.data.oracle import oracle_single_trial_correlation

    per_tier = oracle_single_trial_correlation(data_dir)
    print("   oracle single-trial correlation (noise-free rate vs noisy response, official scored units)")
    sessions = sorted({s for row in per_tier.values() for s in row})
    print("   " + f"{'tier':<18}" + "".join(f"{s[:22]:>24}" for s in sessions))
    for tier, row in per_tier.items():
        print("   " + f"{tier:<18}" + "".join(f"{_fmt(row.get(s)):>24}" for s in sessions))
    return per_tier


def _write_reference_submissions(data_dir: Path, out: Path) -> dict[str, dict[str, Path]]:
    """Oracle (noise-free rates) and trivial baseline (mean train response per neuron and frame) files."""
    import numpy as np

    from client.submission import SubmissionWriter, TrialPrediction, submission_file_name
    from models.benchmark import test_tier
    from models.data.normalisation import ScoredUnits
    from models.data.reader import open_dataset
    from models.data.truth import open_truth

    public = open_dataset(data_dir / "public", validate="off")
    truth = open_truth(data_dir / "truth")
    files: dict[str, dict[str, Path]] = {"oracle": {}, "mean response": {}}
    mean_train: dict[str, np.ndarray] = {}
    for session, mouse in public.items():
        units = ScoredUnits.from_mouse(mouse)
        sums, counts = None, None
        for i in mouse.trials("train"):
            r = units.standardise(mouse.responses(int(i)))
            if sums is None:
                sums, counts = np.zeros((r.shape[0], 400)), np.zeros(400)
            sums[:, : r.shape[1]] += r
            counts[: r.shape[1]] += 1
        mean_train[session] = (sums / np.maximum(counts, 1)).astype(np.float32)
    for track in TRACKS:
        tier = test_tier(track, ROUND)
        name = submission_file_name(track, ROUND)
        paths = {kind: out / kind.replace(" ", "_") / name for kind in files}
        for p in paths.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        with SubmissionWriter(paths["oracle"]) as oracle, SubmissionWriter(paths["mean response"]) as base:
            for session, folder in truth.items():
                units = ScoredUnits.from_mouse(public[session])
                for i in folder.trials(tier):
                    rates = units.standardise(folder.rates(int(i)))
                    n_frames = rates.shape[1]
                    oracle.write_trial(
                        TrialPrediction(session, int(i), rates[:, SKIP_FRAMES:], folder.unit_ids)
                    )
                    base.write_trial(
                        TrialPrediction(
                            session, int(i), mean_train[session][:, SKIP_FRAMES:n_frames], folder.unit_ids
                        )
                    )
        for kind, p in paths.items():
            files[kind][track] = p
    return files


# ---------------------------------------------------------------- server


class Server:
    """`sensorium-serve serve` in a subprocess; stopped with SIGTERM (graceful drain)."""

    def __init__(self, repo: Path, truth: Path, db: Path) -> None:
        self.port, self.http_port = _free_port(), _free_port()
        self.target = f"127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "server.cli", "serve", "--repo", str(repo), "--truth", str(truth)]
        cmd += ["--db", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--http-port", str(self.http_port)]
        self.log_path = db.parent / "server.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"demo: server exited early; see {self.log_path}")
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise SystemExit(f"demo: server not ready after {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)


# ---------------------------------------------------------------- report


def _print_scores(rows: list[tuple[str, str, dict[str, Any]]], oracle: dict[str, dict[str, float]]) -> None:
    print(f"   {'submission':<16}{'track':<7}{'single-trial r':>15}{'corr to avg':>13}{'FEVE':>8}")
    for label, track, score in rows:
        st = score["single_trial_correlation"]["overall"]
        ca = score["correlation_to_average"]["overall"]
        fe = score["feve"]["overall"]
        print(f"   {label:<16}{track:<7}{_fmt(st):>15}{_fmt(ca):>13}{_fmt(fe):>8}")
    for track in TRACKS:
        model = next((s for lbl, t, s in rows if lbl == "model" and t == track), None)
        ceiling = next((s for lbl, t, s in rows if lbl == "oracle" and t == track), None)
        if model and ceiling:
            m = model["single_trial_correlation"]["overall"]
            o = ceiling["single_trial_correlation"]["overall"]
            print(f"   {track}: model / oracle single-trial correlation = {m:.3f} / {o:.3f} = {m / o:.2f}")


def run_demo(args: argparse.Namespace) -> int:
    work: Path = args.workdir
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    data, run, repo = work / "data", work / "run", work / "repo"
    t_start = time.perf_counter()

    with Step(f"synthetic SENSORIUM 2023 dataset (seed {args.seed}) -> {data}"):
        if not (data / "truth").is_dir():
            size = [f"--{k}={v}" for k in ("mice", "neurons") if (v := getattr(args, k)) is not None]
            _cli("data", "synth", "--out", data, "--seed", args.seed, "--no-oracle", "--force", *size)
        else:
            print("   reusing the dataset already there")
        oracle = _oracle_table(data)

    with Step(f"train the default model -> {run}"):
        if not (run / "best.pt").is_file():
            extra = ["--epochs", str(args.epochs)] if args.epochs else []
            _cli("train", "--data", data / "public", "--out", run, "--val-trials", "20", *extra)
        else:
            print("   reusing the trained model already there")

    with Step(f"export per-mouse ONNX clip + step graphs -> {repo}"):
        if repo.exists():
            shutil.rmtree(repo)
        _cli("export", run, "--repo", repo)

    refs = _write_reference_submissions(data, work / "submissions")
    db = work / "scores.db"
    db.unlink(missing_ok=True)
    server = Server(repo, data / "truth", db)
    try:
        with Step(f"serve the repository on {server.target} (metrics on :{server.http_port})"):
            server.wait_ready()
            print(f"   ready; log in {server.log_path}")

        sessions = sorted(p.name for p in (data / "public").iterdir() if p.is_dir())
        with Step(f"rig: stream one test trial of {sessions[0]} at 30 Hz"):
            rig = _cli(
                "rig", "--target", server.target, "--data", data / "public", "--mouse", sessions[0],
                "--tier", f"{ROUND}_test_main", "--trials", "1", capture=True,
            )  # fmt: skip
            print("   " + rig.strip().replace("\n", "\n   "))

        rows: list[tuple[str, str, dict[str, Any]]] = []
        with Step("predict the main and bonus test tiers and score them (with oracle and baseline)"):
            for track in TRACKS:
                tier = f"{ROUND}_test_{track}"
                out = work / "submissions" / "model" / f"{tier}.parquet.brotli"
                out.parent.mkdir(parents=True, exist_ok=True)
                _cli(
                    "predict",
                    "--target",
                    server.target,
                    "--data",
                    data / "public",
                    "--tier",
                    tier,
                    "--out",
                    out,
                )
                submissions = {"model": out, **{k: v[track] for k, v in refs.items()}}
                for label, path in submissions.items():
                    score = _cli_json(
                        "score", path, "--target", server.target, "--track", track, "--tier", ROUND,
                        "--submitter", label,
                    )  # fmt: skip
                    rows.append((label, track, score))
            _print_scores(rows, oracle)

        with Step(
            "validate on the public oracle tier offline (no server), as participants do, and on the server"
        ):
            out = work / "submissions" / "model" / "oracle.parquet.brotli"
            public = data / "public"
            _cli("predict", "--target", server.target, "--data", public, "--tier", "oracle", "--out", out)
            offline = _cli_json("score", out, "--data", public, "--tier", "oracle")
            served = _cli_json(
                "score", out, "--target", server.target, "--tier", "oracle", "--submitter", "model"
            )
            for where, score in (("offline", offline), ("on the server", served)):
                r = score["single_trial_correlation"]["overall"]
                print(f"   model on the oracle tier, {where:<13}: single-trial r {_fmt(r)}")

        with Step("leaderboard"):
            for track in TRACKS:
                print(
                    _cli(
                        "leaderboard",
                        "--target",
                        server.target,
                        "--track",
                        track,
                        "--tier",
                        ROUND,
                        capture=True,
                    )
                )
    finally:
        code = server.stop()
    print(f"\n== server stopped (exit {code}); demo done in {time.perf_counter() - t_start:.0f} s")
    return 0 if code == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    from server.cli import main as cli_main

    return cli_main(["demo", *(argv or [])])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
