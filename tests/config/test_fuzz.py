"""Mutation fuzz of the real example files: the loader returns a Config or problem lines, nothing else.

Issue 12, finding 6 found tracebacks and hangs on 38 of 5,200 mutated files.
Here hypothesis mutates settings.yaml and mappings/*.yaml from the repository
root (huge numbers, 1e308 and nan, deep nesting, aliases, surrogates and NUL,
long keys and text, tabs, BOMs, duplicate keys, truncation, random bytes) and
loads them in process; one CLI run checks what people see for the worst of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmhub.config import Config, ConfigError, load_config
from tests.config.conftest import ENV

ROOT = Path(__file__).resolve().parents[2]
FILES = {"settings.yaml": ROOT / "settings.yaml",
         **{f"mappings/{kind}.yaml": ROOT / "mappings" / f"{kind}.yaml" for kind in ("identities", "routing", "history")}}
ORIGINALS = {name: path.read_bytes() for name, path in FILES.items()}
SECRETS = "crmhub/defaults/sandbox-secrets"  # what the example settings.yaml reads with file:
PROBLEM = re.compile(r"^(settings\.yaml|mappings/(identities|routing|history)\.yaml):\d+:\d+: \S")

# YAML source text for a value, each a known way to break a loader.
NASTY = st.one_of(
    st.integers(19, 6000).map(lambda n: "9" * n),
    st.integers(1, 5000).map(lambda n: "-0x" + "f" * n),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: "{a: " * n + "}" * n),
    st.integers(1, 30_000).map(lambda n: "x" * n),
    st.text(st.characters(codec=None), max_size=40).map(json.dumps),  # double-quoted, surrogates as \ud800
    st.text(max_size=30),
    st.sampled_from([
        "1e308", "-1e308", "1e999", ".nan", ".inf", "-.inf", "9999999999999d", "1e308s", "-1", "0x0", "0o8",
        "1_000", "2024-13-45", "2024-02-30T25:61:00", "!!int x", "!!int 0x", "!!float x", "!!timestamp 2024-13-45",
        "!!binary '###'", "!!python/object:os.system x", "!!set {a, b}", "*nope", "&a [*a]", "{a: 1, a: 2}",
        '"\\ud800"', '"\\udc00\\ud800"', '"\\0"', '"\\x07"', '"\\x85"', '"\\u2028"', '"file:a\\0b"', "file:/dev/zero",
        "file:" + "n" * 300, "file:~" + "u" * 300, "env:" + "N" * 300, "\t", "'", '"', "~", "[]", "{}", "- a",
        "|\n  text", ">-\n  x", "? a\n: b", "<<: *x", "\ufeff", "a: b: c", "%YAML 1.1", "---", "...", "&x 1",
        "!!str", "@", "`", "{[a]: 1}", "[{a: 1}: b]",
    ]),
)

SCALAR = re.compile(rb"(?<=: )[^,{}\[\]\n#]+|(?<=- )[^,{}\[\]\n#]+")


def _laughs(levels: int, width: int) -> bytes:
    rows = [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}" if i else "lol"] * width) + "]" for i in range(levels)]
    return ("\n".join(rows) + "\n").encode()


@st.composite
def mutation(draw: st.DrawFn) -> Callable[[bytes], bytes]:
    """One edit of a file's bytes."""
    kind = draw(st.sampled_from(["value", "line", "truncate", "bytes", "bom", "duplicate", "tab", "laughs"]))
    where = draw(st.integers(0, 10**6))
    if kind == "value":
        nasty = draw(NASTY).encode("utf-8", "surrogatepass")

        def edit(data: bytes) -> bytes:
            spans = [m.span() for m in SCALAR.finditer(data)]
            if not spans:
                return data + nasty
            start, end = spans[where % len(spans)]
            return data[:start] + nasty + data[end:]
        return edit
    if kind == "line":
        key = draw(st.one_of(st.text(min_size=1, max_size=20), st.integers(1, 20_000).map(lambda n: "k" * n)))
        line = json.dumps(key).encode() + b": " + draw(NASTY).encode("utf-8", "surrogatepass") + b"\n"
        return lambda data: _at_line(data, where, line)
    if kind == "truncate":
        return lambda data: data[: where % (len(data) + 1)]
    if kind == "bytes":
        noise = draw(st.binary(min_size=1, max_size=16))
        return lambda data: data[: where % (len(data) + 1)] + noise + data[where % (len(data) + 1):]
    if kind == "bom":
        return lambda data: data[: where % (len(data) + 1)] + "\ufeff".encode() + data[where % (len(data) + 1):]
    if kind == "duplicate":
        def duplicate(data: bytes) -> bytes:
            lines = data.splitlines(keepends=True) or [b""]
            i = where % len(lines)
            return b"".join([*lines[: i + 1], lines[i], *lines[i + 1:]])
        return duplicate
    if kind == "tab":
        def tab(data: bytes) -> bytes:
            lines = data.splitlines(keepends=True) or [b""]
            i = where % len(lines)
            lines[i] = b"\t" + lines[i].lstrip(b" ")
            return b"".join(lines)
        return tab
    laughs = _laughs(draw(st.integers(2, 12)), draw(st.integers(2, 12)))
    return lambda data: data + laughs


