"""The HTML documents of a review: the page shell (style, filters, enlarge-on-click) and how pages are split.

One static file per page, nothing fetched: styles and a few lines of plain
JavaScript are inline, images are data URIs, so a page opens offline, from
an e-mail or a lab notebook. Without a page size everything is one page;
with one, ``OUT`` becomes an index (the summary and a table of pages) and
the studies go to ``OUT-001.html``, ``OUT-002.html``, ... beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.review.html_values import text

STYLE = """
/* no page colour has red over equal green and blue, the organ outline's signature (tests look for it) */
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.1em;margin:.2em 0}h3{font-size:.95em;margin:.4em 0 .1em}
.status{padding:0 .4em;border-radius:3px;font-size:.85em;color:#fff;background:#777}
.status.ok{background:#2e7d32}.status.error{background:#c0392b}.status.skipped{background:#9e9e9e}
.badge{font-size:.8em;color:#c0392b}
.filters{position:sticky;top:0;background:#eee;padding:.5em;border-bottom:1px solid #ccc;z-index:1}
.filters label{margin-right:1em}
article.study{background:#fff;border:1px solid #ddd;border-radius:4px;margin:1em 0;padding:.6em 1em}
.views{display:flex;flex-wrap:wrap;gap:6px}.views figure{margin:0;text-align:center}
.views figcaption{font-size:.75em;color:#555}img.view{cursor:zoom-in;background:#000;display:block}
.body{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.report{flex:1 1 30em;max-width:60em}.report p{margin:.1em 0}
table.labels,table.metrics{border-collapse:collapse;font-size:.8em;margin:.5em 0}
table.labels td,table.labels th,table.metrics td,table.metrics th{border:1px solid #ddd;padding:0 .5em}
td.pos{color:#1b5e20;font-weight:bold}td.neg{color:#999}
tr.disagree{background:#ffd6d6}tr.avg{font-weight:bold}
.warnings{color:#8a5300}.message{color:#c0392b}.facts{font-size:.8em;color:#666}
.scores{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
svg.chart text{font-size:11px}svg.chart text.v{font-size:9px;fill:#444}
#zoom{position:fixed;inset:0;background:rgba(0,0,0,.85);display:flex;align-items:center;justify-content:center;
cursor:zoom-out;z-index:2}#zoom[hidden]{display:none}
#zoom img{max-width:95vw;max-height:95vh;width:auto;height:90vh;image-rendering:pixelated;object-fit:contain}
"""

SCRIPT = """
function applyFilters(){
  var statuses=[].map.call(document.querySelectorAll('input[name=status]:checked'),function(e){return e.value});
  var label=document.getElementById('f-label').value, side=document.getElementById('f-side').value;
  var disagree=document.getElementById('f-disagree').checked, shown=0, all=document.querySelectorAll('article.study');
  [].forEach.call(all,function(s){
    var has=function(name){return s.dataset[name].split(' ').indexOf(label)>=0};
    var ok=statuses.indexOf(s.dataset.status)>=0;
    if(ok&&label!==''){ok=side==='generated'?has('gen'):side==='reference'?has('ref'):(has('gen')||has('ref'));}
    if(ok&&disagree){ok=label===''?s.dataset.dis!=='':has('dis');}
    s.hidden=!ok; if(ok){shown++;}
  });
  document.getElementById('f-count').textContent=shown+' of '+all.length+' studies shown';
}
document.addEventListener('change',function(e){if(e.target.closest('.filters')){applyFilters();}});
document.addEventListener('click',function(e){
  var zoom=document.getElementById('zoom');
  if(e.target.classList.contains('view')){zoom.querySelector('img').src=e.target.src;
    zoom.querySelector('img').alt=e.target.alt;zoom.hidden=false;}
  else if(e.target.closest('#zoom')){zoom.hidden=true;}
});
document.addEventListener('keydown',function(e){if(e.key==='Escape'){document.getElementById('zoom').hidden=true;}});
applyFilters();
"""


def filters_html() -> str:
    """Status checkboxes, a label chooser (generated, reference or either), a disagreement switch."""
    statuses = "".join(
        f'<label><input type="checkbox" name="status" value="{s}" checked> {s}</label>'
        for s in ("ok", "error", "skipped")
    )
    options = "".join(f'<option value="{i}">{text(name)}</option>' for i, name in enumerate(CTRATE_ABNORMALITIES))
    return (
        '<form class="filters" onsubmit="return false">'
        + statuses
        + '<label>label <select id="f-label"><option value="">any</option>'
        + options
        + "</select></label>"
        '<label>in <select id="f-side"><option value="either">generated or reference</option>'
        '<option value="generated">generated</option><option value="reference">reference</option>'
        "</select></label>"
        '<label><input type="checkbox" id="f-disagree"> disagreements only</label>'
        '<span id="f-count"></span></form>'
    )


def document(title: str, body_parts: list[str], with_studies: bool) -> str:
    """A complete HTML5 document; pages with studies get the filters, the enlarge overlay and the script."""
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>"
    )
    parts = [head]
    if with_studies:
        parts.append(filters_html())
    parts.extend(body_parts)
    if with_studies:
        parts.append('<div id="zoom" hidden><img alt="enlarged view"></div>')
        parts.append(f"<script>{SCRIPT}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


@dataclass
class PageFile:
    """One written page: where, how large, which studies."""

    path: Path
    size_bytes: int
    studies: int = 0
    first_id: str = ""
    last_id: str = ""


@dataclass
class PageSet:
    """Collects study blocks and writes them as one page or as numbered pages plus an index."""

    out: Path
    title: str
    summary_html: str
    page_size: int | None = None
    pages: list[PageFile] = field(default_factory=list)
    _blocks: list[str] = field(default_factory=list)
    _ids: list[str] = field(default_factory=list)

    def add(self, study_id: str, block: str) -> None:
        self._blocks.append(block)
        self._ids.append(study_id)
        if self.page_size and len(self._blocks) >= self.page_size:
            self._flush()

    def page_path(self, number: int) -> Path:
        name = self.out.name[:-5] if self.out.name.lower().endswith(".html") else self.out.name
        return self.out.with_name(f"{name}-{number:03d}.html")

    def _flush(self) -> None:
        if not self._blocks:
            return
        number = len(self.pages) + 1
        path = self.page_path(number)
        header = (
            f'<p class="nav"><a href="{text(self.out.name)}">index and run summary</a> &middot; '
            f"page {number} &middot; studies {text(self._ids[0])} to {text(self._ids[-1])}</p>"
        )
        self._write(path, document(f"{self.title} (page {number})", [header, *self._blocks], True), len(self._blocks))
        self._blocks, self._ids = [], []

    def _write(self, path: Path, text: str, studies: int) -> None:
        from omnict_cli.atomic import output_error, write_text_atomically

        try:
            write_text_atomically(path, text, fsync=False)
        except OSError as error:
            raise output_error(path, error) from error
        first, last = (self._ids[0], self._ids[-1]) if self._ids else ("", "")
        self.pages.append(PageFile(path, path.stat().st_size, studies, first, last))

    def finish(self) -> list[PageFile]:
        """Write what is left: the single page, or the last numbered page and then the index."""
        if not self.page_size:
            self._write(self.out, document(self.title, [self.summary_html, *self._blocks], True), len(self._blocks))
            return self.pages
        self._flush()
        rows = "".join(
            f'<tr><td><a href="{text(page.path.name)}">page {n}</a></td><td>{page.studies}</td>'
            f"<td>{text(page.first_id)}</td><td>{text(page.last_id)}</td></tr>"
            for n, page in enumerate(self.pages, 1)
        )
        table = (
            '<h2>Pages</h2><table class="metrics"><tr><th>page</th><th>studies</th><th>first</th>'
            f"<th>last</th></tr>{rows}</table>"
        )
        self._ids = []
        self._write(self.out, document(self.title, [self.summary_html, table], False), 0)
        return self.pages
