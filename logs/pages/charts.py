"""Inline SVG charts for the request log pages, drawn on the server: no script, no CDN, no build.

Each function returns markup with every text escaped; colours come from classes styled
in static/logs/logs.css, so the charts follow the page's palette.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from logs.models import RequestLog
from logs.pages.overview import UpstreamStats
from logs.pages.stats import Bucket
from logs.pages.usage import KeyUsage
from logs.templatetags.logtags import compact, ms

AXIS = 44  # room for the y-axis labels
LABEL = 130  # room for the names left of horizontal bars


def _svg(width: float, height: float, body: SafeString, label: str, css: str = "chart") -> SafeString:
    return format_html('<svg class="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
                       css, _n(width), _n(height), label, body)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _when(start: datetime, span: timedelta) -> str:
    """A bar's label: the time of day within a day, the date beyond."""
    return start.strftime("%H:%M") if span <= timedelta(days=1) else start.strftime("%b %d %H:%M").replace(" 00:00", "")


def traffic(buckets: Sequence[Bucket], *, width: int = 1080, height: int = 170,
            compact_axis: bool = False, unit: str = "requests") -> SafeString:
    """Return a bar per bucket, failed requests stacked at the foot in red; hover shows the counts.

    ``unit``: what a bar counts (requests, or a key's tokens, whose failures are not stacked).
    """
    span = (buckets[-1].start - buckets[0].start) if buckets else timedelta(0)
    top = max((b.requests for b in buckets), default=0)
    scale = max(top, 1)
    left = 0 if compact_axis else AXIS
    foot = 0 if compact_axis else 18
    plot = height - foot - 6
    bar = (width - left) / max(len(buckets), 1)
    parts = []
    if not compact_axis:
        parts.append(format_html(
            '<line class="grid" x1="{}" y1="6" x2="{}" y2="6"/><text class="axis" x="{}" y="10" text-anchor="end">'
            '{}</text><line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/>'
            '<text class="axis" x="{}" y="{}" text-anchor="end">0</text>',
            left, width, left - 6, compact(top), left, 6 + plot, width, 6 + plot, left - 6, 6 + plot))
        marks = sorted({0, len(buckets) // 4, len(buckets) // 2, 3 * len(buckets) // 4, len(buckets) - 1})
        for i in marks:
            anchor = "start" if i == 0 else "end" if i == len(buckets) - 1 else "middle"
            x = left + bar * i + (0 if anchor == "start" else bar if anchor == "end" else bar / 2)
            parts.append(format_html('<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                                     _n(x), height - 3, anchor, _when(buckets[i].start, span)))
    for i, bucket in enumerate(buckets):
        x = left + bar * i + bar * 0.1
        total = plot * bucket.requests / scale
        bad = plot * bucket.failed / scale
        title = f"{_when(bucket.start, span)} UTC: {bucket.requests} {unit}, {bucket.failed} failed"
        parts.append(format_html(
            '<g><title>{}</title><rect class="bar-hit" x="{}" y="6" width="{}" height="{}"/>'
            '<rect class="bar-ok" x="{}" y="{}" width="{}" height="{}"/>'
            '<rect class="bar-failed" x="{}" y="{}" width="{}" height="{}"/></g>',
            title, _n(x), _n(bar * 0.8), _n(plot),
            _n(x), _n(6 + plot - total), _n(bar * 0.8), _n(total - bad),
            _n(x), _n(6 + plot - bad), _n(bar * 0.8), _n(bad)))
    label = f"{unit.capitalize()} per bar, {sum(b.requests for b in buckets)} in all, " \
            f"{sum(b.failed for b in buckets)} failed"
    return _svg(width, height, mark_safe("".join(parts)), label, "chart traffic" + (" spark" if compact_axis else ""))


def _hbars(rows: list[tuple[str, list[tuple[float, str, str]], str]], top: float, label: str) -> SafeString:
    """Return one labelled line per row; each segment is (end value, class, title), drawn from 0, widest first."""
    row_height, width, room = 26, 560, 170
    scale = (width - LABEL - room) / max(top, 1e-9)
    parts = []
    for n, (name, segments, note) in enumerate(rows):
        y = n * row_height
        parts.append(format_html('<text class="label" x="{}" y="{}" text-anchor="end">{}</text>',
                                 LABEL - 8, y + 17, name[:24]))
        for end, css, title in sorted(segments, key=lambda s: -s[0]):
            parts.append(format_html('<rect class="{}" x="{}" y="{}" width="{}" height="16" rx="2">'
                                     '<title>{}</title></rect>', css, LABEL, y + 5, _n(max(end * scale, 1)), title))
        widest = max((s[0] for s in segments), default=0)
        parts.append(format_html('<text class="value" x="{}" y="{}">{}</text>',
                                 _n(LABEL + widest * scale + 8), y + 17, note))
    return _svg(width, max(len(rows), 1) * row_height + 4, mark_safe("".join(parts)), label, "chart hbars")


def ttfb(upstreams: Sequence[UpstreamStats]) -> SafeString:
    """Return p50 (dark) over p95 (light) time to first byte per upstream."""
    rows = [(u.name, [(u.p95_ttfb or 0.0, "bar-p95", f"p95 {ms(u.p95_ttfb)}"),
                      (u.p50_ttfb or 0.0, "bar-p50", f"p50 {ms(u.p50_ttfb)}")],
             f"p50 {ms(u.p50_ttfb)} · p95 {ms(u.p95_ttfb)}") for u in upstreams if u.p95_ttfb is not None]
    top = max((u.p95_ttfb or 0 for u in upstreams), default=0)
    return _hbars(rows, top, "Time to first byte per upstream, p50 and p95")


def tokens(keys: Sequence[KeyUsage]) -> SafeString:
    """Return input plus output tokens per key, input first."""
    rows = [(k.name or "(no key)", [(float(k.tokens), "bar-output", f"{k.output_tokens} output tokens"),
                                    (float(k.input_tokens), "bar-input", f"{k.input_tokens} input tokens")],
             f"{compact(k.input_tokens)} in · {compact(k.output_tokens)} out") for k in keys if k.tokens]
    top = max((k.tokens for k in keys), default=0)
    return _hbars(rows, top, "Tokens per client key, input and output")


def timeline(log: RequestLog) -> SafeString:
    """Return the request's phases as a waterfall: waiting for the upstream, until the first byte, sending.

    One row per phase, like a browser's network panel: close moments stay legible.
    """
    end = log.duration_ms or max(log.ttfb_ms or 0, log.connected_ms or 0) or 1.0
    width, left, right, row = 640, 170, 70, 24
    scale = (width - left - right) / end
    phases = [("waiting for the upstream", 0.0, log.connected_ms, "span-wait"),
              ("until the first byte", log.connected_ms or 0.0, log.ttfb_ms, "span-first"),
              ("sending the answer", log.ttfb_ms or 0.0, log.duration_ms, "span-stream")]
    if log.connected_ms is None:  # no upstream answered: the wait ends with the gateway's own answer
        waited = "no upstream answered" if log.upstream_name else "answered by the gateway"
        phases[:2] = [(waited, 0.0, log.ttfb_ms if log.ttfb_ms is not None else log.duration_ms, "span-wait"),
                      ("until the first byte", 0.0, None, "span-first")]
    parts = [format_html('<line class="grid" x1="{}" y1="2" x2="{}" y2="{}"/>', x, x, row * 3 + 4)
             for x in (left, width - right)]
    for n, (name, start, stop, css) in enumerate(phases):
        y = n * row + 4
        parts.append(format_html('<text class="label" x="{}" y="{}" text-anchor="end">{}</text>',
                                 left - 10, y + 13, name))
        if stop is None or stop < start:
            parts.append(format_html('<text class="value" x="{}" y="{}">—</text>', left + 4, y + 13))
            continue
        x, bar = left + start * scale, max((stop - start) * scale, 2)
        parts.append(format_html('<rect class="{}" x="{}" y="{}" width="{}" height="16" rx="2"><title>{}: {}</title>'
                                 '</rect><text class="value" x="{}" y="{}">{}</text>', css, _n(x), y, _n(bar), name,
                                 ms(stop - start), _n(min(x + bar + 6, width - right + 6)), y + 13, ms(stop - start)))
    parts.append(format_html('<text class="axis" x="{}" y="{}" text-anchor="middle">0</text>'
                             '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                             left, row * 3 + 18, width - right, row * 3 + 18, ms(end)))
    return _svg(width, row * 3 + 22, mark_safe("".join(parts)), "Timeline of the request", "chart timeline")


def legend(*items: tuple[str, str]) -> SafeString:
    """Return a legend: (class, label) pairs as small swatches."""
    return format_html('<ul class="legend">{}</ul>', format_html_join(
        "", '<li><span class="swatch {}"></span>{}</li>', items))
