"""HTML for the review page: plain templates, every value escaped, no build step. The only script is the label
hotkeys; without it the buttons' access keys still work. No form saves a label on Enter: the review form's only
text box is multi-line and its default button is disabled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

from guard.records import FLAGS, ExchangeRecord
from guard.store.schema import REVIEW_LABELS
from guard.taxonomy import INPUT_LABELS

# Label -> hotkey (also the button's access key).
HOTKEYS = {"correct": "c", "false_positive": "f", "over_refusal": "o", "unsafe": "u"}

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f7}
header{background:#1d2b3a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#cfe3ff} main{padding:1em 1.2em;max-width:1100px}
table{border-collapse:collapse;width:100%;background:#fff} td,th{border:1px solid #ddd;padding:.3em .5em;
text-align:left;vertical-align:top} th{background:#eef0f3}
.flag{display:inline-block;background:#fde2e1;color:#8a1c14;border-radius:3px;padding:0 .4em;margin:0 .2em .1em 0}
.msg{background:#fff;border:1px solid #ddd;padding:.5em;margin:.3em 0;white-space:pre-wrap}
.role{font-weight:600;color:#555} button{margin:.2em .4em .2em 0;padding:.4em .9em}
textarea{width:100%;min-height:7em} .notice{background:#e6f4ea;padding:.5em;border:1px solid #b7dfc2}
.error{background:#fde2e1;padding:.5em;border:1px solid #f3b1ac}
kbd{border:1px solid #999;border-radius:3px;padding:0 .3em;font-size:.85em}
.filters input,.filters select{margin-right:.6em}
"""

_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>$title · guardtune review</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>$style</style></head>
<body><header><strong>guardtune review</strong>$nav</header><main>$body</main></body></html>""")

_NAV = (
    '<a href="/admin/review" id="nav-queue">Queue</a><a href="/admin/corrections" id="nav-overrides">Overrides</a>'
    '<span style="margin-left:auto" id="reviewer">$who</span>'
    '<form method="post" action="/admin/logout"><button type="submit" id="logout">Log out</button></form>'
)


def page(title: str, body: str, *, nav: bool = True, who: str = "") -> str:
    bar = Template(_NAV).substitute(who=escape(who)) if nav else ""
    return _PAGE.substitute(title=escape(title), style=_STYLE, nav=bar, body=body)


def login_page(error: str | None = None, next_url: str = "/admin/review") -> str:
    err = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    body = f"""<h1>Sign in</h1>{err}
