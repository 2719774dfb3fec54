"""German and English: message catalogues (``locale/<lang>.json`` and the parts ``locale/<lang>.<part>.json`` of
single features, key → text) and the choice of language.

The language is the ``lang`` query parameter when given (remembered in the ``siegel_lang`` cookie), else
that cookie, else the best match of ``Accept-Language``, else English. Both catalogues hold the same keys
(tests/e2e/test_portal.py checks it); a key missing from one is a bug, shown as the key itself.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

LANGUAGES = ("en", "de")
DEFAULT = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


@lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in [LOCALE_DIR / f"{lang}.json", *sorted(LOCALE_DIR.glob(f"{lang}.*.json"))]:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict)
        texts.update({str(k): str(v) for k, v in data.items()})
    return texts


def from_accept_language(header: str) -> str | None:
    """The best of LANGUAGES that ``Accept-Language`` asks for (q-values honoured), or None."""
    best: tuple[float, str] | None = None
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and q > 0 and (best is None or q > best[0]):
            best = (q - index * 1e-6, lang)
    return best[1] if best else None


def choose(query: str | None, cookie: str | None, accept: str) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate  # type: ignore[return-value]
    return from_accept_language(accept) or DEFAULT


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)``: the text of ``key`` in ``lang`` with ``{name}`` placeholders filled in."""
    texts = catalogue(lang)

    def t(key: str, **values: object) -> str:
        text = texts.get(key, key)
        return text.format(**values) if values else text

    return t
