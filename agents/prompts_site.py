"""What the homepage workflow's LLM agents (`agents.llm_site`) say to the model: the system prompt, the
profile as the model reads it, one request per answer, and the repair notes their checks send back.
Wording lives here only."""

from __future__ import annotations

from collections.abc import Iterable

from .site_schemas import Profile

SYSTEM = "You help a small shop make its homepage. Answer only by calling the function."
LANGUAGE = {"ko": "Korean", "en": "English"}
"""The site's language code -> the word the prompts use for it."""

_PROFILE_LABELS = {
    "store_name": "Shop",
    "store_type": "Type",
    "location": "Location",
    "store_strength": "Strengths",
    "target_customer": "Customers",
    "advertising_goal": "Goal",
}


def describe(profile: Profile) -> str:
    """The profile in a few lines (only what is filled in)."""
    values = profile.model_dump()
    return "\n".join(f"{label}: {values[key]}" for key, label in _PROFILE_LABELS.items() if values.get(key))


# -- planner: the pages and the copy ------------------------------------------------------------------


def pages_request(profile: Profile, kinds: Iterable[str]) -> str:
    return f"{describe(profile)}\nPages: {', '.join(kinds)}. Which pages should the site have?"


def missing_page_repair(page: str) -> str:
    return f"missing the {page!r} page"


FIRST_PAGE_REPAIR = "the first page must be 'index'"
REPEATED_PAGES_REPAIR = "page names repeat"


def too_many_pages_repair(count: int, most: int) -> str:
    return f"{count} pages; at most {most}"


def copy_request(profile: Profile, *, story: bool, language: str) -> str:
    """Ask for the tagline (and the shop's story) in the site's `language` ("ko" or "en")."""
    ask_for = "a tagline and the shop's story" if story else "a tagline"
    return f"{describe(profile)}\nWrite {ask_for} in {LANGUAGE[language]}, for the shop's customers."


# -- designer: the look and the brand colour ----------------------------------------------------------


def design_request(profile: Profile, style: str | None) -> str:
    hint = "" if style is None else f"\nStyle: {style}"
    return f"{describe(profile)}{hint}\nChoose the homepage's look and its brand colour."


def brand_colour_repair(value: str, hues: Iterable[str]) -> str:
    return f"brand_color {value!r} is not one of {', '.join(hues)} or a #rrggbb colour"


PRIMARY_REPAIR = "; choose a darker or stronger brand_color"
"""Added to a palette problem that names the primary colour."""

# -- developer: the page descriptions -----------------------------------------------------------------


def descriptions_request(profile: Profile, slugs: Iterable[str], *, language: str, tagline: str) -> str:
    return (
        f"{describe(profile)}\nPages: {', '.join(slugs)}. Write a one-sentence "
        f"description of each page in {LANGUAGE[language]}, e.g. index: {tagline}"
    )
