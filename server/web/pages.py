"""HTML of the read-only pages: the leaderboards (every track x tier) and one report per submission.

Pure functions from the scoring store's records to HTML strings (no I/O here). Everything user-supplied
(submitter, label) is escaped. The pages show scores only: means and per-neuron statistics of a submission,
never ground-truth responses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

import numpy as np

from models.benchmark import TEST_ROUNDS, TRACKS
from server.scoring.neuron_scores import NeuronArrays
from server.scoring.results import (
    CORRELATION_TO_AVERAGE,
    FEVE,
    LEADERBOARD_RULE,
    METRICS,
    SINGLE_TRIAL_CORRELATION,
    LeaderboardRow,
    SubmissionRecord,
)
from server.web import svg
from server.web.traces import PUBLIC_TIERS, Trace

METRIC_TITLES = {
    SINGLE_TRIAL_CORRELATION: "single-trial correlation",
    CORRELATION_TO_AVERAGE: "correlation to average",
    FEVE: "FEVE",
}
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1180px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 1.8rem; }
table { border-collapse: collapse; margin: 0.6rem 0; } th, td { padding: 0.25rem 0.7rem; text-align: left; }
th { background: #eef1f5; } tr:nth-child(even) td { background: #f8f9fb; } td.num { text-align: right; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } .empty { color: #777; font-style: italic; }
.rule { color: #555; font-size: 0.9rem; } nav a { margin-right: 1rem; }
.neuron { border-top: 1px solid #ddd; margin-top: 1rem; }
figure { margin: 0.3rem; text-align: center; max-width: 560px; }
figcaption { font-size: 0.8rem; color: #555; }
"""


def short_mouse(session: str) -> str:
    """``dynamic29515-10-12-Video-<hash>`` -> ``dynamic29515-10-12`` (plot labels)."""
    return session.split("-Video-")[0]


def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def layout(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
        '<nav><a href="/">Leaderboards</a><a href="/models">Models</a><a href="/insilico">In silico</a></nav>\n'
        f"<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def submission_href(submission_id: str) -> str:
    return f"/submissions/{quote(submission_id)}"


def leaderboard_table(track: str, tier: str, rows: Sequence[LeaderboardRow]) -> str:
    if not rows:
        return f'<p class="empty" id="board-{track}-{tier}-empty">No submissions on {track}/{tier} yet.</p>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("rank", "submitter", "label", *(METRIC_TITLES[m] for m in METRICS), "submissions", "date")
    )
    body = []
    for row in rows:
        s = row.record.scores
        cells = [
            f'<td class="num">{row.rank}</td>',
            f'<td class="submitter">{escape(s.submitter)}</td>',
            f'<td><a href="{submission_href(row.record.submission_id)}">{escape(s.label or "(no label)")}</a></td>',
            *(f'<td class="num">{fmt(s.metrics[m].overall)}</td>' for m in METRICS),
            f'<td class="num">{row.submitter_submissions}</td>',
            f"<td>{row.record.created_at:%Y-%m-%d %H:%M} UTC</td>",
        ]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="leaderboard" id="board-{track}-{tier}" data-track="{track}" data-tier="{tier}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def index_page(boards: Mapping[tuple[str, str], Sequence[LeaderboardRow]]) -> str:
    """All leaderboards: one section per track, one table per tier (live, final)."""
    parts = [f'<p class="rule">Ranking: {escape(LEADERBOARD_RULE)}.</p>']
    for track in TRACKS:
        parts.append(f'<h2 id="track-{track}">{track} track</h2>')
        for tier in TEST_ROUNDS:
            parts.append(f"<h3>{tier} tier</h3>")
            parts.append(leaderboard_table(track, tier, boards.get((track, tier), [])))
    return layout("SENSORIUM leaderboards", "\n".join(parts))


def _scores_table(record: SubmissionRecord) -> str:
    s = record.scores
    mice = sorted({m for name in METRICS for m in s.metrics[name].per_mouse})
    head = "<th>metric</th><th>overall</th>" + "".join(
        f'<th title="{escape(m)}">{escape(short_mouse(m))}</th>' for m in mice
    )
    rows = []
    for name in METRICS:
        m = s.metrics[name]
        cells = "".join(f'<td class="num">{fmt(m.per_mouse.get(mouse))}</td>' for mouse in mice)
        rows.append(
            f'<tr data-metric="{name}"><td>{METRIC_TITLES[name]}</td>'
            f'<td class="num overall">{fmt(m.overall)}</td>{cells}</tr>'
        )
    table = f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    families = sorted({f for name in METRICS for f in s.metrics[name].per_family})
    if families:
        fam_head = "<th>OOD family</th>" + "".join(f"<th>{METRIC_TITLES[m]}</th>" for m in METRICS)
        fam_rows = "".join(
            f'<tr data-family="{escape(f)}"><td>{escape(f)}</td>'
            + "".join(f'<td class="num">{fmt(s.metrics[m].per_family.get(f))}</td>' for m in METRICS)
            + "</tr>"
            for f in families
        )
        table += (
            f'<table class="families"><thead><tr>{fam_head}</tr></thead><tbody>{fam_rows}</tbody></table>'
        )
    return table


