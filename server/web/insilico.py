"""In-silico report pages: what `sensorium-serve insilico` measured, per model, as pictures (docs/INSILICO.md).

Reads a results folder (``--insilico DIR``: one subfolder per model, models.insilico.results) and nothing else.
``/insilico`` lists the models; ``/insilico/<label>`` shows the distribution of preferred orientations, OSI and
DSI, the receptive-field centres over the screen coloured by orientation, the agreement with the synthetic
ground truth when it was checked, and per selected neuron its tuning curve, receptive-field map and MEI frames.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from models.insilico.results import MEI_FILE, TUNING_FILE, MEIResult, TuningResult, result_folders
from models.insilico.truth_check import CheckArrays, load_check
from server.web import images, svg
from server.web.pages import fmt, layout

log = logging.getLogger(__name__)
SCREEN = (FRAME_HEIGHT, FRAME_WIDTH)
MAX_NEURON_CARDS = 10
MEI_FRAMES_SHOWN = 4


@dataclass(frozen=True)
class Report:
    label: str
    tuning: TuningResult | None
    check: tuple[dict[str, Any], CheckArrays] | None
    mei: MEIResult | None
    error: str = ""  # why the folder could not be read (the page says so instead of failing)


class InsilicoResults:
    """A results folder; files are re-read when they change (a new `insilico` run shows on reload)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple[float, ...], Report]] = {}
        self._lock = threading.Lock()

    def labels(self) -> list[str]:
        return list(result_folders(self.root))

    def report(self, label: str) -> Report:
        """KeyError when there is no such result."""
        folder = result_folders(self.root).get(label)
        if folder is None:
            raise KeyError(f"no in-silico results named {label!r}")
        stamp = tuple(p.stat().st_mtime if p.exists() else 0.0 for p in sorted(folder.iterdir()))
        with self._lock:
            cached = self._cache.get(label)
            if cached and cached[0] == stamp:
                return cached[1]
        try:
            tuning = TuningResult.load(folder) if (folder / TUNING_FILE).is_file() else None
            mei = MEIResult.load(folder) if (folder / MEI_FILE).is_file() else None
            report = Report(label, tuning, load_check(folder), mei)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("in-silico results %s unreadable: %s", folder, exc)
            report = Report(label, None, None, None, error=str(exc))
        with self._lock:
            self._cache[label] = (stamp, report)
        return report


def href(label: str) -> str:
    return f"/insilico/{quote(label)}"


# ------------------------------------------------------------------------------------------------ index


def index_page(results: InsilicoResults | None) -> str:
    if results is None:
        return layout(
            "In-silico experiments",
            '<p class="empty">No in-silico results: start the pages with --insilico DIR (the --out folder of '
            "`sensorium-serve insilico tuning` / `mei`).</p>",
        )
    rows = []
    for label in results.labels():
        r = results.report(label)
        if r.error:
            rows.append(
                f'<tr data-label="{escape(label)}"><td><a href="{href(label)}">{escape(label)}</a></td>'
                f'<td colspan="8" class="empty">unreadable: {escape(r.error)}</td></tr>'
            )
            continue
        t = r.tuning.summary() if r.tuning else {}
        c = r.check[0]["all"] if r.check else {}
        m = r.mei.meta if r.mei else {}
        cells = [
            f'<td><a href="{href(label)}">{escape(label)}</a></td>',
            f"<td>{escape(str(t.get('source') or m.get('run') or ''))}</td>",
            f'<td class="num">{t.get("neurons", "")}</td>',
            f'<td class="num">{fmt(t.get("median_osi"), 3)}</td>',
            f'<td class="num">{fmt(t.get("median_dsi"), 3)}</td>',
            f'<td class="num">{t.get("receptive_fields_found", "")}</td>',
            f'<td class="num">{_pct(c.get("share_orientation_within_22.5"))}</td>',
            f'<td class="num">{fmt(c.get("median_rf_centre_error_px"), 2)}</td>',
            f'<td class="num">{fmt(m.get("median_ratio"), 2)}</td>',
        ]
        rows.append(f'<tr data-label="{escape(label)}">{"".join(cells)}</tr>')
    if not rows:
        return layout(
            "In-silico experiments", f'<p class="empty">No results in {escape(str(results.root))} yet.</p>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "model",
            "source",
            "neurons",
            "median OSI",
            "median DSI",
            "RFs found",
            "orientation within 22.5° of truth",
            "median RF-centre error (px)",
            "MEI / best natural",
        )
    )
    table = f'<table class="insilico" id="insilico-models"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    note = (
        '<p class="rule">Drifting gratings and sparse noise through each model (behaviour at the training means); '
        "agreement columns compare with the synthetic ground truth where it was checked.</p>"
    )
    return layout("In-silico experiments", note + table)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


