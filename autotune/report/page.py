"""The report as one self-contained HTML page: styles, the sorting script and the plot inline, nothing fetched.

A Content-Security-Policy in the page forbids every network load, so a page that renders here renders offline.
Every string that comes from the profile passes through ``html.escape``: a model or a path named like markup
stays text. Figures are printed rounded and carry their exact value in ``data-value`` (table cells in
``data-sort``, which the sorting script reads), so what the page shows can be checked against the profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from autotune.profile.schema import Confirmation, DeploymentProfile, Interval
from autotune.report.evidence import Evidence, Row, params_text, size_text, text_of
from autotune.report.plot import front_svg

POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
"""No request may leave the page: everything it needs is inside it."""

STYLE = """
:root { --ink: #1d2430; --dim: #5b6575; --line: #d9dee6; --accent: #c0392b; --blue: #2e6db4; --ok: #1e7b4a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #f5f7fa; }
main { max-width: 1400px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { font-size: 22px; margin: 0 0 4px; overflow-wrap: anywhere; }
header p { margin: 0; color: var(--dim); overflow-wrap: anywhere; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin-top: 18px; }
h2 { font-size: 17px; margin: 0 0 10px; }
.lead { font-size: 16px; margin: 0 0 12px; overflow-wrap: anywhere; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 12px; }
.figure { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.figure .label { color: var(--dim); font-size: 12px; }
.figure .value { font-size: 20px; font-weight: 600; }
.figure .sub { color: var(--dim); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 30%; font-weight: 500; color: var(--dim); overflow-wrap: anywhere; }
table.kv td { overflow-wrap: anywhere; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; background: #eef2f7; position: sticky; top: 0; }
table.sortable th[aria-sort=ascending]::after { content: " ▲"; }
table.sortable th[aria-sort=descending]::after { content: " ▼"; }
table.trials td { font-size: 13px; }
table.trials td.why, table.trials td.conf { max-width: 320px; overflow-wrap: anywhere; }
table.trials td.machine { white-space: nowrap; }
tr.chosen td { background: #fdecea; font-weight: 600; }
tr.front td:first-child::before { content: "◆ "; color: var(--blue); }
tr.chosen td:first-child::before { content: "★ "; color: var(--accent); }
.muted { color: var(--dim); }
.tag { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; background: #eef2f7; }
.tag.busy { background: #fff1d6; color: #8a5a00; }
.tag.quiet { background: #e3f4ea; color: var(--ok); }
.scroll { overflow-x: auto; max-height: 720px; overflow-y: auto; }
pre { background: #f0f2f5; padding: 10px; border-radius: 6px; overflow-x: auto; font-size: 12px; white-space: pre; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
.bar { height: 10px; background: var(--blue); border-radius: 3px; min-width: 1px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; } .grid2 section { margin-top: 0; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
svg.front { max-width: 100%; height: auto; font: 12px system-ui, "DejaVu Sans", sans-serif; }
svg .area { fill: #fbfcfe; stroke: var(--line); } svg .grid { stroke: #e6e9ef; }
svg .tick { fill: var(--dim); } svg .axis { fill: var(--ink); font-weight: 600; }
svg .budget { stroke: var(--accent); stroke-dasharray: 6 4; } svg .budget-label { fill: var(--accent); }
svg .point circle { fill: #9aa3af; fill-opacity: 0.55; }
svg .point.feasible circle { fill: var(--blue); fill-opacity: 0.45; }
svg .point.front circle { fill: var(--blue); fill-opacity: 0.85; stroke: #0b2545; stroke-width: 1.5; }
svg .point.chosen polygon { fill: var(--accent); stroke: #5c1010; }
svg .point-label { fill: var(--ink); font-size: 11px; } svg .legend rect { fill: #fff; stroke: var(--line); }
svg .legend text { fill: var(--ink); } svg .legend .note { fill: var(--dim); font-size: 11px; }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute('data-sort');
    if (raw === null) { raw = cell.textContent.trim(); }
    if (raw === '' || raw === '—') { return null; }
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var headers = table.querySelectorAll('thead th');
    headers.forEach(function (header, column) {
      header.setAttribute('tabindex', '0');
      function sort() {
        var ascending = header.getAttribute('aria-sort') !== 'ascending';
        headers.forEach(function (other) { other.removeAttribute('aria-sort'); });
        header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[column]), y = key(b.cells[column]);
          if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }  // blanks always last
          var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      header.addEventListener('click', sort);
      header.addEventListener('keydown', function (event) { if (event.key === 'Enter') { sort(); } });
    });
  });
})();
"""


def render(evidence: Evidence) -> str:
    """The whole page for ``evidence``."""
    profile = evidence.profile
    body = [
        _header(evidence),
        _answer(profile),
        _confirmation(profile.confirmation),
        f'<section id="front"><h2>The feasible front</h2>{front_svg(evidence.rows, profile.budget)}</section>',
        _trials(evidence),
        _exports(evidence.exports),
        '<div class="grid2">',
        _key_values("machine", "The machine", evidence.machine),
        _budget(profile),
        "</div>",
        '<div class="grid2">',
        _phases(evidence.phases),
        _key_values("study", "The study", evidence.study),
        "</div>",
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>autotune: {escape(evidence.title)}</title><style>{STYLE}</style></head>\n"
            f"<body><main>{''.join(body)}</main><script>{SCRIPT}</script></body></html>\n")


def _header(evidence: Evidence) -> str:
    profile = evidence.profile
    when = profile.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return (f"<header><h1>{escape(evidence.title)}</h1><p>Deployment profile written {escape(when)} by autotune "
            f"{escape(profile.autotune_version)} · model {escape(profile.model.path)} "
            f"({escape(profile.model.format)}, sha256 {escape(profile.model.sha256[:16])}…)</p></header>")


def number(value: float | int | None, spec: str, ident: str = "") -> str:
    """``value`` formatted with ``spec``, its exact value in ``data-value`` (a dash for none)."""
    if value is None:
        return '<span class="muted">—</span>'
    identity = f' id="{ident}"' if ident else ""
    return f'<span class="num"{identity} data-value="{value!r}">{value:{spec}}</span>'


def interval(found: Interval | None, spec: str, ident: str = "") -> str:
    """``value [low, high]`` with the three exact values in data attributes."""
    if found is None:
        return '<span class="muted">—</span>'
    identity = f' id="{ident}"' if ident else ""
    return (f'<span class="num"{identity} data-value="{found.value!r}" data-low="{found.low!r}" '
            f'data-high="{found.high!r}">{found.value:{spec}} <span class="muted">[{found.low:{spec}}, '
            f"{found.high:{spec}}]</span></span>")


def _figure(label: str, value: str, sub: str = "") -> str:
    return (f'<div class="figure"><div class="label">{escape(label)}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>')


def _answer(profile: DeploymentProfile) -> str:
    m, c, budget = profile.measured, profile.confirmation, profile.budget
    source = f"confirmed over {c.rounds} rounds" if c is not None else "search trial (not confirmed)"
    decode = interval(c.decode_tps, ".1f", "decode-tps") if c else number(m.decode_tps, ".1f", "decode-tps")
    p95 = interval(c.itl_p95_ms, ".2f", "p95-ms") if c else number(m.worst_itl_p95_ms, ".2f", "p95-ms")
    quality = profile.quality
    kl = quality.kl_divergence if quality is not None else None
    loss = (interval(kl, ".4f", "kl") if kl is not None else
            f"{number(profile.artifact.bits_per_weight, '.2f', 'bits')} bits/weight")
    speedup = c.speedup_over_untuned if c is not None else None
    figures = [
        _figure("decode tok/s", decode, escape(source)),
        _figure("p95 inter-token latency, ms", p95, f"budget {budget.latency_ms:g} ms"),
        _figure("time to first token, ms", number(m.ttft_ms, ".1f", "ttft-ms"),
                f"budget {budget.ttft_ms:g} ms" if budget.ttft_ms is not None else "no budget"),
        _figure("peak memory", f'<span class="num" id="peak-bytes" data-value="{m.peak_rss_bytes!r}">'
                f"{escape(size_text(m.peak_rss_bytes))}</span>",
                f"budget {escape(size_text(budget.memory_bytes))}"),
        _figure("quality loss (KL)" if kl is not None else "quality (proxy)", loss,
                escape(f"against {quality.reference}") if quality is not None and quality.reference else ""),
    ]
    if speedup is not None:
        figures.append(_figure("× the untuned default", interval(speedup, ".2f", "speedup-untuned"),
                               "decode speed, paired rounds"))
    predicted = profile.predicted
    error = (f", error {predicted.memory_error:+.1%}" if predicted.memory_error is not None else "")
    artifact = profile.artifact
    lines = [
        ("backend", f"{profile.backend.name} {profile.backend.version or ''}"),
        ("precision", f"{artifact.label} ({artifact.bits_per_weight:.2f} bits per weight)"),
        ("artifact", f"{artifact.path} ({artifact.format}, {size_text(artifact.size_bytes)})"),
        ("predicted memory", f"{size_text(predicted.memory_bytes)}{error}"),
        ("objective", profile.objective),
        ("search trial", f"{m.decode_tps:.1f} tok/s, p95 {m.worst_itl_p95_ms:.2f} ms, {m.runs} timed runs, "
                         f"spread {m.spread:.1%}"),
    ]
    return (f'<section id="answer"><h2>The answer</h2><p class="lead"><strong>{escape(profile.backend.name)}</strong>'
            f" · {escape(artifact.label)} · {escape(params_text(profile.params))}</p>"
            f'<div class="figures">{"".join(figures)}</div>'
            f'<div class="grid2"><div><h3>Settings</h3>{_table_kv(profile.params.items())}</div>'
            f"<div><h3>Details</h3>{_table_kv(lines)}</div></div></section>")


def _table_kv(pairs: Iterable[tuple[object, object]]) -> str:
    items = list(pairs)
    if not items:
        return '<p class="muted">none</p>'
    rows = "".join(f"<tr><th>{escape(text_of(k))}</th><td>{escape(text_of(v))}</td></tr>" for k, v in items)
    return f'<table class="kv">{rows}</table>'


def _confirmation(c: Confirmation | None) -> str:
    title = "<h2>Against the untuned default and the rule of thumb</h2>"
    if c is None:
        return (f'<section id="confirmation">{title}<p>No confirmation rounds were run (<code>--confirm-rounds 0'
                "</code>): the figures above are the search trial's, and no baseline was measured beside them.</p>"
                "</section>")
    rows = [f"<tr><td>chosen configuration</td><td class=\"n\">{interval(c.decode_tps, '.1f')}</td>"
            f"<td class=\"n\">{interval(c.itl_p95_ms, '.2f')}</td><td>—</td><td>{escape(c.verdict)}"
            f"{' — marginal: the p95 interval straddles the budget' if c.marginal else ''}</td></tr>"]
    if c.untuned_params is not None or c.speedup_over_untuned is not None:
        rows.append(f"<tr><td>untuned default</td><td class=\"n\" colspan=\"2\">"
                    f"chosen decodes {interval(c.speedup_over_untuned, '.2f', 'speedup-untuned-row')} × as fast</td>"
                    f"<td>{escape(params_text(c.untuned_params or {}))}</td><td>the runtime as a user gets it out of the "
                    "box</td></tr>")
    if c.rule_of_thumb_params is not None or c.versus_rule_of_thumb is not None:
        versus = {"same": "the chosen configuration is the rule of thumb", "tie": "a tie inside the noise",
                  "faster": "chosen is faster", "slower": "chosen is slower"}.get(c.versus_rule_of_thumb or "", "—")
        rows.append(f"<tr><td>rule of thumb (every physical core, runtime defaults)</td><td class=\"n\" colspan=\"2\">"
                    f"chosen decodes {interval(c.speedup_over_rule_of_thumb, '.2f', 'speedup-rule')} × as fast</td>"
                    f"<td>{escape(params_text(c.rule_of_thumb_params or {}))}</td><td>{escape(versus)}</td></tr>")
    # A configuration collapsing under the competing load is never shown without saying so.
    notes = "".join(f"<li><strong>warning:</strong> {escape(warning)}</li>" for warning in c.load_warnings)
    notes += "".join(f"<li>{escape(note)}</li>" for note in c.notes)
    return (f'<section id="confirmation">{title}<p>{c.rounds} interleaved rounds; intervals are 95% bootstrap '
            "intervals, speed-ups are the chosen configuration's decode speed over the baseline's in paired rounds."
            '</p><table><thead><tr><th>configuration</th><th class="n">decode tok/s / speed-up</th>'
            '<th class="n">p95 ms</th><th>settings</th><th>verdict</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{f'<ul>{notes}</ul>' if notes else ''}</section>")


COLUMNS = ("#", "backend", "configuration", "precision", "status", "decode tok/s", "p95 ms", "TTFT ms", "peak MiB",
           "quality loss (KL) [interval]", "why skipped, screened or over", "machine while measured")
NUMERIC = {"#", "decode tok/s", "p95 ms", "TTFT ms", "peak MiB", "quality loss (KL) [interval]"}


def _trials(evidence: Evidence) -> str:
    profile = evidence.profile
    head = "".join(f'<th class="n">{c}</th>' if c in NUMERIC else f"<th>{c}</th>" for c in COLUMNS)
    body = "".join(_trial_row(row) for row in evidence.rows)
    counts = {k: v for k, v in profile.study.items()
              if k in ("trials_total", "measured", "predicted_infeasible", "screened_out", "failed", "feasible")}
    summary = ", ".join(f"{escape(str(v))} {escape(k.replace('_', ' '))}" for k, v in counts.items())
    note = ("" if evidence.complete else
            '<p class="muted">This profile was written before profiles kept every trial: only the chosen '
            "configuration and its alternatives (the front and each backend's best) are listed.</p>")
    return (f'<section id="trials"><h2>Every configuration tried</h2><p>{summary + ". " if summary else ""}'
            "Click a column to sort; hover over the machine's state for what was busy. "
            "◆ on the feasible front, ★ chosen. Screened-out figures are those of the short screening run; "
            f"p95 is the worse of the start of the context and depth.</p>{note}"
            f'<div class="scroll"><table class="sortable trials"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div></section>")


def _cell(value: float | int | None, spec: str) -> str:
    if value is None:
        return '<td class="n muted">—</td>'
    return f'<td class="n" data-sort="{value!r}">{value:{spec}}</td>'


def _trial_row(row: Row) -> str:
    kinds = " ".join(k for k, on in (("chosen", row.chosen), ("front", row.on_front),
                                      ("feasible", row.feasible)) if on)
    kl = row.kl
    quality = ('<td class="n muted">—</td>' if kl is None else
               f'<td class="n" data-sort="{kl.value!r}">{kl.value:.4f} <span class="muted">[{kl.low:.4f}, '
               f"{kl.high:.4f}]</span></td>")
    state = row.machine
    sort = f' data-sort="{state.others_share!r}"' if state.others_share is not None else ""
    machine = (f'<td class="machine"{sort} title="{escape(state.detail)}"><span class="tag '
               f'{escape(state.label.replace(" ", "-"))}">{escape(state.label)}</span> '
               f'<span class="muted">{escape(state.short)}</span></td>')
    status = row.status + (" (screening run)" if row.screening else "")
    peak = row.peak_bytes / 2**20 if row.peak_bytes is not None else None
    return (f'<tr class="{kinds}" data-trial="{row.number if row.number is not None else ""}">'
            f"{_cell(row.number, 'd')}<td>{escape(row.backend)}</td><td class=\"conf\">{escape(row.configuration)}"
            f"</td><td>{escape(row.precision)}</td><td>{escape(status)}</td>{_cell(row.decode_tps, '.1f')}"
            f"{_cell(row.itl_p95_ms, '.2f')}{_cell(row.ttft_ms, '.1f')}{_cell(peak, '.1f')}{quality}"
            f'<td class="why">{escape(row.why)}</td>{machine}</tr>')


def _exports(exports: Sequence[tuple[str, str]]) -> str:
    if not exports:
        return '<section id="exports"><h2>Exports</h2><p class="muted">none</p></section>'
    parts = "".join(f"<details><summary>{escape(name)}</summary><pre>{escape(text)}</pre></details>"
                    for name, text in exports)
    return (f'<section id="exports"><h2>Exports</h2><p>Ready to paste; <code>autotune export PROFILE --format NAME'
            f"</code> prints the same.</p>{parts}</section>")


def _key_values(ident: str, title: str, pairs: Sequence[tuple[str, str]]) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>{_table_kv(pairs)}</section>'


def _budget(profile: DeploymentProfile) -> str:
    w = profile.workload
    try:
        budget = profile.budget.describe()
    except OverflowError:  # a memory budget beyond any float (the schema bounds it below only)
        budget = f"memory ≤ {size_text(profile.budget.memory_bytes)}, p95 ≤ {profile.budget.latency_ms:g} ms"
    pairs = [("budget", budget),
             ("workload", f"{w.prompt_tokens} prompt tokens, {w.gen_tokens} generated, context {w.context}, "
                          f"depth {w.depth if w.depth is not None else 'context − generated'}, {w.runs} timed runs, "
                          f"concurrency {w.concurrency}")]
    return _key_values("budget", "The budget and the workload", pairs)


def _phases(phases: Sequence[tuple[str, float]]) -> str:
    if not phases:
        return '<section id="phases"><h2>Time per phase</h2><p class="muted">not recorded</p></section>'
    longest = max(seconds for _, seconds in phases) or 1.0
    rows = "".join(f'<tr><th>{escape(name)}</th><td class="n" data-value="{seconds!r}">{seconds:.1f} s</td>'
                   f'<td style="width:50%"><div class="bar" style="width:{100 * seconds / longest:.1f}%"></div></td></tr>'
                   for name, seconds in phases)
    total = sum(seconds for _, seconds in phases)
    return (f'<section id="phases"><h2>Time per phase</h2><table class="kv">{rows}<tr><th>total</th>'
            f'<td class="n">{total:.1f} s</td><td></td></tr></table></section>')
