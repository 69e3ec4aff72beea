#!/usr/bin/env python3
"""How long `insilico tuning` takes on a real-size served model (8,000 neurons), batched vs one clip per request.

Exports a network of the named config with random weights (bench/export_serving_model.py: real compute, real
output size) unless --repo holds one, writes a small public folder for its training means, starts
`sensorium-serve serve` on it, then:

1. side by side, `--repeats` times each, alternating: the first `--conditions` grating clips through
   PredictClip one clip per request (the baseline) and in the batches `insilico tuning` sends (up to
   models.insilico.experiment.MAX_BATCH clips, MAX_BATCH_BYTES of responses per request); seconds per clip;
2. once: the whole default protocol on every neuron through the command line (`--full`), wall time.

    .venv/bin/python bench/bench_insilico.py --work runs/bench-insilico [--config default] [--neurons 8000]
        [--conditions 24] [--repeats 3] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from export_serving_model import MOUSE  # noqa: E402

from models.insilico import experiment  # noqa: E402
from models.insilico.stimuli import Background, GratingProtocol  # noqa: E402


def write_public(root: Path, n: int) -> Path:
    """DIR/public/MOUSE with two grey-ish train trials: statistics for the training means."""
    from models.data.writer import MouseWriter

    rng = np.random.default_rng(0)
    with MouseWriter(root / MOUSE, np.arange(n), rng.uniform(0, 600, (n, 3)), 2, 30) as w:
        for i in range(2):
            w.write_trial(
                i,
                "train",
                video=np.clip(rng.normal(80, 50, (36, 64, 30)), 0, 255).astype(np.float32),
                responses=rng.gamma(1.0, 1.0, (n, 30)).astype(np.float32),
                behavior=np.abs(rng.normal([[20.0], [2.0]], 1.0, (2, 30))).astype(np.float32),
                pupil_center=rng.normal([[30.0], [25.0]], 1.0, (2, 30)).astype(np.float32),
            )
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_gratings(target: str, conditions: int, max_batch: int) -> float:
    """Seconds per clip for the first `conditions` grating clips with at most `max_batch` clips per request."""
    from tqdm import tqdm

    from client.insilico import ServedModel
    from client.predictor import PredictorClient

    protocol = GratingProtocol()
    keys = protocol.conditions()[:conditions]
    with PredictorClient(target, timeout=600) as client:
        model = ServedModel(client, MOUSE)
        saved = experiment.MAX_BATCH
        experiment.MAX_BATCH = max_batch
        try:
            started = time.perf_counter()
            for _ in experiment.run_clips(
                model, keys, lambda k: protocol.clip(k, model.warmup, 80.0), Background(), tqdm(disable=True)
            ):
                pass
            return (time.perf_counter() - started) / len(keys)
        finally:
            experiment.MAX_BATCH = saved


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("runs/bench-insilico"))
    parser.add_argument("--config", default="default")
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--conditions", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--full", action="store_true", help="also the whole protocol through the command line"
    )
    args = parser.parse_args()
    work = args.work
    repo, public = work / "repo", work / "public"
    if not (repo / f"{MOUSE}-clip").is_dir():
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "export_serving_model.py"), str(repo), "--config", args.config,
             "--neurons", str(args.neurons)],
            check=True,
        )  # fmt: skip
    write_public(public, args.neurons)
    port = free_port()
    cli = str(Path(sys.executable).with_name("sensorium-serve"))
    log = open(work / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [cli, "serve", "--repo", str(repo), "--host", "127.0.0.1", "--port", str(port), "--http-port", "-1",
         "--providers", "cpu"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    target = f"127.0.0.1:{port}"
    out: dict = {"config": args.config, "neurons": args.neurons, "load_before": os.getloadavg()}
    try:
        from client.predictor import PredictorClient

        with PredictorClient(target) as client:
            client.wait_ready(timeout=120)
        one, batched = [], []
        for _ in range(args.repeats):
            one.append(time_gratings(target, args.conditions, 1))
            batched.append(time_gratings(target, args.conditions, experiment.MAX_BATCH))
        out["seconds_per_clip"] = {"one_per_request": one, "batched": batched}
        out["median_ratio"] = statistics.median(one) / statistics.median(batched)
        if args.full:
            started = time.perf_counter()
            done = subprocess.run(
                [cli, "insilico", "tuning", "--target", target, "--model", MOUSE, "--data", str(public),
                 "--out", str(work / "results"), "--json"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            out["full_protocol_seconds"] = round(time.perf_counter() - started, 1)
            out["full_protocol_summary"] = json.loads(done.stdout)["summary"]
        out["load_after"] = os.getloadavg()
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
