"""Self-contained offline HTML pages and PNG charts.

Pages are self-contained: the Vega, Vega-Lite and vega-embed JavaScript (from ``vl_convert``) is inlined
once, and each chart's Vega-Lite spec is embedded as JSON and rendered by ``vegaEmbed`` in the browser.
Nothing is fetched when a page is opened. The same specs are rendered to PNG with ``vl_convert``.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import altair as alt

from ..atomic import output_problem
from ..errors import UserError
from .chart_style import EMBED_OPTIONS, PNG_SCALE, THEME


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    intro: str  # HTML
    charts: tuple[tuple[str, dict], ...] = ()  # (name, Vega-Lite spec)
    body: str = ""  # HTML after the charts


def chart_spec(chart) -> dict:
    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict()
    spec["config"] = {**THEME, **spec.get("config", {})}
    return spec


@cache
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one classic script that defines ``vegaEmbed`` globally."""
    import vl_convert

    return vl_convert.javascript_bundle().replace("</script", "<\\/script")


def script_json(obj) -> str:
    """JSON safe to place inside a <script> element: no ``<`` at all (escaped as ``\\u003c``, the same JSON), so
    no text in it (a suite or config named ``<!--<script>``) can end the element or change how it is parsed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).replace("<", "\\u003c")


CSS = """
body{font-family:"Liberation Sans","DejaVu Sans",Arial,sans-serif;color:#222;line-height:1.45;
  margin:0 auto;max-width:1250px;padding:0 24px 60px}
h1{font-size:26px;margin:28px 0 6px}
h2{font-size:20px;margin:34px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.lead{font-size:15px;color:#333;margin-top:4px}
nav{background:#f5f6f8;padding:8px 14px;border-radius:6px;font-size:14px}
nav a{margin-right:16px}
.chart{margin:14px 0 22px;overflow-x:auto}
.note{color:#555;font-size:14px}
.table{overflow-x:auto;margin:10px 0 18px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f6f8}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:12px}
.chart-error{color:#b00020;font-weight:bold}
dl.glossary dt{font-weight:bold;margin-top:6px}
dl.glossary dd{margin-left:18px}
""".strip()

RENDER_JS = """
(function () {
  const options = %s;
  const divs = Array.from(document.querySelectorAll("div.chart[data-spec]"));
  const jobs = divs.map(function (div) {
    const spec = JSON.parse(document.getElementById(div.dataset.spec).textContent);
    return vegaEmbed(div, spec, options).then(function () { return true; }).catch(function (err) {
      console.error("chart " + div.id + " failed: " + err);
      div.innerHTML = '<p class="chart-error">This chart could not be drawn: ' + String(err) + '</p>';
      return false;
    });
  });
  Promise.all(jobs).then(function (ok) {
    document.body.dataset.chartsRendered = String(ok.filter(Boolean).length);
    document.body.dataset.chartsTotal = String(divs.length);
  });
})();
""".strip()


def render_page(title: str, lead: str, sections: list[Section]) -> str:
    """One self-contained HTML page: sections with charts, the Vega bundle inlined once at the end."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{lead}</p>',
        f"<nav>{nav}</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.intro}')
        for name, spec in s.charts:
            parts.append(f'<div class="chart" id="chart-{name}" data-spec="spec-{name}"></div>')
            parts.append(f'<script type="application/json" id="spec-{name}">{script_json(spec)}</script>')
        parts.append(f"{s.body}</section>")
    parts.append(f"<script>{vega_bundle()}</script>")
    parts.append(f"<script>{RENDER_JS % script_json(EMBED_OPTIONS)}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def esc(value) -> str:
    return html.escape(str(value))


def html_table(header: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    """A table of already-escaped cells; columns from ``numeric_from`` on are numbers (no wrapping)."""
    head = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="table"><table>{head}<tbody>{body}</tbody></table></div>'


def swatch(method: str, colors: dict[str, str]) -> str:
    return f'<span class="swatch" style="background:{colors.get(method, "#000")}"></span>{esc(method)}'


def charts_dir_problem(charts_dir: str | Path, names) -> str | None:
    """Why ``charts_dir`` may not be replaced by a folder of the charts ``names``, or None.

    The folder is replaced as a whole (no stale charts), so it must be new, empty or hold only charts of these
    names, which this command wrote: any other entry (a user's file, a subfolder) makes it someone else's. It
    must also be writable where it is (``atomic.output_problem``).
    """
    path = Path(charts_dir)
    problem = output_problem(path, "replace")
    if problem or not path.exists():
        return problem
    if path.is_symlink():
        return "is a symbolic link, not a folder"
    own = {f"{name}.png" for name in names}
    foreign = sorted(e.name for e in path.iterdir() if e.name not in own or not e.is_file() or e.is_symlink())
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return (f"holds files this command did not write ({shown}): it replaces the folder as a whole, so give a "
                "new or empty one")
    return None


def write_pngs(charts: list[tuple[str, dict]], charts_dir: str | Path) -> None:
    """Render each chart to ``{name}.png``; the directory is replaced as a whole (no stale files), and only when
    it holds nothing but such charts (``charts_dir_problem``). The charts are rendered before any file is made,
    so a job killed while rendering leaves nothing behind."""
    import vl_convert

    charts_dir = Path(charts_dir)
    problem = charts_dir_problem(charts_dir, [name for name, _ in charts])
    if problem:
        raise UserError(f"{charts_dir}: {problem}")
    pngs = {name: vl_convert.vegalite_to_png(spec, scale=PNG_SCALE) for name, spec in charts}
    charts_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{charts_dir.name}.", dir=charts_dir.parent))
    try:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
        os.chmod(tmp, 0o755)
        if charts_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{charts_dir.name}.old.", dir=charts_dir.parent))
            os.replace(charts_dir, old / "charts")
            os.replace(tmp, charts_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, charts_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
