"""The step trace (peer_agent/trace.py): off, it writes nothing; with GIBBERISH_TRACE_DIR set,
each mark is a line `<id> <step> <seconds>` in that process's own file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MARKS = ("from peer_agent import trace; trace.mark('d:1', 'committed', 1.5); "
         "trace.mark('d:1', 'sent'); print(trace.ON)")


def _run(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", MARKS], env=env, check=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True).stdout.strip()


def test_marks_are_lines_in_the_processes_own_file(tmp_path: Path) -> None:
    assert _run({**os.environ, "GIBBERISH_TRACE_DIR": str(tmp_path)}) == "True"
    (written,) = tmp_path.glob("trace-*.tsv")
    lines = [line.split("\t") for line in written.read_text().splitlines()]
    assert [line[:2] for line in lines] == [["d:1", "committed"], ["d:1", "sent"]]
    assert float(lines[0][2]) == 1.5 and float(lines[1][2]) > 0


def test_off_without_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GIBBERISH_TRACE_DIR"}
    assert _run(env) == "False"
