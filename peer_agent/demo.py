"""`python -m peer_agent.demo`: a server and three agents (alice, bob, carol) in one room, all
on this machine, their UI addresses printed. Ctrl-C stops everything.

State lives in `--data-dir` (default `instance/demo`), so a second run finds the same
accounts, keys and logs. WebRTC is pinned to 127.0.0.1 unless `--real-interfaces` is given."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USERS = ("alice", "bob", "carol")


def _wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process {proc.pid} exited before printing {marker!r}")
        if marker in line:
            return line.strip().rsplit(" ", 1)[-1].rstrip("/")
    raise RuntimeError(f"process {proc.pid} did not print {marker!r} within {timeout}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peer_agent.demo", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "instance" / "demo")
    parser.add_argument("--port", type=int, default=5000, help="server port (0: a free one)")
    parser.add_argument("--room", default="lobby")
    parser.add_argument(
        "--real-interfaces", action="store_true",
        help="let the agents use the machine's real interfaces for WebRTC instead of pinning it "
             "to 127.0.0.1, so that an ordinary browser on this machine (/rooms/<room>) can "
             "reach them; WebRTC packets then go to this machine's own LAN address")
    args = parser.parse_args(argv)
    data: Path = args.data_dir
    data.mkdir(parents=True, exist_ok=True)
    secret_file = data / "secret_key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1", "INSTANCE_PATH": str(data / "server"),
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{data / 'server.sqlite3'}"),
        "SECRET_KEY": secret_file.read_text().strip(),
    }
    procs: list[subprocess.Popen[str]] = []

    def start(args_: list[str], log_name: str, extra: dict[str, str] | None = None,
              ) -> subprocess.Popen[str]:
        log = open(data / log_name, "a")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([sys.executable, *args_], cwd=ROOT, env={**env, **(extra or {})},
                                stdout=subprocess.PIPE, stderr=log, text=True)
        procs.append(proc)
        return proc

    try:
        server = start(["-m", "signaling", "--host", "127.0.0.1", "--port", str(args.port)],
                       "server.log")
        server_url = _wait_for_line(server, "listening on")
        print(f"server      {server_url}/  (history: {server_url}/rooms/{args.room}/history)")
        pin = [] if args.real_interfaces else ["--ice-host", "127.0.0.1"]
        for user in USERS:
            agent = start(
                ["-m", "peer_agent", "--server", server_url, "--user", user, "--room", args.room,
                 "--data-dir", str(data / user), "--register", *pin],
                f"{user}.log", {"GIBBERISH_PASSWORD": f"{user}-demo-password"})
            print(f"{user:<11} {_wait_for_line(agent, 'UI on')}/", flush=True)
        print(f"Accounts: alice, bob, carol with password <name>-demo-password. Logs in {data}.")
        print("Ctrl-C stops the server and the agents.", flush=True)
        # Block the signals only now, so the children started above do not inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
