"""The in-silico report pages (server/web/insilico.py) served by the real read-only web server: what each
picture shows is read back from the page and compared with the result files; the same pages in headless
Chromium (slow, like tests/ops/test_ops_web.py); bad folders and labels."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from insilico_support import CELLS

from models.data.synthetic.neurons import NeuronTruth
from models.insilico.results import MEIResult, TuningResult
from models.insilico.truth_check import compare, save_check
from server.web.http import WebServer
from server.web.insilico import InsilicoResults

ROOT = Path(__file__).resolve().parents[2]


def mei_result(result: TuningResult) -> MEIResult:
    """A hand-made MEI file for two of the analytic cells (a bright blob; a dimmer natural clip)."""
    rng = np.random.default_rng(0)
    k, frames = 2, 6
    mei = np.full((k, frames, 36, 64), 80.0, np.float32)
    mei[:, :, 10:20, 15:30] = rng.uniform(0, 255, (k, frames, 10, 15))
    return MEIResult(
        meta={"mouse": "analytic", "contrast_budget": 30.0, "grey": 80.0, "frames": frames, "frames_out": 2,
              "median_ratio": 2.5, "min_ratio": 2.0},
        unit_ids=result.unit_ids[[2, 0]],
        mei=mei,
        mei_activation=np.array([5.0, 3.0]),
        start_activations=np.array([[5.0, 4.0], [3.0, 2.5]]),
        natural=rng.uniform(0, 255, (k, frames, 36, 64)).astype(np.float32),
        natural_activation=np.array([2.0, 1.5]),
        oracle_correlation=np.array([0.6, 0.5]),
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(
    analytic_result: TuningResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("insilico-web")
    folder = root / "analytic"
    analytic_result.save(folder)
    truth = NeuronTruth(
        session="analytic",
        unit_ids=analytic_result.unit_ids,
        rf_centre=np.array([c.centre for c in CELLS]),
        orientation=np.mod([c.orientation for c in CELLS], 180.0),
        complex_cell=np.array([c.kind == "complex" for c in CELLS]),
        behaviour_gain=np.zeros((len(CELLS), 2)),
    )
    save_check(folder, *compare(analytic_result, truth, np.linspace(0.05, 0.45, len(CELLS))))
    mei_result(analytic_result).save(folder)
    (root / "broken").mkdir()
    (root / "broken" / "tuning.npz").write_bytes(b"not a zip file")
    web = WebServer(None, "127.0.0.1", 0, insilico_results=InsilicoResults(root))
    port = web.start()
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        web.stop()


def fetch(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def svg_attr(page: str, kind: str, attr: str) -> list[str]:
    return re.findall(rf'<svg[^>]*class="plot plot-{kind}"[^>]*data-{attr}="([^"]*)"', page)


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) pixels of an 8-bit RGB, filter-0 PNG (what server/web/images.py writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert zlib.crc32(kind + body) == int.from_bytes(data[pos + 8 + n : pos + 12 + n], "big")
        if kind == b"IHDR":
            size = (int.from_bytes(body[4:8], "big"), int.from_bytes(body[:4], "big"))
            assert body[8:10] == b"\x08\x02"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert size is not None
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(size[0], 1 + 3 * size[1])
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(size[0], size[1], 3)


def test_index_lists_each_model_with_its_summary(site) -> None:
    base, root = site
    status, page, headers = fetch(base + "/insilico")
    assert status == 200 and headers["Content-Security-Policy"].startswith("default-src 'none'")
    rows = dict(re.findall(r'<tr data-label="([^"]+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {"analytic", "broken"}
    cells = [
        unescape(re.sub(r"<[^>]+>", "", c))
        for c in re.findall(r"<td[^>]*>(.*?)</td>", rows["analytic"], re.S)
    ]
    summary = TuningResult.load(root / "analytic").summary()
    assert cells[2] == str(len(CELLS)) and cells[3] == f"{summary['median_osi']:.3f}"
    assert cells[-1] == "2.50"  # the MEI file's median ratio
    assert "unreadable" in rows["broken"]


def test_report_pictures_show_the_result(site) -> None:
    base, root = site
    status, page, _ = fetch(base + "/insilico/analytic")
    assert status == 200 and "<script" not in page
    result = TuningResult.load(root / "analytic")
    counts = [int(c) for c in svg_attr(page, "histogram", "count")]
    assert counts[:3] == [len(CELLS)] * 3  # orientation, OSI, DSI of every driven neuron
    assert svg_attr(page, "screen", "points")[0] == str(len(CELLS))
    dots = [float(o) for o in re.findall(r'class="centre"[^>]*data-orientation="([^"]+)"', page)]
    np.testing.assert_allclose(sorted(dots[: len(CELLS)]), sorted(result.preferred_orientation), atol=0.05)
    # agreement table: one row per correlation bin and one for all
    truth_rows = {unescape(k): v for k, v in re.findall(r'<tr data-bin="([^"]+)">(.*?)</tr>', page, re.S)}
    assert set(truth_rows) == {"< 0.1", "0.1 - 0.2", "0.2 - 0.3", "0.3 - 0.4", ">= 0.4", "all"}
    assert re.findall(r'<td class="num">([^<]*)</td>', truth_rows["all"])[0] == str(len(CELLS))
    # MEI table and one card per MEI neuron, with its tuning curve, RF map and frames
    ratios = re.findall(r'<td class="num ratio">([^<]*)</td>', page)
    assert ratios == ["2.50", "2.00"]
    cards = re.findall(
        r'<div class="neuron" data-unit="(\d+)">(.*?)</div>\n(?=<div class="neuron"|</body>)', page, re.S
    )
    assert [int(u) for u, _ in cards] == [int(result.unit_ids[2]), int(result.unit_ids[0])]
    card, i = cards[0][1], 2
    measured = [float(y) for y in re.findall(r'data-name="measured" data-x="[^"]+" data-y="([^"]+)"', card)]
    np.testing.assert_allclose(measured, result.direction_curve[i], rtol=1e-3, atol=1e-4)
    cells = svg_attr(card, "heatmap", "cells")
    assert cells == [str(result.rf_map[i].size)]
    marks = dict(
        (n, (float(r), float(c)))
        for n, r, c in re.findall(r'data-name="([^"]+)" data-row="([^"]+)" data-col="([^"]+)"', card)
    )
    np.testing.assert_allclose(marks["fitted centre"], result.rf_centre[i], atol=0.01)
    np.testing.assert_allclose(marks["true centre"], CELLS[i].centre, atol=0.01)
    # MEI frames: inline PNGs of the stored clip, pixel for pixel (grey levels 0..255)
    mei = MEIResult.load(root / "analytic")
    frames = [int(f) for f in re.findall(r'<figure class="mei-frame" data-frame="(\d+)">', card)]
    pngs = re.findall(r'<figure class="mei-frame"[^>]*><img [^>]*src="data:image/png;base64,([^"]+)"', card)
    assert frames == [0, 2, 3, 5] and len(pngs) == 4
    pixels = decode_png(base64.b64decode(pngs[1]))
    np.testing.assert_array_equal(pixels[..., 0], np.clip(mei.mei[0, 2] + 0.5, 0, 255).astype(np.uint8))
    assert len(re.findall(r'<figure class="natural-frame">', card)) == 1


def test_unknown_and_unreadable_results(site) -> None:
    base, _ = site
    assert fetch(base + "/insilico/nothing")[0] == 404
    assert fetch(base + "/insilico/..%2F..%2Fetc")[0] == 404
    status, page, _ = fetch(base + "/insilico/broken")
    assert status == 200 and "Unreadable results" in page
    assert fetch(base + "/")[0] == 404  # no scoring database behind these pages
    status, page, _ = fetch(base + "/healthz")
    assert status == 200


def test_pages_without_a_results_folder_say_so() -> None:
    web = WebServer(None, "127.0.0.1", 0)
    port = web.start()
    try:
        status, page, _ = fetch(f"http://127.0.0.1:{port}/insilico")
    finally:
        web.stop()
    assert status == 200 and "--insilico DIR" in page


@pytest.mark.slow
def test_report_in_headless_chromium(site, tmp_path: Path) -> None:
    """The browser loads the page under its Content-Security-Policy: every plot and picture is in the DOM."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        subprocess.run([str(ROOT / "scripts" / "ensure_chromium.sh")], check=True)
        chromium = shutil.which("chromium")
    assert chromium, "chromium missing (scripts/ensure_chromium.sh)"
    base, _ = site
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", base + "/insilico/analytic"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    dom = done.stdout.decode()
    assert "<title>In silico: analytic</title>" in dom
    assert len(re.findall(r'<svg class="plot plot-histogram"', dom)) == 4  # 3 population + RF-error histogram
    assert len(re.findall(r'<svg class="plot plot-screen"', dom)) == 2
    assert (
        len(re.findall(r'<svg class="plot plot-xy"', dom)) == 2 and len(re.findall(r"plot-heatmap", dom)) == 2
    )
    assert len(re.findall(r'<img class="picture" src="data:image/png;base64,', dom)) == 2 * 5
    assert 'id="truth-agreement"' in dom and 'id="mei-table"' in dom


def test_serve_shows_the_reports_beside_the_leaderboards(site, tmp_path: Path) -> None:
    """`serve --web-port P --insilico DIR`: the same pages from the server's own web port."""
    import sys

    sys.path.append(str(ROOT / "tests"))
    from area_modules import load_module

    from server.testing import MOUSE, make_params, write_model

    ops = load_module("ops_support", ROOT / "tests" / "ops" / "ops_support.py")
    _, root = site
    write_model(tmp_path / "repo", MOUSE, 1, make_params(1))
    server = ops.launch(
        tmp_path / "repo",
        tmp_path,
        "--insilico",
        str(root),
        "--db",
        f"sqlite:///{tmp_path / 's.db'}",
        web=True,
    )  # type: ignore[attr-defined]
    try:
        ops.wait_serving(server.target, server.proc, server.log_path)  # type: ignore[attr-defined]
        status, page, _ = fetch(f"http://127.0.0.1:{server.web_port}/insilico/analytic")
        assert status == 200 and 'id="mei-table"' in page
        assert fetch(f"http://127.0.0.1:{server.web_port}/")[0] == 200  # the leaderboards still there
    finally:
        server.stop()
