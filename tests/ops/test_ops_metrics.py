"""Observability config against the server's real exposition: every metric a Grafana panel or a Prometheus rule
names is exported (with the labels it selects on and the 1/30 s bucket edge it divides by), `promtool check
metrics` is clean, the scoring metrics count outcomes, and the deploy/ configs are consistent."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ops_support import ROOT, ServerProcess, launch, need, stream_frames, wait_serving

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "sensorium-serve.json"
METRIC = re.compile(r"\b(sensorium_serve_[a-z0-9_]+)\b(\{[^}]*\})?")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
PROMETHEUS_LABELS = {"instance", "job", "le"}  # added by Prometheus (le: histogram buckets)


@pytest.fixture(scope="module")
def scoring_server(model_repo: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A server with scoring, after 10 streamed frames, one recorded and one rejected submission."""
    from scoring_support import truth_submission

    from client.errors import PredictorError
    from client.scoring import ScoringClient
    from server.scoring.ground_truth import FolderGroundTruth

    work = tmp_path_factory.mktemp("ops-metrics")
    db = f"sqlite:///{work / 'scores.sqlite'}"
    server = launch(model_repo, work, "--truth", str(dataset / "truth"), "--db", db)
    try:
        wait_serving(server.target, server.proc, server.log_path)
        stream_frames(server.target, 10)
        trials = truth_submission(FolderGroundTruth(dataset / "truth"), "main", "live")
        with ScoringClient(server.target, timeout_s=60) as client:
            client.submit(trials, "main", "live", "ops", "truth")
            with pytest.raises(PredictorError, match="missing"):
                client.submit(trials[:1], "main", "live", "ops", "incomplete")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def exposition(scoring_server: ServerProcess) -> str:
    return scoring_server.metrics_text()


