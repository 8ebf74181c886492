"""``report --html``: one self-contained page (tables, figures, config, environment, stage timings) that a
browser renders offline. The page is built from a real small run; the rendering check opens it in headless
Chromium (skipped, with the reason, where no Chromium is installed: ``apt-get install chromium``)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_figures import fresh, lbfgs_toml, not_blank

from w2s_harness import Results
from w2s_harness._cli.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    assert main(["run", "--config", str(lbfgs_toml(tmp))]) == 0
    return tmp / "out"


def external_refs(page: str) -> list[str]:
    """Every src / href that would load something from outside the file (anything but a data URI or an anchor)."""
    return [u for u in re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page) if not u.startswith(("data:", "#"))]


def test_html_page_holds_tables_figures_config_environment_and_timings(run_dir, tmp_path, capsys):
    out = fresh(run_dir, tmp_path)
    results = Results.read(out)
    assert main(["report", str(out), "--html"]) == 0
    err = capsys.readouterr().err
    page_path = out / "report.html"
    assert f"wrote {page_path}" in err
    page = page_path.read_text(encoding="utf-8")
    assert external_refs(page) == []
    assert "<script" not in page and "@import" not in page and "url(" not in page
    # the figures report wrote, each inline once
    written = sorted(p.name for p in out.glob("*.png"))
    assert len(written) == 5 and page.count('src="data:image/png;base64,') == len(written)
    for name in written:
        assert f"<figcaption>{name}</figcaption>" in page
    # the tables as the terminal shows them: the rows, the PGR cells, the comparison
    e = results.experiments[1]
    assert e.name.split("/")[1] in page and f"{e.pgr.mean:.3f}" in page
    assert "Paired per-seed PGR differences" in page
    # the resolved config, as JSON a reader can copy back out
    config = re.search(r"<h2>Config</h2>\s*<pre>(.*?)</pre>", page, re.DOTALL).group(1)
    assert json.loads(html.unescape(config)) == json.loads(json.dumps(results.config, default=str))
    assert f"<td>torch</td><td>{results.environment['torch']}</td>" in page
    assert page.count("<tr><td>") >= len(results.stages) and "stages computed" in page


def test_html_without_plots_or_with_pdf_draws_its_own_figures(run_dir, tmp_path, capsys):
    out = fresh(run_dir, tmp_path)
    assert main(["report", str(out), "--no-plots", "--html", str(tmp_path / "page.html")]) == 0
    assert not list(out.glob("*.png"))  # --no-plots: nothing next to results.json
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 5
    assert main(["report", str(out), "--fig-format", "pdf", "--html"]) == 0
    assert len(list(out.glob("*.pdf"))) == 5
    assert (out / "report.html").read_text(encoding="utf-8").count('src="data:image/png;base64,') == 5


def test_html_embeds_svg_figures_when_report_writes_svg(run_dir, tmp_path, capsys):
    out = fresh(run_dir, tmp_path)
    assert main(["report", str(out), "--fig-format", "svg", "--html"]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/svg+xml;base64,') == 5 and "data:image/png" not in page


def test_html_of_a_failed_run_says_so(tmp_path, capsys):
    from test_summaries import NOT_FINISHED, build

    res = build({"naive/xent": {s: (NOT_FINISHED,) * 3 for s in range(2)}}, status="failed")
    res.error = "RuntimeError: boom"
    (tmp_path / "results.json").write_text(res.to_json())
    assert main(["report", str(tmp_path), "--html"]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'class="status-failed">failed</b>' in page and "run failed: RuntimeError: boom" in page


# ------------------------------------------------------------------------------------------- in a browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")


def chromium(url: str, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    # root in a container needs --no-sandbox; a private profile keeps parallel runs apart
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *flags, url],
                          capture_output=True, text=True, timeout=180, check=False)


def console_errors(stderr: str) -> list[str]:
    """The page's console errors and failed loads, as Chromium logs them (``INFO:CONSOLE...] "Uncaught ..."``)."""
    return [ln for ln in stderr.splitlines()
            if ("CONSOLE" in ln and ("Uncaught" in ln or "rror" in ln)) or "Failed to load resource" in ln]


@needs_chromium
def test_console_error_detection_works(tmp_path):
    """The check below can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>nonexistent()</script></body></html>")
    proc = chromium(bad.as_uri(), tmp_path / "profile", f"--screenshot={tmp_path / 'bad.png'}")
    assert any("nonexistent is not defined" in ln for ln in console_errors(proc.stderr)), proc.stderr[-2000:]


@needs_chromium
def test_html_renders_in_headless_chromium(run_dir, tmp_path, capsys):
    out = fresh(run_dir, tmp_path)
    assert main(["report", str(out), "--html"]) == 0
    page = out / "report.html"
    shot = tmp_path / "shot.png"
    proc = chromium(page.as_uri(), tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert console_errors(proc.stderr) == []
    not_blank(shot)
    # every inline figure decodes: a probe copy of the page writes the count into its title once loaded
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", (
        '<script>addEventListener("load", () => { const i = [...document.images]; document.title = "decoded " + '
        'i.filter(x => x.complete && x.naturalWidth > 0).length + "/" + i.length; });</script></body>')))
    dom = chromium(probe.as_uri(), tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    assert "<title>decoded 5/5</title>" in dom.stdout, dom.stdout[:500]