<form method="post" action="/admin/login">
<input type="hidden" name="next" value="{escape(next_url)}">
<label>Admin key <input type="password" name="key" id="key" autocomplete="current-password" required></label>
<button type="submit" id="login">Sign in</button></form>"""
    return page("Sign in", body, nav=False)


def _flags(flags: list[str]) -> str:
    return "".join(f'<span class="flag">{escape(f)}</span>' for f in flags) or "—"


def _first_user(rec: ExchangeRecord) -> str:
    text = next((m.content for m in reversed(rec.messages) if m.role == "user"), "")
    return escape(text[:140] + ("…" if len(text) > 140 else ""))


@dataclass(frozen=True, slots=True)
class QueueView:
    records: list[ExchangeRecord]
    total: int
    offset: int
    size: int
    query: Mapping[str, str]


def _filter_form(q: Mapping[str, str]) -> str:
    def opts(values: tuple[str, ...], chosen: str | None) -> str:
        return '<option value="">any</option>' + "".join(
            f'<option value="{v}"{" selected" if v == chosen else ""}>{v}</option>' for v in values
        )

    def text(name: str, label: str) -> str:
        return f'<label>{label} <input name="{name}" id="filter-{name}" value="{escape(q.get(name) or "")}"></label>'

    # GET and nothing saved: Enter in a field here only applies the filters.
    return (
        '<form method="get" action="/admin/review" class="filters" id="filters">'
        f'<label>Flag <select name="flag" id="filter-flag">{opts(FLAGS, q.get("flag"))}</select></label>'
        f"{text('tenant', 'Tenant')}{text('profile', 'Profile')}{text('rail', 'Rail')}"
        f"{text('since', 'From (UTC)')}{text('until', 'Until')}"
        '<button type="submit" id="apply-filters">Filter</button></form>'
    )


def _pager(view: QueueView) -> str:
    keep = {k: v for k, v in view.query.items() if k not in ("offset", "done") and v}
    first = view.offset + 1 if view.records else 0
    last = view.offset + len(view.records)
    links = []
    if view.offset > 0:
        prev = urlencode({**keep, "offset": max(0, view.offset - view.size)})
        links.append(f'<a href="/admin/review?{escape(prev)}" id="prev-page">← previous</a>')
    if last < view.total:
        links.append(f'<a href="/admin/review?{escape(urlencode({**keep, "offset": last}))}" id="next-page">next →</a>')
    return f'<p id="pager">Showing {first}–{last} of <b id="queue-total">{view.total}</b> {" ".join(links)}</p>'


def queue_page(view: QueueView, who: str = "", notice: str | None = None) -> str:
    rows = "".join(
        f'<tr class="queue-row" data-id="{escape(r.exchange_id)}"><td>{r.created_at:%Y-%m-%d %H:%M:%S}</td>'
        f"<td>{escape(r.tenant)}</td><td>{escape(r.profile or '—')}</td><td>{_flags(r.flags)}</td>"
        f'<td><a href="/admin/review/{quote(r.exchange_id, safe="")}">{_first_user(r) or "(empty)"}</a></td></tr>'
        for r in view.records
    )
    note = f'<p class="notice" id="notice">{escape(notice)}</p>' if notice else ""
    table = (
        (
            f'<table id="queue"><tr><th>Time (UTC)</th><th>Tenant</th><th>Profile</th><th>Flags</th>'
            f"<th>Request</th></tr>{rows}</table>{_pager(view)}"
        )
        if view.records
        else '<p id="queue-empty">Nothing left to review.</p>'
    )
    body = f"<h1>Review queue ({view.total})</h1>{note}{_filter_form(view.query)}{table}"
    return page("Queue", body, who=who)


def _kv_table(table_id: str, items: list[tuple[str, Any]], headers: tuple[str, str]) -> str:
    if not items:
        return "<p>—</p>"
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in items)
    return f'<table id="{table_id}"><tr><th>{headers[0]}</th><th>{headers[1]}</th></tr>{rows}</table>'


def _scores(table_id: str, scores: dict[str, float]) -> str:
    ordered = sorted(scores.items(), key=lambda kv: -kv[1])
    return _kv_table(table_id, [(k, f"{v:.3f}") for k, v in ordered], ("label", "score"))


def _decisions(rec: ExchangeRecord) -> str:
    if not rec.decisions:
        return "<p>—</p>"
    rows = "".join(
        f"<tr><td>{escape(d.rail)}</td><td>{escape(d.stage)}</td><td>{escape(d.result)}</td><td>{escape(d.mode)}</td>"
        f"<td>{escape(d.action or '')}</td><td>{'' if d.score is None else f'{d.score:.3f}'}</td>"
        f"<td>{d.latency_s * 1000:.1f} ms</td></tr>"
        for d in rec.decisions
    )
    return (
        '<table id="decisions"><tr><th>rail</th><th>stage</th><th>result</th><th>mode</th><th>action</th>'
        f"<th>score</th><th>latency</th></tr>{rows}</table>"
    )


_HOTKEY_SCRIPT = """<script>
document.addEventListener('keydown', function (e) {
  var t = e.target.tagName;
  if (e.ctrlKey || e.metaKey || e.altKey || t === 'TEXTAREA' || t === 'INPUT' || t === 'SELECT') return;
  var b = document.querySelector('button[data-hotkey="' + e.key + '"]');
  if (b) { e.preventDefault(); b.click(); }
});
</script>"""


def _label_buttons() -> str:
    # A disabled first submit button is the form's default: Enter never submits a label by itself.
    buttons = '<button type="submit" disabled hidden aria-hidden="true"></button>'
    for lab in REVIEW_LABELS:
        key = HOTKEYS[lab]
        buttons += (
            f'<button type="submit" name="label" value="{lab}" id="label-{lab}" data-hotkey="{key}" '
            f'accesskey="{key}">{lab.replace("_", " ")} <kbd>{key}</kbd></button>'
        )
    choices = "".join(f'<option value="{lab}">{lab}</option>' for lab in INPUT_LABELS)
    unsafe = (
        '<label>If unsafe, the label it should have had <select name="unsafe_label" id="unsafe-label">'
        f'<option value="">choose…</option>{choices}</select></label>'
    )
    return f"<p>{unsafe}</p><p>{buttons}</p>"


def _past_reviews(reviews: list[Any]) -> str:
    return "".join(
        f'<li class="{"superseded" if getattr(r, "superseded", False) else "current"}">'
        f"{r.created_at:%Y-%m-%d %H:%M} <b>{escape(r.label)}</b>"
        f"{' (' + escape(r.unsafe_label) + ')' if getattr(r, 'unsafe_label', None) else ''}"
        f" by {escape(r.reviewer or '—')}{' (superseded)' if getattr(r, 'superseded', False) else ''}"
        f"{': ' + escape(r.correction) if r.correction else ''}</li>"
        for r in reviews
    )


def exchange_page(rec: ExchangeRecord, reviews: list[Any], feedback: list[Any], who: str = "") -> str:
    msgs = "".join(
        f'<div class="msg"><span class="role">{escape(m.role)}:</span> {escape(m.content)}</div>' for m in rec.messages
    )
    model_said = ""
    if rec.model_response and rec.model_response != rec.response:
        model_said = (
            f'<h3>Model said (before output rails)</h3><div class="msg" id="model-response">'
            f"{escape(rec.model_response)}</div>"
        )
    calls = "".join(f"<li><code>{escape(c.name)}({escape(c.arguments)})</code></li>" for c in rec.tool_calls)
    if calls:
        model_said += f'<h3>Tool calls the model asked for</h3><ul id="tool-calls">{calls}</ul>'
    past = _past_reviews(reviews)
    fb = "".join(
        f"<li>{f.created_at:%Y-%m-%d %H:%M} rating {f.rating}{': ' + escape(f.comment) if f.comment else ''}</li>"
        for f in feedback
    )
    action = f"/admin/review/{quote(rec.exchange_id, safe='')}"
    meta = [
        ("exchange", rec.exchange_id),
        ("time (UTC)", f"{rec.created_at:%Y-%m-%d %H:%M:%S}"),
        ("tenant", rec.tenant),
        ("profile", rec.profile or "—"),
        ("model", f"{rec.model} {rec.model_version or ''}"),
        ("rails hash", rec.rails_hash or "—"),
        ("stream", rec.stream),
        ("finish reason", rec.finish_reason or "—"),
    ]
    if rec.override is not None:
        o = rec.override
        meta.append(("overridden by", f"review {o.review_id} ({o.label}, similarity {o.similarity:.3f})"))
    body = f"""<h1>Exchange</h1>
