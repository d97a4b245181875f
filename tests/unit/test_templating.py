"""The agents' one Jinja2 environment: HTML autoescaped, CSS left alone, a missing value an error."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from agents.templating import ENV, render


@pytest.mark.parametrize("template", ["ad_text_layer.html.j2", "site/page.html.j2", "site/site.css.j2"])
def test_a_missing_value_raises_instead_of_leaving_a_hole_in_the_page(template):
    with pytest.raises(UndefinedError):
        render(template, lang="en", width=1080)


def test_html_templates_autoescape_and_stylesheets_do_not():
    html_env = ENV.get_template("ad_text_layer.html.j2").environment
    assert html_env.autoescape("site/page.html.j2") and html_env.autoescape("ad_text_layer.html.j2")
    assert not html_env.autoescape("site/site.css.j2") and not html_env.autoescape("site/font_faces.css.j2")
    faces = [{"family": "Nanum Gothic", "slug": "nanum-gothic", "weight": 400, "files": ["fonts/a&b.ttf"]}]
    assert render("site/font_faces.css.j2", faces=faces) == (
        '@font-face{font-family:"site-nanum-gothic";font-weight:400;font-display:swap;'
        'src:url("../fonts/a&b.ttf") format("truetype"),local("Nanum Gothic");}\n'
    )
