"""The one Jinja2 environment that writes the agents' HTML and CSS, from `agents/templates/`.

`*.html.j2` templates autoescape every value; `*.css.j2` templates do not (HTML escapes mean nothing in a
stylesheet), so whatever goes into CSS is validated by the caller first. A missing value is an error.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

ENV = Environment(
    loader=PackageLoader("agents", "templates"),
    autoescape=select_autoescape(
        enabled_extensions=("html", "html.j2"), default_for_string=True, default=False
    ),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render(template: str, /, **values: Any) -> str:
    """`template` (a path under `agents/templates/`) rendered with `values`."""
    return ENV.get_template(template).render(**values)
