"""The ad's planner, designer and developer with an LLM: it makes the few choices it can make well
(alignment, a font from the installed ones, the button colour, shadow and corners) and the rules' code
measures, fits and writes the rest. Each choice is validated; a bad one is repaired once, then the
rule-based policy decides that part (reported as a fallback). Same protocols as the rule agents.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, create_model

from kernel import color as C
from kernel.errors import AdgraphError
from kernel.models import AdCopy, Box, SceneAnalysis
from kernel.script import has_hangul

from .designer import MIN_CONTRAST, RuleDesigner
from .developer import CSP, RuleDeveloper, render_html
from .llm import Usage, ask, report_fallback
from .planner import RulePlanner
from .prompts_ad import (
    SYSTEM,
    button_repair,
    finish_request,
    layout_request,
    style_request,
    valign_repair,
)
from .schemas import BlockStyle, TextDesign, TextLayer, TextPlan

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from kernel.models import FontCatalog


class LayoutChoice(BaseModel):
    """How the text block sits in its area."""

    align: Literal["left", "center", "right"] = Field(description="horizontal alignment of the text lines")
    valign: Literal["top", "center", "bottom"] = Field(description="vertical position inside the area")


class LLMPlanner:
    """`Planner`: the rules choose the region and box (never over the product); the LLM the alignment."""

    def __init__(self, chat: BaseChatModel, usage: Usage | None = None, rules: RulePlanner | None = None):
        self.chat, self.usage, self.rules = (
            chat,
            usage if usage is not None else Usage(),
            rules or RulePlanner(),
        )

    async def plan(
        self,
        *,
        copy: AdCopy,
        analysis: SceneAnalysis,
        canvas: tuple[int, int],
        text_position: str,
        text_area: Box,
    ) -> TextPlan:
        base = await self.rules.plan(
            copy=copy, analysis=analysis, canvas=canvas, text_position=text_position, text_area=text_area
        )
        user = layout_request(copy.headline, (base.box.w, base.box.h), canvas, text_position)

        def check(choice: LayoutChoice) -> list[str]:
            if text_position in ("top", "bottom") and choice.valign != text_position:
                return [valign_repair(text_position)]
            return []

        choice = await ask(
            self.chat, LayoutChoice, system=SYSTEM, user=user, agent="planner", part="layout",
            check=check, usage=self.usage,
        )  # fmt: skip
        if choice is None:
            return base
        return base.model_copy(update={"align": choice.align, "valign": choice.valign})


class LLMDesigner:
    """`Designer`: the LLM picks the font (unless the user did) and the button colour from the product's
    palette; the rules fit the sizes and guarantee 4.5:1 everywhere."""

    def __init__(self, chat: BaseChatModel, fonts: FontCatalog, usage: Usage | None = None) -> None:
        self.chat, self.usage = chat, usage if usage is not None else Usage()
        self.fonts = fonts
        self.rules = RuleDesigner(fonts)

    async def design(
        self, *, plan: TextPlan, analysis: SceneAnalysis, canvas: tuple[int, int], font: str | None
    ) -> TextDesign:
        has_cta = any(b.role == "cta" for b in plan.blocks)
        families = self._families(plan)
        colours = list(
            dict.fromkeys(c.lower() for c in [analysis.accent, analysis.dominant, *analysis.palette])
        )
        fields: dict[str, Any] = {}
        if font is None and len(families) > 1:
            fields["font"] = (Literal[tuple(families)], Field(description="font family for the text"))
        if has_cta and colours:
            fields["button"] = (Literal[tuple(colours)], Field(description="button colour, #rrggbb"))
        if not fields:
            return await self.rules.design(plan=plan, analysis=analysis, canvas=canvas, font=font)
        schema = create_model("StyleChoice", __doc__="The look of the ad's text.", **fields)
        headline = next(b.text for b in plan.blocks if b.role == "headline")
        user = style_request(
            headline,
            families=families if "font" in fields else None,
            colours=colours if "button" in fields else None,
            asked=fields,
        )

        def check(choice: Any) -> list[str]:
            colour = getattr(choice, "button", None)
            if colour is not None and (best := _label_for(colour))[1] < MIN_CONTRAST:
                return [button_repair(colour, best[1])]
            return []

        choice = await ask(
            self.chat, schema, system=SYSTEM, user=user, agent="designer", part="style",
            check=check, usage=self.usage,
        )  # fmt: skip
        chosen_font = getattr(choice, "font", None)
        design = None
        if chosen_font is not None:
            try:
                design = await self.rules.design(
                    plan=plan, analysis=analysis, canvas=canvas, font=chosen_font
                )
            except AdgraphError as e:  # the copy does not fit in that face: the rules choose
                report_fallback("designer", "font", f"{chosen_font}: {e.message}", self.usage)
        if design is None:
            design = await self.rules.design(plan=plan, analysis=analysis, canvas=canvas, font=font)
        colour = getattr(choice, "button", None)
        return design if colour is None else _with_button(design, colour)

    def _families(self, plan: TextPlan) -> list[str]:
        faces = self.fonts.faces()
        korean = any(has_hangul(b.text) for b in plan.blocks)
        plain = ("coding", "mono", "math")  # code and formula faces are no ad type
        return sorted(
            {
                f.family
                for f in faces
                if (f.hangul or not korean) and not any(w in f.family.lower() for w in plain)
            }
        )


def _label_for(background: str) -> tuple[str, float]:
    """White or near-black, whichever reads better on `background`, and its contrast."""
    return max(
        ((label, C.contrast(label, background)) for label in (C.WHITE, C.NEAR_BLACK)), key=lambda x: x[1]
    )


def _with_button(design: TextDesign, background: str) -> TextDesign:
    if design.button is None:
        return design
    label, contrast = _label_for(background)
    button = design.button.model_copy(update={"background": background, "color": label})
    blocks: list[BlockStyle] = [
        b.model_copy(update={"color": label, "contrast": int(contrast * 100) / 100}) if b.role == "cta" else b
        for b in design.blocks
    ]
    return design.model_copy(update={"button": button, "blocks": blocks})


class FinishChoice(BaseModel):
    """Finishing touches of the text layer."""

    shadow: Literal["none", "soft", "strong"] = Field(description="shadow under the headline and subline")
    corners: Literal["square", "rounded", "pill"] = Field(description="corners of the button")


_URL = re.compile(r"(?i)\burl\s*\(|\b[a-z][a-z0-9+.-]*://|(?:src|href)\s*=")


def layer_problems(html: str, design: TextDesign) -> list[str]:
    """What makes a text layer unsafe or incomplete: scripts, URLs, a missing CSP or block."""
    problems = []
    if "<script" in html.lower():
        problems.append("the layer has a script")
    if _URL.search(html):
        problems.append("the layer refers to a URL")
    if CSP not in html:
        problems.append("the layer lacks its Content-Security-Policy")
    problems += [f"block {b.role!r} is missing" for b in design.blocks if f'data-role="{b.role}"' not in html]
    return problems


class LLMDeveloper:
    """`Developer`: the LLM picks the shadow and the button's corners; the rules' writer places every line
    exactly where the design measured it, and the page is checked before it goes on."""

    def __init__(self, chat: BaseChatModel, usage: Usage | None = None) -> None:
        self.chat, self.usage = chat, usage if usage is not None else Usage()
        self.rules = RuleDeveloper()

    async def code(self, *, plan: TextPlan, design: TextDesign, canvas: tuple[int, int]) -> TextLayer:
        head = next(b for b in design.blocks if b.role == "headline")
        user = finish_request(
            " ".join(head.lines),
            head.color,
            scrim=bool(design.scrim),
            button=design.button.background if design.button else None,
        )
        choice = await ask(
            self.chat,
            FinishChoice,
            system=SYSTEM,
            user=user,
            agent="developer",
            part="finish",
            usage=self.usage,
        )
        if choice is None:
            return await self.rules.code(plan=plan, design=design, canvas=canvas)
        finished = _finish(design, choice)
        html = render_html(plan, finished, canvas)
        problems = layer_problems(html, finished)
        if problems:
            report_fallback("developer", "html", "; ".join(problems), self.usage)
            return await self.rules.code(plan=plan, design=design, canvas=canvas)
        return TextLayer(html=html)


def _finish(design: TextDesign, choice: FinishChoice) -> TextDesign:
    head = next(b for b in design.blocks if b.role == "headline")
    # the shadow is the opposite of the text: it only separates the letters, contrast never relies on it
    rgb = "0, 0, 0" if C.relative_luminance(head.color) > 0.4 else "255, 255, 255"
    shadow = {
        "none": None,
        "soft": f"0 1px 3px rgba({rgb}, 0.35)",
        "strong": f"0 2px 6px rgba({rgb}, 0.6)",
    }[choice.shadow]
    update: dict[str, Any] = {"text_shadow": shadow}
    if design.button is not None:
        height = 2 * design.button.padding_y + next(
            round(b.font_size * b.line_height) for b in design.blocks if b.role == "cta"
        )
        radius = {"square": 0, "rounded": max(4, height // 5), "pill": height // 2}[choice.corners]
        update["button"] = design.button.model_copy(update={"radius": radius})
    return design.model_copy(update=update)
