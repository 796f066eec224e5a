"""The categories a site declares in ``NOTIFICATIONS["CATEGORIES"]``, parsed once per settings.

A category is what a user mutes or silences on the preferences page ("Mentions", "Weekly
digest"); a site that declares none has one, ``general``. The system checks (conf E007/E008)
report a bad declaration; here a bad entry is skipped so the site still runs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from notifications import conf


class Category(NamedTuple):
    slug: str
    label: str
    description: str = ""
    mutable: bool = True  # False: always shown (security notices); users cannot mute it
    default: bool = True  # False: shown only to users who switch it on


_parsed: tuple[object, dict[str, Category], str] | None = None


def declared() -> dict[str, Category]:
    """Return the declared categories, slug -> Category, in declaration order."""
    return _current()[1]


def default_slug() -> str:
    """Return the category a notification gets when none is given."""
    return _current()[2]


def get(slug: str) -> Category | None:
    return declared().get(slug)


def validate(slug: Any) -> str:
    """Return ``slug`` (or the default for None/"") if declared; raise ValueError otherwise."""
    if slug in (None, ""):
        return default_slug()
    if not isinstance(slug, str) or slug not in declared():
        raise ValueError(f"Unknown category {slug!r}; declared: {', '.join(declared())}.")
    return slug


def choices() -> list[tuple[str, str]]:
    return [(category.slug, category.label) for category in declared().values()]


def _current() -> tuple[object, dict[str, Category], str]:
    global _parsed
    settings = conf.get()
    if _parsed is None or _parsed[0] is not settings:
        found = _parse(settings.CATEGORIES)
        default = settings.DEFAULT_CATEGORY
        if default not in found:
            default = next(iter(found))
        _parsed = (settings, found, default)
    return _parsed


def _parse(raw: Any) -> dict[str, Category]:
    found: dict[str, Category] = {}
    if isinstance(raw, dict):
        for slug, spec in raw.items():
            if not isinstance(slug, str) or not isinstance(spec, dict):
                continue
            label = spec.get("label")
            found[slug] = Category(
                slug=slug,
                label=label if isinstance(label, str) and label else slug.replace("-", " ").title(),
                description=str(spec.get("description") or ""),
                mutable=spec.get("mutable", True) is not False,
                default=spec.get("default", True) is not False or spec.get("mutable") is False,
            )
    if not found:
        found["general"] = Category("general", "General")
    return found