def _at_line(data: bytes, where: int, line: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    i = where % (len(lines) + 1)
    return b"".join([*lines[:i], line, *lines[i:]])


@st.composite
def mutated_files(draw: st.DrawFn) -> dict[str, bytes]:
    """The four example files, one to three of them edited one to three times."""
    files = dict(ORIGINALS)
    for name in draw(st.lists(st.sampled_from(sorted(FILES)), min_size=1, max_size=3)):
        for edit in draw(st.lists(mutation(), min_size=1, max_size=3)):
            files[name] = edit(files[name])
    return files


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the example files' secrets, so messages say `settings.yaml:...`."""
    shutil.copytree(ROOT / SECRETS, tmp_path / SECRETS)
    (tmp_path / "mappings").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_mutated(root: Path, files: dict[str, bytes]) -> Config | list[str]:
    """Write `files` under `root` and load them: the Config, or the problem lines."""
    for name, data in files.items():
        (root / name).write_bytes(data)
    try:
        return load_config("settings.yaml", environ=ENV)
    except ConfigError as exc:
        return exc.problems


def test_the_unmutated_examples_load(workdir: Path) -> None:
    assert isinstance(load_mutated(workdir, ORIGINALS), Config)


@pytest.mark.timeout(120)
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(files=mutated_files())
def test_mutated_examples_load_or_give_problem_lines(workdir: Path, files: dict[str, bytes]) -> None:
    result = load_mutated(workdir, files)
    if isinstance(result, Config):
        return
    assert result, "a ConfigError without problems"
    for line in result:
        assert PROBLEM.match(line), line
        assert "internal error" not in line, line  # the last line of defence is not the fix
        assert "\n" not in line and "Traceback" not in line
        line.encode("utf-8")  # printable: no lone surrogate left


@pytest.mark.timeout(60)
def test_the_cli_prints_only_problem_lines_for_the_nastiest_mutations(workdir: Path) -> None:
    files = dict(ORIGINALS)
    files["settings.yaml"] = files["settings.yaml"].replace(b"port: 8080", b"port: 0x" + b"f" * 5000) \
        .replace(b"every: 10s", b"every: 1e308").replace(b"poll_every: 30s", b'poll_every: "\\ud800"')
    files["mappings/identities.yaml"] += _laughs(10, 9)
    files["mappings/routing.yaml"] = files["mappings/routing.yaml"].replace(
        b"timezone: Europe/London", b"timezone: " + b"[" * 1000 + b"]" * 1000)
    files["mappings/history.yaml"] = files["mappings/history.yaml"][:200] + b"\xff\xfe\x00"
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    result = subprocess.run([sys.executable, "-m", "crmhub", "validate", "--config", "settings.yaml"],
                            cwd=workdir, env={**os.environ, **ENV}, capture_output=True, timeout=50, check=False)
    stderr = result.stderr.decode("utf-8")
    assert (result.returncode, result.stdout) == (1, b""), stderr
    *problems, summary = stderr.splitlines()
    assert summary == f"{len(problems)} problems found; crmhub did not start."
    assert [line.split(": ", 1)[0] for line in problems] == [
        "settings.yaml:54:17", "settings.yaml:90:51",  # refused: the rest of the file is not validated
        "mappings/identities.yaml:26:42", "mappings/routing.yaml:2:75", "mappings/history.yaml:5:1",
    ], stderr
