"""The guided fault demo (`python -m demo --faults`) run as people run it: a
subprocess on free ports that walks through its seven steps, exits 0 only when each reached its
expected state, names the step that did not, and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest

from tests.demo.demo_process import PROMPT, STEPS, Demo, leftovers


@pytest.mark.timeout(360)
def test_the_fault_demo_reaches_every_step_and_leaves_nothing_running(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo")
    assert demo.proc.stdin is not None
    demo.proc.stdin.close()  # no --step: it never reads stdin
    try:
        code = demo.wait(timeout=300)
    finally:
        demo.stop()
    out = demo.output()
    assert code == 0, out
    before_steps = out.split(f"Step 1/{STEPS}:", 1)[0]
    for user in ("alice", "bob", "carol"):
        assert re.search(rf"^{user} +http://127\.0\.0\.1:\d+/ ", before_steps, re.M), out
    for n in range(1, STEPS + 1):
        assert re.search(rf"^Step {n}/{STEPS}: \S", out, re.M), f"step {n} not announced"
        assert re.search(rf"^Step {n}/{STEPS} reached in \d+\.\d s$", out, re.M), out
        assert re.search(rf"^  Step {n}/{STEPS}: .* reached$", out, re.M), out  # the summary
    assert "FAILED" not in out
    assert f"All {STEPS} steps reached their expected state." in out
    assert re.search(r"^  total +\d+\.\d s$", out, re.M)
    # Everything it talked to was on loopback.
    assert set(re.findall(r"https?://([^/:\s]+)", out)) == {"127.0.0.1"}
    # server twice, three agents, carol again, alice's second device
    assert len(demo.pids()) == 7, out
    assert leftovers(demo) == []
    assert (tmp_path / "demo" / "server.log").exists()  # a --data-dir given is kept


@pytest.mark.timeout(240)
def test_a_step_that_fails_is_named_and_the_demo_exits_1(tmp_path: Path) -> None:
    """With --step, the test holds the server's port while the server is down: the server
    cannot come back on it, so step 5 fails, is named, and the demo exits 1 after Ctrl-C."""
    demo = Demo(tmp_path / "demo", "--step")
    holder = socket.socket()
    try:
        port = int(demo.wait_for(r"^server +http://127\.0\.0\.1:(\d+)/", 120).group(1))
        for n in (1, 2, 3):
            demo.wait_for(re.escape(PROMPT), 60)
            demo.enter()
            demo.wait_for(rf"^Step {n}/{STEPS} reached", 90)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        for _ in (4, 5):
            demo.wait_for(re.escape(PROMPT), 60)
            demo.enter()
        failed = demo.wait_for(rf"^Step 5/{STEPS} FAILED: (.*)", 90).group(1)
        demo.wait_for(r"Ctrl-C stops it all", 30)  # --step keeps it running for a look
        assert demo.proc.poll() is None
        os.kill(demo.proc.pid, signal.SIGINT)
        code = demo.wait(timeout=60)
    finally:
        demo.stop()
        holder.close()
    out = demo.output()
    assert code == 1, out
    assert "listening on" in failed and "server.log" in failed, failed
    assert f"FAILED at step 5/{STEPS} (the server comes back on the same port)" in out
    for n in (6, 7):
        assert re.search(rf"^  Step {n}/{STEPS}: .*: not run$", out, re.M), out
    assert leftovers(demo) == []
