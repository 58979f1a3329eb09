"""How nbconvert renders the pages a person reads: the feedback and the formgrader's notebooks.

Both are nbgrader templates on nbconvert's classic one (``feedback``, ``formgrade``). Two changes,
made through nbconvert's own template search path (``HTMLExporter.extra_template_basedirs``:
``templates/classic/`` here is found before nbconvert's ``classic`` and ``base``):

* an error's message wraps (``templates/classic/base.html.j2``): a failed test's diagnosis is
  one long line, which classic's box would cut;
* MathJax comes from a local copy where this machine has one (Debian's ``libjs-mathjax``), so an
  offline grading machine shows formulas, not raw LaTeX (``templates/classic/mathjax.html.j2``,
  which makes nbgrader's templates honour ``HTMLExporter.mathjax_url``). The feedback, a file,
  names it by a ``file://`` URL; the formgrader, a web page, by a URL on its own server, which
  serves it when started with ``--ServerApp.extra_static_paths=/usr/share/javascript``
  (``FORMGRADER_STATIC``). Either falls back to nbconvert's CDN when the local copy does not load.

Loading the configuration imports neither nbconvert nor nbgrader.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from traitlets.config import Configurable

#: Our template folder: put after nbgrader's, whose ``feedback``/``formgrade`` templates it serves.
TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Where Debian's ``libjs-mathjax`` (MathJax 2.7) puts MathJax.
MATHJAX_DIR = Path("/usr/share/javascript/mathjax")

#: The folder a formgrader's server must serve as ``/static/`` for the local MathJax
#: (``--ServerApp.extra_static_paths``).
FORMGRADER_STATIC = MATHJAX_DIR.parent

#: The MathJax configuration nbconvert's CDN URL asks for.
MATHJAX_QUERY = "?config=TeX-AMS_CHTML-full,Safe"

#: The formgrader shows a notebook at ``{base_url}/formgrader/submissions/{id}/`` (nbgrader
#: redirects to the trailing slash), so this reaches ``{base_url}/static/`` under any base URL.
FORMGRADER_MATHJAX = f"../../../static/{MATHJAX_DIR.name}/MathJax.js{MATHJAX_QUERY}"


def local_mathjax(directory: Path = MATHJAX_DIR) -> Path | None:
    """``MathJax.js`` of the local MathJax, if this machine has one."""
    script = directory / "MathJax.js"
    return script if script.is_file() else None


def _nbgrader_templates() -> str:
    spec = importlib.util.find_spec("nbgrader")  # locates the package without importing it
    package = os.path.dirname(spec.origin)
    return os.path.join(package, "server_extensions", "formgrader", "templates")


def configure(c, mathjax: Path | None = None) -> None:
    """Our templates for nbgrader's feedback and formgrader; the local MathJax where found.

    ``mathjax``: the local ``MathJax.js`` (default: ``local_mathjax()``).
    """
    # Setting this replaces what GenerateFeedback and the formgrader would set, nbgrader's own.
    c.HTMLExporter.extra_template_basedirs = [_nbgrader_templates(), str(TEMPLATES)]
    c.HTMLExporter.filters = {"mathjax_urls": f"{__name__}.MathJaxUrls"}
    mathjax = mathjax or local_mathjax()
    if mathjax is not None:
        c.HTMLExporter.mathjax_url = FORMGRADER_MATHJAX
        # GenerateFeedback's exporter is its child: this wins over the line above for it.
        c.GenerateFeedback.HTMLExporter.mathjax_url = mathjax.as_uri() + MATHJAX_QUERY


class MathJaxUrls(Configurable):
    """Jinja filter ``url | mathjax_urls``: (the URL to load MathJax from, the one to try when
    that fails, or "").

    nbconvert constructs it with the exporter as its parent, whose ``mathjax_url`` is the URL
    when the template gives none; the fallback is nbconvert's default (its CDN).
    """

    def __call__(self, url: str | None = None) -> tuple[str, str]:
        trait = self.parent.traits()["mathjax_url"]
        default = trait.default_value
        url = url or getattr(self.parent, "mathjax_url", default)
        return url, ("" if url == default else default)