# ------------------------------------------------------------------------------------------------ report


def report_page(report: Report) -> str:
    if report.error:
        return layout(
            f"In silico: {report.label}", f'<p class="empty">Unreadable results: {escape(report.error)}</p>'
        )
    parts = []
    if report.tuning is not None:
        parts += [_facts(report.tuning), _population(report.tuning)]
    if report.check is not None and report.tuning is not None:
        parts.append(_truth(report.tuning, *report.check))
    if report.mei is not None:
        parts.append(_mei_table(report.mei))
    parts.append(_neurons(report))
    return layout(f"In silico: {report.label}", "\n".join(parts))


def _facts(t: TuningResult) -> str:
    m, bg = t.meta, t.meta.get("background", {})
    g = m.get("protocol", {}).get("gratings", {})
    n = m.get("protocol", {}).get("sparse_noise", {})
    facts = [
        ("model", m.get("model", "")),
        ("source", m.get("source", "")),
        ("neurons", str(t.n_neurons)),
        ("run time", f"{m.get('seconds', 0):.1f} s"),
        (
            "held constant (training means)",
            f"grey {bg.get('grey', 0):.1f}; pupil dilation, running {_list(bg.get('behavior'))}; "
            f"eye position {_list(bg.get('pupil_center'))}",
        ),
        (
            "gratings",
            f"{g.get('directions')} directions x spatial frequencies {_list(g.get('spatial_frequencies'))} "
            f"cycles/px x temporal frequencies {_list(g.get('temporal_frequencies'))} Hz",
        ),
        (
            "sparse noise",
            f"{n.get('flashes')} flashes of {n.get('patches')} drifting Gabor patches (sigma {n.get('sigma')} px) "
            f"on a {n.get('stride')}-px grid",
        ),
        ("units", m.get("units", "")),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts)
    return f'<table class="facts">{rows}</table>'


def _list(values: Any) -> str:
    return ", ".join(f"{v:.3g}" for v in values or [])


def _population(t: TuningResult) -> str:
    tuned = t.amplitude > 0
    plots = [
        svg.histogram(
            t.preferred_orientation[tuned],
            f"Preferred orientation ({int(tuned.sum())} neurons driven by gratings)",
            "orientation of the drift axis (deg, 0 = horizontal motion)",
            bins=16,
            value_range=(0.0, 180.0),
            mean_line=False,  # a circular variable: no arithmetic mean
        ),
        svg.histogram(t.osi[tuned], "Orientation selectivity (OSI)", "OSI", bins=20, value_range=(0.0, 1.0)),
        svg.histogram(t.dsi[tuned], "Direction selectivity (DSI)", "DSI", bins=20, value_range=(0.0, 1.0)),
        svg.screen_map(
            t.rf_centre, t.preferred_orientation, "Receptive-field centres over the screen", SCREEN
        ),
    ]
    return '<h2>Population</h2>\n<div class="plots">' + "\n".join(plots) + "</div>"


