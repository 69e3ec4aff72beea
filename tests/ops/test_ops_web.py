"""The leaderboard pages in headless Chromium (Debian's chromium, scripts/ensure_chromium.sh), served by a real
`sensorium-serve serve --truth ... --web-port ...` after real submissions: what the pages show (ranking, scores,
plots drawn from the stored per-neuron scores), that user text cannot inject script, and that no test-tier
truth appears in any page or response (a recognisable value planted in the truth folder is searched for in
every served byte)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from ops_support import ServerProcess, launch, need, wait_serving

from models.benchmark import TEST_TIERS

pytestmark = pytest.mark.slow

SENTINEL = 98765.4321  # planted in the truth folder: a raw response no real neuron has
MODEL_MOUSE = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20"  # scoring_support.MOUSE_A
EVIL_LABEL = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@dataclass
class Site:
    server: ServerProcess
    base: str
    ids: dict[str, str]  # name -> submission id
    secrets: list[str]  # strings that must never be served (planted and real test-tier truth values)
    neurons: int
    served: list[bytes]  # every response body fetched by the tests (checked at the end)


def plant_truth(root: Path, dataset: Path) -> tuple[list[str], list[str]]:
    """Copy the truth folder, plant SENTINEL in one test-tier trial per mouse; returns (mice, secrets)."""
    shutil.copytree(dataset / "truth", root / "truth")
    (root / "public").symlink_to(dataset / "public")
    secrets = [f"{SENTINEL:.2f}", f"{np.float32(SENTINEL)!r}", "98765"]
    mice = sorted(p.name for p in (root / "truth").iterdir())
    for mouse in mice:
        tiers = np.load(root / "truth" / mouse / "meta" / "tiers.npy")
        trial = int(np.flatnonzero(np.isin(tiers, TEST_TIERS))[0])
        path = root / "truth" / mouse / "responses" / f"{trial}.npy"
        responses = np.load(path)
        responses[0, 60] = SENTINEL
        np.save(path, responses)
        # Every true value of this test trial, as Python prints a float32 (7+ significant digits).
        secrets += [repr(float(v)) for v in responses.ravel()[::7] if len(repr(float(v))) >= 9]
    return mice, secrets


def model_repo_for(repo: Path, public: Path, mouse: str) -> Path:
    """The server tests' linear-filter model for a dataset mouse, predicting that mouse's neurons (unit ids)."""
    import json

    from ops_support import server_models

    from models.data.reader import open_mouse

    unit_ids = open_mouse(public / mouse).unit_ids
    server_models.write_model(repo, mouse, 1, server_models.make_params(5, n=len(unit_ids)))
    for meta in repo.glob(f"{mouse}-*/1/metadata.json"):
        data = json.loads(meta.read_text())
        data["unit_ids"] = [int(u) for u in unit_ids]
        meta.write_text(json.dumps(data))
    return repo


def fetch(site: Site, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(site.base + path, timeout=30) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    site.served.append(body)
    return status, body.decode()


@pytest.fixture(scope="module")
def site(model_repo: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from scoring_support import truth_submission

    from client.scoring import ScoringClient
    from client.submission import TrialPrediction
    from server.scoring.ground_truth import FolderGroundTruth

    root = tmp_path_factory.mktemp("ops-web")
    _, secrets = plant_truth(root, dataset)
    truth = FolderGroundTruth(root / "truth")
    for mouse in truth.mice():  # the planted value in standardised units too
        for trial, info in truth.trials(mouse).items():
            if info.tier in TEST_TIERS:
                value = float(truth.responses(mouse, trial)[0, 60])
                if abs(value) > 100:
                    secrets += [f"{value:.3f}", repr(value)]
    db = f"sqlite:///{root / 'scores.sqlite'}"
    repo = model_repo_for(root / "repo", dataset / "public", MODEL_MOUSE)
    server = launch(repo, root, "--truth", str(root / "truth"), "--db", db, web=True)
    try:
        wait_serving(server.target, server.proc, server.log_path)
        rng = np.random.default_rng(0)
        ids = {}
        with ScoringClient(server.target, timeout_s=120) as client:
            main = truth_submission(truth, "main", "live")
            ids["truth"] = client.submit(main, "main", "live", "team-truth", "the truth").submission_id
            noisy = [
                TrialPrediction(
                    t.mouse,
                    t.trial_index,
                    (t.prediction + rng.normal(0, 3 * t.prediction.std(), t.prediction.shape)).astype(
                        np.float32
                    ),  # noise 3x the truth's spread, whatever the units
                    t.neuron_ids,
                )
                for t in main
            ]
            ids["evil"] = client.submit(noisy, "main", "live", "team-<b>bold</b>", EVIL_LABEL).submission_id
            bonus = truth_submission(truth, "bonus", "final")
            ids["bonus"] = client.submit(bonus, "bonus", "final", "team-truth", "bonus truth").submission_id
        neurons = sum(len(truth.unit_ids(m)) for m in truth.mice())
        yield Site(server, f"http://127.0.0.1:{server.web_port}", ids, secrets, neurons, [])
    finally:
        server.stop()


def chromium_dom(site: Site, path: str, tmp_path: Path) -> str:
    """The page's DOM after Chromium loaded it (scripts, if any could run, would have run)."""
    chromium = need("chromium", "ensure_chromium.sh")
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--dump-dom",
            site.base + path,
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    site.served.append(done.stdout)
    return done.stdout.decode()