def _plots(record: SubmissionRecord, neurons: Mapping[str, NeuronArrays]) -> str:
    s = record.scores
    out = []
    per_mouse = {short_mouse(m): v for m, v in s.metrics[SINGLE_TRIAL_CORRELATION].per_mouse.items()}
    out.append(svg.bars(per_mouse, "Single-trial correlation per mouse", "correlation"))
    per_family = s.metrics[SINGLE_TRIAL_CORRELATION].per_family
    if per_family:
        out.append(svg.bars(per_family, "Single-trial correlation per OOD family", "correlation"))
    if neurons:
        corr = np.concatenate([a.single_trial_correlation for a in neurons.values()])
        out.append(
            svg.histogram(corr, f"Per-neuron single-trial correlation ({corr.size} neurons)", "correlation")
        )
        with_fev = {m: a for m, a in neurons.items() if a.fev is not None}
        if with_fev:
            fev = np.concatenate([a.fev for a in with_fev.values()])  # type: ignore[misc]
            corr_fev = np.concatenate([a.single_trial_correlation for a in with_fev.values()])
            groups = [short_mouse(m) for m, a in with_fev.items() for _ in range(a.n_neurons)]
            out.append(
                svg.scatter(
                    fev,
                    corr_fev,
                    "Correlation against explainable variance (FEV) per neuron",
                    "fraction of explainable variance (FEV)",
                    "single-trial correlation",
                    groups,
                )
            )
        else:
            out.append('<p class="empty">No FEV: this tier has no repeated stimulus.</p>')
    else:
        out.append('<p class="empty">Per-neuron scores were not stored for this submission.</p>')
    return '<div class="plots">' + "\n".join(out) + "</div>"


def submission_page(record: SubmissionRecord, neurons: Mapping[str, NeuronArrays]) -> str:
    s = record.scores
    facts = [
        ("submission", record.submission_id),
        ("submitter", s.submitter),
        ("label", s.label or "(no label)"),
        ("track / tier", f"{s.track} / {s.tier}"),
        ("recorded", f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("trials", str(s.n_trials)),
        ("neurons", str(s.n_neurons)),
    ]
    dl = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    body = (
        f'<table class="facts">{dl}</table>\n<h2>Scores</h2>\n{_scores_table(record)}\n'
        f"<h2>Plots</h2>\n{_plots(record, neurons)}\n"
        '<p class="rule">Scores are computed on the hidden test responses, which never leave the server: '
        "this page shows per-neuron statistics only.</p>"
    )
    return layout(f"Submission {s.label or record.submission_id}", body)


def models_page(trials: Mapping[str, Mapping[str, Sequence[int]]] | None) -> str:
    """Mice of the public folder with links to their public trials (``None``: traces are off)."""
    if trials is None:
        return layout(
            "Models",
            '<p class="empty">Model traces are off: the server runs without a public data folder (they need '
            "--truth DIR/truth with its sibling DIR/public) or with token authentication.</p>",
        )
    parts = [
        f'<p class="rule">Predicted vs recorded responses on released trials (tiers {", ".join(PUBLIC_TIERS)}); '
        "test-tier responses are never shown.</p>"
    ]
    for mouse, by_tier in trials.items():
        parts.append(f'<h2 title="{escape(mouse)}">{escape(short_mouse(mouse))}</h2>')
        for tier, indices in by_tier.items():
            links = " ".join(
                f'<a class="trial" href="/models/{quote(mouse)}/trials/{i}">{i}</a>' for i in indices[:50]
            )
            parts.append(f"<p>{escape(tier)} trials: {links or '<span class=empty>none</span>'}</p>")
    return layout("Models", "\n".join(parts))


def trace_page(trace: Trace) -> str:
    rows = "".join(
        f'<tr><td>{int(u)}</td><td class="num">{fmt(float(c), 3)}</td></tr>'
        for u, c in zip(trace.unit_ids, trace.correlation, strict=True)
    )
    plots = [
        svg.lines(
            {"predicted": trace.predicted[j], "recorded": trace.recorded[j]},
            f"Neuron {int(u)}: predicted vs recorded",
            "frame",
            "standardised response",
            x_offset=trace.first_frame,
        )
        for j, u in enumerate(trace.unit_ids)
    ]
    body = (
        f"<p>{escape(trace.mouse)}, trial {trace.trial} (tier {escape(trace.tier)}), frames from "
        f"{trace.first_frame} (the first with a full receptive field).</p>"
        f'<table class="trace-scores"><thead><tr><th>neuron</th><th>correlation</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f'<div class="plots">{"".join(plots)}</div>'
    )
    return layout(f"{short_mouse(trace.mouse)} trial {trace.trial}", body)


def not_found_page(what: str) -> str:
    return layout("Not found", f"<p>{escape(what)}</p>")


def json_ready(value: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
