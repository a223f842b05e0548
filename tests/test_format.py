"""The chapters' code is formatted to fit the book's code column.

``book/ruff.toml`` sets the line length (measured in the browser: the widest line a code
cell shows without a sideways scroll bar at a 1280-pixel window, see tests/test_browser.py).
Reformat the chapters with ``ruff format book/``; lines the formatter cannot break
(comments, long strings) are reported by ``ruff check --select E501 book/``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "book" / "ruff.toml"


def line_length() -> int:
    match = re.search(r"^line-length\s*=\s*(\d+)", CONFIG.read_text(), flags=re.MULTILINE)
    assert match, f"{CONFIG} sets no line-length"
    return int(match.group(1))


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, check=False, capture_output=True, text=True
    )


def test_the_book_has_a_line_length() -> None:
    length = line_length()
    assert 60 <= length <= 88


def test_chapters_are_formatted() -> None:
    result = _ruff("format", "--check", "--diff", "book/")
    assert result.returncode == 0, (
        "run `ruff format book/`:\n" + result.stdout[-6000:] + result.stderr[-2000:]
    )


def test_no_code_line_is_longer_than_the_column() -> None:
    result = _ruff("check", "--no-cache", "--select", "E501", "--output-format", "concise", "book/")
    assert result.returncode == 0, (
        "lines too long for the code column:\n" + result.stdout[-6000:] + result.stderr
    )


def test_the_formatter_reads_the_book_config() -> None:
    """ruff applies book/ruff.toml to the notebooks (and not the default 88 columns)."""
    result = _ruff("check", "--show-settings", "book/eubo.ipynb")
    length = line_length()
    assert str(CONFIG) in result.stdout
    assert f"line_length = {length}" in result.stdout
