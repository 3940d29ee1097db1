"""A small, deterministic language guess for routing rules (`language: [es]`).

Support messages are short, so this counts common function words of a few
languages rather than loading a statistical model; it answers None when the
text gives no signal, and a rule on language then does not match.
"""

from __future__ import annotations

import re

STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are my i you to of it not with this that have please help can for was".split()),
    "es": frozenset("el la los las de que y es mi no por favor ayuda con una un para está tengo hola".split()),
    "fr": frozenset("le la les de et est mon ma je vous pas avec une un pour merci aide bonjour ne".split()),
    "de": frozenset("der die das und ist mein ich sie nicht mit ein eine bitte hilfe für danke hallo".split()),
    "pt": frozenset("o a os as de que e é meu não com uma um para obrigado ajuda olá está tenho".split()),
    "it": frozenset("il la gli le di che e è mio non con una un per grazie aiuto ciao sono ho".split()),
}
WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def guess_language(text: str) -> str | None:
    """ISO 639-1 code of the likeliest language, or None without a clear winner."""
    words = [w.lower() for w in WORD.findall(text)]
    scores = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(scores.values(), default=0)
    winners = [lang for lang, score in scores.items() if score == best]
    return winners[0] if best > 0 and len(winners) == 1 else None