<p id="flags">{_flags(rec.flags)}</p>
{_kv_table("meta", meta, ("field", "value"))}
<h2>Conversation</h2>{msgs}
<h3>Answer given</h3><div class="msg" id="response">{escape(rec.response)}</div>{model_said}
<h2>Triage scores</h2>{_scores("triage-scores", rec.triage_scores)}
<h3>Output scores</h3>{_scores("output-scores", rec.output_scores)}
<h2>Rail decisions</h2>{_decisions(rec)}
<h3>Timings</h3>{_kv_table("timings", [(k, f"{v * 1000:.1f} ms") for k, v in rec.timings.items()], ("stage", "time"))}
<h2>Reviews</h2><ul id="reviews">{past or "<li>none yet</li>"}</ul>
<h3>User feedback</h3><ul id="feedback">{fb or "<li>none</li>"}</ul>
<h2>Your review</h2>
<form method="post" action="{action}" id="review-form">
<label for="correction">The response that should have been given (optional)</label>
<textarea name="correction" id="correction"></textarea>
{_label_buttons()}</form>{_HOTKEY_SCRIPT}"""
    return page(f"Exchange {rec.exchange_id}", body, who=who)


def overrides_page(rows: list[Any], who: str = "", revoked: str | None = None) -> str:
    items = "".join(
        f'<tr class="override-row" data-id="{o.id}"><td>{o.id}</td><td>{escape(o.tenant)}</td>'
        f"<td>{escape(o.label)}{' (' + escape(o.unsafe_label) + ')' if o.unsafe_label else ''}</td>"
        f'<td><a href="/admin/review/{quote(o.exchange_id, safe="")}">review {o.review_id}</a></td>'
        f"<td>{escape(o.created_by or '—')}</td><td>{escape(o.text[:140])}</td>"
        f'<td><form method="post" action="/admin/corrections/{o.id}/revoke">'
        f'<button type="submit" id="revoke-{o.id}">Revoke</button></form></td></tr>'
        for o in rows
    )
    note = f'<p class="notice" id="notice">Revoked override {escape(revoked)}.</p>' if revoked else ""
    table = (
        '<table id="overrides"><tr><th>id</th><th>tenant</th><th>label</th><th>from</th><th>by</th><th>text</th>'
        f"<th></th></tr>{items}</table>"
        if rows
        else '<p id="overrides-empty">No active overrides.</p>'
    )
    return page("Overrides", f"<h1>Active overrides ({len(rows)})</h1>{note}{table}", who=who)