def rows(dom: str, table_id: str) -> list[list[str]]:
    """Cell texts of a table's body rows."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', dom, re.S)
    assert table, f"no table {table_id}"
    body = table.group(0).split("<tbody>", 1)[1]
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def svg_attr(dom: str, kind: str, attr: str) -> list[str]:
    return re.findall(rf'<svg[^>]*class="plot plot-{kind}"[^>]*data-{attr}="([^"]*)"', dom)


def test_leaderboard_page_ranks_submissions_per_track_and_tier(site: Site, tmp_path: Path) -> None:
    dom = chromium_dom(site, "/", tmp_path)
    assert "<title>SENSORIUM leaderboards</title>" in dom  # no injected script changed it
    main_live = rows(dom, "board-main-live")
    assert [r[1] for r in main_live] == ["team-truth", "team-<b>bold</b>"]  # shown as text, ranked
    assert main_live[0][0] == "1" and main_live[0][3] == "1.0000"  # the truth scores 1
    assert float(main_live[1][3]) < 0.9
    assert main_live[1][2] == EVIL_LABEL  # the label is text, not markup
    assert "<script" not in dom and "<img" not in dom  # serialised as text (&lt;script&gt;), no elements
    assert [r[1] for r in rows(dom, "board-bonus-final")] == ["team-truth"]
    assert 'id="board-main-final-empty"' in dom and 'id="board-bonus-live-empty"' in dom
    links = re.findall(r'href="(/submissions/[0-9a-f]+)"', dom)
    assert sorted(links) == sorted(f"/submissions/{i}" for i in site.ids.values())


def test_submission_report_plots_the_stored_per_neuron_scores(site: Site, tmp_path: Path) -> None:
    import json

    status, api = fetch(site, f"/api/submissions/{site.ids['evil']}")
    assert status == 200
    record = json.loads(api)
    dom = chromium_dom(site, f"/submissions/{site.ids['evil']}", tmp_path)
    title = unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))
    assert title == f"Submission {EVIL_LABEL}" and "<script" not in dom  # text, and no script ran
    # Histogram of every neuron's single-trial correlation: its mean is the overall (neuron-pooled) score.
    assert svg_attr(dom, "histogram", "count") == [str(site.neurons)]
    mean = float(svg_attr(dom, "histogram", "mean")[0])
    assert mean == pytest.approx(record["single_trial_correlation"]["overall"], abs=1e-4)
    # Per-mouse bars carry the per-mouse scores.
    bars = dict(re.findall(r'<rect class="bar"[^>]*data-label="([^"]+)" data-value="([^"]+)"', dom))
    for mouse, value in record["single_trial_correlation"]["per_mouse"].items():
        assert float(bars[mouse.split("-Video-")[0]]) == pytest.approx(value, abs=1e-5)
    # Correlation against FEV: one point per neuron with a defined FEV (main tier: 2 stimuli x 3 repeats).
    points = int(svg_attr(dom, "scatter", "points")[0])
    assert 0 < points <= site.neurons
    assert "fraction of explainable variance (FEV)" in dom


def test_bonus_report_has_per_family_bars(site: Site, tmp_path: Path) -> None:
    import json

    record = json.loads(fetch(site, f"/api/submissions/{site.ids['bonus']}")[1])
    dom = chromium_dom(site, f"/submissions/{site.ids['bonus']}", tmp_path)
    families = record["single_trial_correlation"]["per_family"]
    assert set(families) == {"gaussian_dots", "drifting_gabor"}
    for family, value in families.items():
        match = re.search(rf'data-label="{family}" data-value="([^"]+)"', dom)
        assert match and float(match.group(1)) == pytest.approx(value, abs=1e-5)
    assert float(svg_attr(dom, "histogram", "mean")[0]) == pytest.approx(1.0, abs=1e-4)  # the truth


def test_unknown_pages_are_404_and_the_api_is_read_only(site: Site) -> None:
    assert fetch(site, "/submissions/0123456789abcdef")[0] == 404
    assert fetch(site, "/api/leaderboard/main/nope")[0] == 404
    assert fetch(site, "/nothing/here")[0] == 404
    status, body = fetch(site, "/api/leaderboard/main/live")
    assert status == 200 and '"team-truth"' in body
    request = urllib.request.Request(site.base + "/api/leaderboard/main/live", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 501  # http.server: no POST handler
    with urllib.request.urlopen(site.base + "/", timeout=10) as r:
        assert "script-src" not in r.headers["Content-Security-Policy"]
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_model_traces_only_on_released_trials(site: Site, dataset: Path, tmp_path: Path) -> None:
    from ops_support import server_models

    from models.data.reader import open_mouse

    folder = open_mouse(dataset / "public" / MODEL_MOUSE)
    oracle = [int(i) for i in folder.trials("oracle")]
    hidden = [int(i) for tier in TEST_TIERS for i in folder.trials(tier)]
    models = chromium_dom(site, "/models", tmp_path)
    linked = sorted(int(i) for i in re.findall(rf'href="/models/{MODEL_MOUSE}/trials/(\d+)"', models))
    assert set(oracle) <= set(linked) and not set(hidden) & set(linked)
    dom = chromium_dom(site, f"/models/{MODEL_MOUSE}/trials/{oracle[0]}", tmp_path)
    plots = re.findall(r'<svg class="plot plot-lines".*?</svg>', dom, re.S)
    assert len(plots) == 4
    frames = folder.length(oracle[0]) - server_models.RECEPTIVE_FIELD + 1
    for plot in plots:
        series = re.findall(r'points="([^"]*)"[^>]*data-name="(\w+)"', plot)
        assert [name for _, name in series] == ["predicted", "recorded"]
        assert all(len(points.split()) == frames for points, _ in series)
    correlations = [float(c) for c in re.findall(r'<td class="num">(-?[0-9.]+)</td>', dom)]
    assert len(correlations) == 4 and all(-1 <= c <= 1 for c in correlations)
    for trial in hidden[:3]:
        status, body = fetch(site, f"/models/{MODEL_MOUSE}/trials/{trial}")
        assert status == 403 and "hidden" in body and "<svg" not in body


def test_no_test_tier_truth_in_any_served_byte(site: Site) -> None:
    """Runs last in this module: every page, API answer and DOM fetched above, plus a crawl of every link."""
    for path in ["/", "/healthz", "/models", *(f"/submissions/{i}" for i in site.ids.values())]:
        status, body = fetch(site, path)
        assert status == 200
        for link in re.findall(r'href="(/[^"]*)"', body):
            fetch(site, link)
    for track, tier in (("main", "live"), ("main", "final"), ("bonus", "live"), ("bonus", "final")):
        fetch(site, f"/api/leaderboard/{track}/{tier}")
    for i in site.ids.values():
        fetch(site, f"/api/submissions/{i}")
    assert len(site.served) >= 15
    assert len(site.secrets) > 20
    leaks = [
        (secret, n)
        for n, body in enumerate(site.served)
        for secret in site.secrets
        if secret.encode() in body
    ]
    assert not leaks, f"test-tier truth served: {leaks[:5]}"