def _truth(t: TuningResult, summary: dict[str, Any], arrays: CheckArrays) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            f"{escape(summary['test_tier'])} correlation",
            "neurons",
            "orientation within 22.5°",
            "median orientation error (deg)",
            "median RF-centre error (px)",
            "type (simple/complex) right",
        )
    )
    rows = []
    for row in [*summary["by_test_correlation"], {"test_correlation": "all", **summary["all"]}]:
        rows.append(
            f'<tr data-bin="{escape(row["test_correlation"])}"><td>{escape(row["test_correlation"])}</td>'
            f'<td class="num">{row["neurons"]}</td>'
            f'<td class="num">{_pct(row["share_orientation_within_22.5"])}</td>'
            f'<td class="num">{fmt(row["median_orientation_error_deg"], 1)}</td>'
            f'<td class="num">{fmt(row["median_rf_centre_error_px"], 2)}</td>'
            f'<td class="num">{_pct(row["share_type_correct"])}</td></tr>'
        )
    table = f'<table class="truth" id="truth-agreement"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    index = {int(u): i for i, u in enumerate(t.unit_ids)}
    rows_t = np.array([index[int(u)] for u in arrays.unit_ids])
    plots = [
        svg.scatter(
            arrays.true_orientation,
            t.preferred_orientation[rows_t],
            "Preferred orientation: measured against true",
            "true orientation (deg)",
            "measured orientation (deg)",
        ),
        svg.histogram(
            arrays.rf_centre_error,
            "Receptive-field centre error",
            "distance to the true centre (px)",
            bins=30,
        ),
        svg.screen_map(
            t.rf_centre[rows_t],
            t.preferred_orientation[rows_t],
            "Measured RF centres (dots) and their true positions (line ends)",
            SCREEN,
            truth=arrays.true_rf_centre,
        ),
    ]
    return (
        "<h2>Agreement with the synthetic ground truth</h2>\n"
        f'<p class="rule">Neurons binned by the model\'s single-trial correlation on {escape(summary["test_tier"])} '
        f"(median {summary['median_test_correlation']:.3f}): how well the model predicts a neuron against how "
        "well its in-silico tuning matches the generator's parameters.</p>\n"
        f'{table}\n<div class="plots">' + "\n".join(plots) + "</div>"
    )


