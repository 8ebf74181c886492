"""``w2s-harness report --html``: one self-contained HTML page of a run (opens offline, can be mailed or attached).

It holds the report's tables exactly as the terminal shows them (rich's own HTML export of :func:`._report.render`,
so the page and the console never disagree), the figures inline as data URIs (PNG, or SVG when the report wrote
SVG), the fully resolved config, the environment and the stage timings. No script, stylesheet, font or image is
loaded from anywhere: everything is in the file."""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .results import Results

#: the figure files the page can embed, by suffix (a PDF cannot be shown inline; the page draws PNGs instead)
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #555; margin-top: 0; }
.status-complete { color: #1a7f37; } .status-partial { color: #9a6700; } .status-failed { color: #cf222e; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: 12px; line-height: 1.35; }
pre.tables { background: #fff; border: 1px solid #ddd; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
table.kv, table.stages { border-collapse: collapse; font-size: 13px; }
table.kv td, table.stages td, table.stages th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
table.stages td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #9a6700; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _tables(results: Results, metrics: Sequence[str], pm) -> str:
    """The report's tables as the terminal shows them, as HTML with inline styles (no stylesheet to load)."""
    from rich.console import Console

    from .report import render

    console = Console(file=io.StringIO(), record=True, width=170, force_terminal=True, color_system="truecolor",
                      highlight=False)
    render(results, console, metrics=metrics, pm=pm)
    # only the <pre>: the page has its own <head>; {code} is rich's escaped, styled text
    return console.export_html(inline_styles=True, code_format='<pre class="tables">{code}</pre>')


def _figure(path: Path) -> str:
    mime = _MIME[path.suffix]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_esc(path.name)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{_esc(path.name)}</figcaption></figure>")


def _kv(rows: dict) -> str:
    cells = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rows.items())
    return f'<table class="kv">{cells}</table>'


def _seconds(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _stages(results: Results) -> str:
    """One row per stage (plan order): what it was, whether it was cached, its seconds and test accuracy."""
    head = "".join(f"<th>{h}</th>" for h in ("stage", "kind", "seed", "op", "cached", "seconds", "test acc"))
    rows = []
    for s in sorted(results.stages, key=lambda s: (s.seed, -(s.seconds or 0.0))):
        acc = (s.metrics or {}).get("test_acc")
        cached = {True: "cached", False: "computed", None: "not finished"}[s.cached]
        rows.append(f"<tr><td>{_esc(s.name)}</td><td>{_esc(s.kind)}</td><td class=num>{s.seed}</td>"
                    f"<td>{_esc(s.op)}</td><td>{cached}</td><td class=num>{_seconds(s.seconds)}</td>"
                    f"<td class=num>{'' if acc is None else f'{acc:.3f}'}</td></tr>")
    return f'<table class="stages"><tr>{head}</tr>{"".join(rows)}</table>'


def render_html(results: Results, figures: Sequence[Path], *, notes: Sequence[str] = (), metrics: Sequence[str] = (),
                pm=None, source: str = "") -> str:
    """The page as a string. ``figures``: PNG or SVG files to embed; ``notes``: lines about figures left out;
    ``source``: where the results came from (shown under the title)."""
    t = results.timings or {}
    seeds = max((e.pgr.n_run or 0 for e in results.experiments), default=0)
    timing = {"total seconds": _seconds(t.get("total_seconds")),
              "computed seconds (sum over stages)": _seconds(t.get("computed_seconds")),
              "stages computed": t.get("stages_computed", ""), "stages cached": t.get("stages_cached", "")}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>w2s-harness report: {_esc(source or 'results.json')}</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>w2s-harness report</h1>",
        (f'<p class="meta">{_esc(source)} &middot; status <b class="status-{_esc(results.status)}">'
         f"{_esc(results.status)}</b> &middot; {len(results.experiments)} rows over {seeds} seeds &middot; "
         f"w2s-harness {_esc(results.environment.get('w2s_harness', '?'))}</p>"),
    ]
    if results.error:
        parts.append(f'<p class="status-failed">run {_esc(results.status)}: {_esc(results.error)}</p>')
    parts += ["<h2>Results</h2>", _tables(results, metrics, pm), "<h2>Figures</h2>"]
    parts += [_figure(Path(p)) for p in figures if Path(p).suffix in _MIME]
    parts += [f'<p class="note">{_esc(line)}</p>' for line in notes]
    if not figures and not notes:
        parts.append("<p>No figures (the run has no rows).</p>")
    if results.failures:
        parts += ["<h2>Failed stages</h2>", _kv({f"{f.get('name')} (seed {f.get('seed')})": f.get("error")
                                               for f in results.failures})]
    parts += ["<h2>Stage timings</h2>", _kv(timing), "<p></p>", _stages(results),
              "<h2>Config</h2>", f"<pre>{_esc(json.dumps(results.config, indent=2, default=str))}</pre>",
              "<h2>Environment</h2>", _kv(results.environment), "</body></html>"]
    return "\n".join(parts) + "\n"


def write_html(results: Results, path: Path, *, figures: Sequence[Path] | None = None, notes: Sequence[str] = (),
               metrics: Sequence[str] = (), pm=None, source: str = "") -> Path:
    """Write the page to ``path``. ``figures``: the files ``report`` wrote, embedded when they are PNG or SVG;
    ``None`` (``--no-plots``, or PDF figures) draws them as PNG in a temporary folder for the page only."""
    path = Path(path)
    if figures is not None and all(Path(p).suffix in _MIME for p in figures):
        page = render_html(results, figures, notes=notes, metrics=metrics, pm=pm, source=source)
    else:
        from .plots import write_figures

        with tempfile.TemporaryDirectory(prefix="w2s-html-") as tmp:
            drawn: list[str] = []
            figs = write_figures(results, Path(tmp), pm=pm, fmt="png", note=drawn.append)
            page = render_html(results, figs, notes=drawn, metrics=metrics, pm=pm, source=source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp")
    tmp_path.write_text(page, encoding="utf-8")
    tmp_path.replace(path)  # never a half-written page at the path a browser may have open
    return path
