"""`python -m peer_agent.demo`: a server and three agents (alice, bob, carol) in one room, all
on this machine, their UI addresses printed. Ctrl-C stops everything.

State lives in `--data-dir` (default `instance/demo`), so a second run finds the same
accounts, keys and logs. WebRTC is pinned to 127.0.0.1 unless `--real-interfaces` is given.

`--faults` runs the guided fault demo instead (peer_agent/demo_faults.py): in a fresh data dir,
the server and a peer are killed and brought back, step by step, each step checked."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from pathlib import Path

from .processes import ROOT, ChildError, Children, wait_for_line

USERS = ("alice", "bob", "carol")


def password_of(user: str) -> str:
    return f"{user}-demo-password"


def server_env(data: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment of the demo's children: the server keeps its secret key in `data`
    (made once, mode 0600) and its database in `data/server.sqlite3` unless told otherwise."""
    secret_file = data / "secret_key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
        secret_file.chmod(0o600)
    return {
        **os.environ, "PYTHONUNBUFFERED": "1", "INSTANCE_PATH": str(data / "server"),
        "DATABASE_URL": database_url or f"sqlite:///{data / 'server.sqlite3'}",
        "SECRET_KEY": secret_file.read_text().strip(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m peer_agent.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the server's database, the agents' data and the logs live "
                             "(default: instance/demo; with --faults a fresh temporary dir)")
    parser.add_argument("--port", type=int, default=5000, help="server port (0: a free one)")
    parser.add_argument("--room", default="lobby")
    parser.add_argument(
        "--real-interfaces", action="store_true",
        help="let the agents use the machine's real interfaces for WebRTC instead of pinning it "
             "to 127.0.0.1, so that an ordinary browser on this machine (/rooms/<room>) can "
             "reach them; WebRTC packets then go to this machine's own LAN address")
    faults = parser.add_argument_group("guided fault demo")
    faults.add_argument("--faults", action="store_true",
                        help="walk through the fault story in numbered, checked steps: the "
                             "server and a peer are killed (-9) and come back, a second device "
                             "signs in; exit 0 only if every step reached its expected state")
    faults.add_argument("--step", action="store_true",
                        help="wait for Enter before each step, and keep everything running at "
                             "the end until Ctrl-C")
    faults.add_argument("--stay", action="store_true",
                        help="keep everything running at the end until Ctrl-C")
    faults.add_argument("--keep", action="store_true",
                        help="keep the temporary data dir (logs, databases) at the end")
    faults.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long each step (and the start-up) may take to reach its "
                             "expected state (default 60)")
    args = parser.parse_args(argv)
    if args.faults and args.real_interfaces:
        parser.error("--faults keeps everything on loopback: drop --real-interfaces")
    if not args.faults:
        used = [f"--{name}" for name in ("step", "stay", "keep") if getattr(args, name)]
        if used:
            parser.error(f"{', '.join(used)}: only with --faults")
    if args.timeout <= 0:
        parser.error("--timeout must be greater than 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.faults:
        from .demo_faults import run_faults
        return run_faults(args)
    data: Path = args.data_dir or ROOT / "instance" / "demo"
    data.mkdir(parents=True, exist_ok=True)
    children = Children(server_env(data, os.environ.get("DATABASE_URL")))
    try:
        server = children.start(
            ["-m", "signaling", "--host", "127.0.0.1", "--port", str(args.port)],
            data / "server.log")
        server_url = wait_for_line(server, "listening on")
        print(f"server      {server_url}/  (history: {server_url}/rooms/{args.room}/history)")
        pin = [] if args.real_interfaces else ["--ice-host", "127.0.0.1"]
        for user in USERS:
            agent = children.start(
                ["-m", "peer_agent", "--server", server_url, "--user", user, "--room", args.room,
                 "--data-dir", str(data / user), "--register", *pin],
                data / f"{user}.log", {"GIBBERISH_PASSWORD": password_of(user)})
            print(f"{user:<11} {wait_for_line(agent, 'UI on')}/", flush=True)
        print(f"Accounts: alice, bob, carol with password <name>-demo-password. Logs in {data}.")
        print("Ctrl-C stops the server and the agents.", flush=True)
        # Block the signals only now, so the children started above do not inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except ChildError as exc:
        print(f"demo: {exc}; see the logs in {data}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        children.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
