"""Reading a survey answer out of a customer's message: digits, words and emoji in the languages routing knows.

A message is an answer only when everything in it is a score or a filler
word ("5", "five!", "Excelente", "👍", "4/5", "5 stars, thanks"); anything
else ("5 days and still no parcel?") makes it an ordinary message, which
then opens or reopens a case as usual. Scores: CSAT 1-5, NPS 0-10.
"""

from __future__ import annotations

import re

from crmhub.identities import fold

CSAT, NPS = "csat", "nps"
RANGES = {CSAT: range(1, 6), NPS: range(0, 11)}

# Number words 0-10 per language (en, es, pt, fr, de, tr, ru).
_NUMBERS = {
    0: "zero cero zéro null sıfır ноль",
    1: "one uno um une un eins bir один",
    2: "two dos dois deux zwei iki два",
    3: "three tres três trois drei üç три",
    4: "four cuatro quatro quatre vier dört четыре",
    5: "five cinco cinq fünf beş пять",
    6: "six seis sechs altı шесть",
    7: "seven siete sete sept sieben yedi семь",
    8: "eight ocho oito huit acht sekiz восемь",
    9: "nine nueve nove neuf neun dokuz девять",
    10: "ten diez dez dix zehn on десять",
}
# CSAT words and emoji: 5 excellent .. 1 terrible. 👍 is the top of a good/bad scale, 👎 its bottom.
_CSAT_WORDS = {
    5: "excellent great perfect amazing awesome fantastic excelente ótimo otimo perfecto perfeito genial "
       "ausgezeichnet super hervorragend mükemmel harika отлично превосходно супер "
       "👍 😍 🤩 🥰 😁 ❤ 💯 🙌",
    4: "good bueno buena bien bom boa bon bonne gut iyi хорошо 😊 🙂 😀 😃",
    3: "average so-so regular moyen mittel orta нормально 😐 😶",
    2: "bad poor malo mala mal ruim mauvais mauvaise schlecht kötü плохо 🙁 😕 😞",
    1: "terrible awful horrible pésimo pésima péssimo péssima nul nulle furchtbar schrecklich berbat ужасно "
       "👎 😡 😠 🤬 😤",
}
_FILLER = frozenset(fold(w) for w in (
    "stars star points thanks thank you thx ty estrellas estrella gracias obrigado obrigada merci étoiles "
    "danke sterne teşekkürler sağol yıldız спасибо звезды звёзд out of de von sur из my rating is "
    "score nota note puntuación ⭐").split())
_STAR = "⭐"
_OUT_OF = re.compile(r"^\s*(\d{1,2})\s*(?:/|out of|de|von|sur|из)\s*(5|10)\b")
_IGNORED = re.compile("[\ufe0f\u200d\U0001f3fb-\U0001f3ff]")  # variation selectors, joiners, skin tones
_TOKEN = re.compile(r"[\w-]+|[^\w\s]", re.UNICODE)


def _table(entries: dict[int, str]) -> dict[str, int]:
    return {fold(word): score for score, words in entries.items() for word in words.split()}


_NUMBER_WORDS = _table(_NUMBERS)
_CSAT_TABLE = {**_table({k: v for k, v in _NUMBERS.items() if 1 <= k <= 5}), **_table(_CSAT_WORDS)}


def score_of(text: str, kind: str) -> int | None:
    """The score `text` gives on the `kind` scale, or None when the message is not an answer."""
    folded = _IGNORED.sub("", fold(text)).strip()
    if not folded or len(folded) > 60:
        return None
    scale = RANGES[kind]
    fraction = _OUT_OF.match(folded)
    if fraction is not None:
        if int(fraction.group(2)) != scale.stop - 1:
            return None
        folded = folded[:fraction.start(1)] + fraction.group(1) + folded[fraction.end():]
    table = _CSAT_TABLE if kind == CSAT else _NUMBER_WORDS
    stars = folded.count(_STAR)
    found: set[int] = {stars} if kind == CSAT and stars else set()
    for token in _TOKEN.findall(folded):
        if token.isdigit():
            found.add(int(token))
        elif token in table:
            found.add(table[token])
        elif token in _FILLER or (not token[0].isalnum() and token not in table and ord(token[0]) < 0x2000):
            continue  # a filler word, or punctuation
        else:
            return None  # a word that is no score: an ordinary message
    if len(found) != 1:
        return None
    score = found.pop()
    return score if score in scale else None