def exported(text: str) -> dict[str, set[str]]:
    """Sample names the exposition offers (from its TYPE lines, so labelled metrics without samples count) ->
    their label names (from the samples present)."""
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total")
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""],
                "summary": ["_sum", "_count", ""],
            }[kind]
            for suffix in suffixes:
                names.setdefault(base + suffix, set())
    for line in text.splitlines():
        if line.startswith("sensorium_serve_") and "{" in line:
            name, labels = line.split("{", 1)
            names.setdefault(name, set()).update(re.findall(r'([a-z_]+)="', labels.split("}")[0]))
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
    return [(r.get("record") or r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def check_names(where: str, expr: str, names: dict[str, set[str]], text: str) -> list[str]:
    problems = []
    found = METRIC.findall(expr)
    for name, selector in found:
        if name not in names:
            problems.append(f"{where}: {name} is not exported")
            continue
        for label, value in re.findall(r'([a-z_]+)\s*=~?\s*"([^"]*)"', selector):
            if label == "le":
                if f'{name}{{le="{value}"' not in text and f'le="{value}"' not in text:
                    problems.append(f"{where}: {name} has no bucket le={value!r}")
            elif label not in PROMETHEUS_LABELS and names[name] and label not in names[name]:
                problems.append(f"{where}: {name} has no label {label!r} (has {sorted(names[name])})")
    metric_labels = set().union(*(names.get(n, set()) for n, _ in found)) if found else set()
    for group in BY.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            if label not in PROMETHEUS_LABELS and metric_labels and label not in metric_labels:
                problems.append(f"{where}: 'by ({label})' but the metrics have {sorted(metric_labels)}")
    return problems


def test_every_dashboard_query_names_exported_metrics(exposition: str) -> None:
    names = exported(exposition)
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    problems = [p for title, expr in exprs for p in check_names(title, expr, names, exposition)]
    assert not problems, "\n".join(problems)
    used = {name for _, expr in exprs for name, _ in METRIC.findall(expr)}
    # The panels the issue asks for, by the metric they read.
    for needed in (
        "sensorium_serve_frame_seconds_bucket",  # latency percentiles + within-budget share
        "sensorium_serve_frame_seconds_count",
        "sensorium_serve_active_streams",
        "sensorium_serve_batch_size_bucket",
        "sensorium_serve_frame_queue_seconds_bucket",
        "sensorium_serve_frame_compute_seconds_bucket",
        "sensorium_serve_errors_total",
        "sensorium_serve_scoring_submissions_total",
        "sensorium_serve_scoring_seconds_bucket",
    ):
        assert needed in used, f"no panel reads {needed}"


def test_budget_bucket_edge_is_the_one_the_server_exports(exposition: str) -> None:
    from server.metrics import FRAME_BUDGET_S

    edges = set(re.findall(r'sensorium_serve_frame_seconds_bucket\{le="([^"]+)"', exposition))
    budget = [e for e in edges if e != "+Inf" and abs(float(e) - FRAME_BUDGET_S) < 1e-12]
    assert len(budget) == 1, edges
    text = DASHBOARD.read_text() + (DEPLOY / "rules.yml").read_text()
    used = set(re.findall(r'le=\\?"([^"\\]+)\\?"', text))
    assert used == {budget[0]}, f"configs divide by le={used}, the server exports {budget[0]}"


def test_prometheus_rules_name_exported_metrics(exposition: str) -> None:
    names = exported(exposition)
    problems = [p for where, expr in rule_exprs() for p in check_names(where, expr, names, exposition)]
    assert not problems, "\n".join(problems)


def test_promtool_check_metrics_is_clean(exposition: str) -> None:
    promtool = need("promtool", "ensure_prometheus.sh")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    )


def test_scoring_metrics_count_outcomes_and_durations(scoring_server: ServerProcess) -> None:
    s = scoring_server
    assert s.sample("sensorium_serve_scoring_submissions_total", track="main", tier="live", code="OK") == 1
    assert (
        s.sample(
            "sensorium_serve_scoring_submissions_total", track="main", tier="live", code="INVALID_ARGUMENT"
        )
        == 1
    )
    assert s.sample("sensorium_serve_scoring_seconds_count", track="main", tier="live") == 2
    assert s.sample("sensorium_serve_scoring_seconds_sum", track="main", tier="live") > 0
    assert s.sample("sensorium_serve_errors_total", method="Submit", code="INVALID_ARGUMENT") == 1
    assert s.sample("sensorium_serve_requests_total", method="Submit") == 2
    trials = s.sample("sensorium_serve_scoring_trials_total", track="main", tier="live")
    assert trials >= 2  # the full submission's trials + the incomplete one's single trial


def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = need("promtool", "ensure_prometheus.sh")
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    shutil.copy(DEPLOY / "rules.yml", tmp_path / "rules.yml")
    config["rule_files"] = [str(tmp_path / "rules.yml")]  # the compose path, /etc/prometheus, is not here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for args in (
        ["check", "config", str(tmp_path / "prometheus.yml")],
        ["check", "rules", str(DEPLOY / "rules.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_compose_wires_server_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"sensorium-serve", "prometheus", "grafana"} <= set(services)
    # Every bind-mounted file or folder exists (relative to deploy/).
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: mounts missing {source}"
    # Prometheus scrapes the server service at the image's metrics port.
    env = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        for key, value in re.findall(r"(SENSORIUM_SERVE_[A-Z_]+)=(\S+)", line):
            env[key] = value
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == [f"sensorium-serve:{env['SENSORIUM_SERVE_HTTP_PORT']}"]
    published = {p.split(":")[1] for p in services["sensorium-serve"]["ports"]}
    assert {env["SENSORIUM_SERVE_PORT"], env["SENSORIUM_SERVE_HTTP_PORT"]} <= published
    assert any(v.endswith(":/models:ro") for v in services["sensorium-serve"]["volumes"])
    # Grafana: the provisioned datasource uid is the one every panel uses; the dashboard folder is provisioned.
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    assert uids == {uid}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/sensorium.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert any(v == f"./grafana/dashboards:{path}:ro" for v in services["grafana"]["volumes"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_cross_check_catches_wrong_names_labels_and_edges(exposition: str) -> None:
    names = exported(exposition)
    good = 'sum by (model) (rate(sensorium_serve_frame_seconds_bucket{le="0.03333333333333333"}[1m]))'
    assert check_names("ok", good, names, exposition) == []
    assert check_names("x", "rate(sensorium_serve_frame_latency_seconds_bucket[1m])", names, exposition)
    assert check_names("x", 'rate(sensorium_serve_frame_seconds_bucket{le="0.033"}[1m])', names, exposition)
    assert check_names("x", 'sensorium_serve_active_streams{mouse="m"}', names, exposition)
    assert check_names("x", "sum by (track) (sensorium_serve_active_streams)", names, exposition)
