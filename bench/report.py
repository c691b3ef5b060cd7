"""Writing a benchmark's results into its own section of docs/benchmarks.md, leaving the other
sections as they are, and describing the machine the figures come from."""

from __future__ import annotations

import os
import platform
import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by the script named in it; run the script again to refresh it. Figures
come with their baseline measured in the same run, so the ratio holds on a noisy machine.
"""


def machine(*packages: str) -> str:
    """One line naming the cores, Python and the versions of the given packages."""
    versions = ", ".join(f"{p} {version(p)}" for p in packages)
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
            + (f", {versions}" if versions else ""))


def write_section(name: str, markdown: str) -> Path:
    """Replace (or append) the section between `<!-- bench:name -->` markers."""
    text = REPORT.read_text() if REPORT.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text)
    return REPORT


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of the samples."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