def _mei_table(mei: MEIResult) -> str:
    m = mei.meta
    rows = "".join(
        f'<tr data-unit="{int(u)}"><td>{int(u)}</td><td class="num">{fmt(float(c), 3)}</td>'
        f'<td class="num">{fmt(float(a), 3)}</td><td class="num">{fmt(float(b), 3)}</td>'
        f'<td class="num ratio">{fmt(float(a / b) if b > 0 else None, 2)}</td></tr>'
        for u, c, a, b in zip(
            mei.unit_ids, mei.oracle_correlation, mei.mei_activation, mei.natural_activation, strict=True
        )
    )
    head = "<th>unit</th><th>oracle correlation</th><th>MEI</th><th>best natural clip</th><th>ratio</th>"
    return (
        "<h2>Most exciting inputs</h2>\n"
        f'<p class="rule">RMS contrast budget {m.get("contrast_budget", 0):.1f} grey levels around '
        f"{m.get('grey', 0):.1f}, clips of {m.get('frames')} frames; responses (model units) averaged over "
        f"the last {m.get('frames_out')} output frames; natural clips rescaled to the same budget.</p>\n"
        f'<table class="mei" id="mei-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def _selected(report: Report) -> list[int]:
    """Unit ids of the neurons shown one by one: the MEI neurons, else the best-tuned ones."""
    if report.mei is not None:
        return [int(u) for u in report.mei.unit_ids[:MAX_NEURON_CARDS]]
    t = report.tuning
    if t is None:
        return []
    score = np.where(t.tuning_r2 > 0.5, t.amplitude, -np.inf)
    order = np.argsort(-score)[: min(6, t.n_neurons)]
    return [int(t.unit_ids[i]) for i in order if np.isfinite(score[i])]


def _neurons(report: Report) -> str:
    units = _selected(report)
    if not units:
        return ""
    t = report.tuning
    index = {int(u): i for i, u in enumerate(t.unit_ids)} if t is not None else {}
    truth = {}
    if report.check is not None:
        arrays = report.check[1]
        truth = {
            int(u): (arrays.true_rf_centre[i], arrays.true_orientation[i])
            for i, u in enumerate(arrays.unit_ids)
        }
    mei_index = {int(u): i for i, u in enumerate(report.mei.unit_ids)} if report.mei is not None else {}
    cards = []
    for unit in units:
        parts = [f"<h3>Neuron {unit}</h3>"]
        if unit in index and t is not None:
            i = index[unit]
            plots = _tuning_curve(t, i, unit, truth.get(unit)) + _rf_map(t, i, unit, truth.get(unit))
            parts.append(f'<div class="plots">{plots}</div>')
        if unit in mei_index and report.mei is not None:
            parts.append(_mei_frames(report.mei, mei_index[unit], unit))
        cards.append(f'<div class="neuron" data-unit="{unit}">' + "\n".join(parts) + "</div>")
    return "<h2>Selected neurons</h2>\n" + "\n".join(cards)


def _tuning_curve(t: TuningResult, i: int, unit: int, truth: tuple[np.ndarray, float] | None) -> str:
    directions = np.asarray(t.meta["protocol"]["gratings"]["direction_deg"], np.float64)
    theta = np.arange(0.0, 361.0, 5.0)
    fitted = t.fitted_curves(np.array([i]), theta)[0]
    caption = (
        f"{t.preferred_sf[i]:.3g} cycles/px, {t.preferred_tf[i]:g} Hz: OSI {t.osi[i]:.2f}, DSI {t.dsi[i]:.2f}, "
        f"preferred direction {t.preferred_direction[i]:.0f}°, orientation {t.preferred_orientation[i]:.0f}°"
        + (f" (true {truth[1]:.0f}°)" if truth is not None else "")
        + f", F1/F0 {t.f1_f0[i]:.2f}"
    )
    return (
        '<figure class="tuning">'
        + svg.xy_lines(
            {"measured": (directions, t.direction_curve[i]), "fit": (theta, fitted)},
            f"Neuron {unit}: direction tuning",
            "direction of drift (deg)",
            "response above grey (model units)",
            markers=("measured",),
            x_range=(0.0, 360.0),
        )
        + f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _rf_map(t: TuningResult, i: int, unit: int, truth: tuple[np.ndarray, float] | None) -> str:
    marks = {"fitted centre": (float(t.rf_centre[i, 0]), float(t.rf_centre[i, 1]))}
    if truth is not None:
        marks["true centre"] = (float(truth[0][0]), float(truth[0][1]))
    return svg.heatmap(
        t.rf_map[i],
        t.rf_rows,
        t.rf_cols,
        f"Neuron {unit}: sparse-noise map (sigma {t.rf_sigma[i]:.1f} px)",
        SCREEN,
        marks,
    )


def _mei_frames(mei: MEIResult, k: int, unit: int) -> str:
    clip, natural = mei.mei[k], mei.natural[k]
    frames = np.unique(np.linspace(0, clip.shape[0] - 1, MEI_FRAMES_SHOWN).round().astype(int))
    pictures = [
        f'<figure class="mei-frame" data-frame="{f}">{images.img(images.grey(clip[f]), f"MEI of {unit}, frame {f}")}'
        f"<figcaption>MEI frame {f}</figcaption></figure>"
        for f in frames
    ]
    last = natural.shape[0] - 1
    pictures.append(
        f'<figure class="natural-frame">{images.img(images.grey(natural[last]), f"best natural clip of {unit}, frame {last}")}'
        f"<figcaption>best natural clip, frame {last}</figcaption></figure>"
    )
    ratio = (
        mei.mei_activation[k] / mei.natural_activation[k] if mei.natural_activation[k] > 0 else float("nan")
    )
    return (
        f'<div class="mei-frames"><p>MEI response {mei.mei_activation[k]:.2f} vs best natural clip '
        f"{mei.natural_activation[k]:.2f} (ratio {fmt(ratio, 2)})</p>"
        f'<div class="plots">{"".join(pictures)}</div></div>'
    )
