"""`python -m demo`: a server and three agents (alice, bob, carol) in one room, all on this
machine, their UI addresses printed; Ctrl-C stops everything. State lives in the data dir, so a
second run finds the same accounts, keys and logs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from demo.cast import USERS, agent_for, server_for
from launcher import ROOT, AgentProcess, ChildError, ServerProcess, stop_all


def run_room(args: argparse.Namespace) -> int:
    data: Path = args.data_dir or ROOT / "instance" / "demo"
    data.mkdir(parents=True, exist_ok=True)
    server = server_for(data, args.port, os.environ.get("DATABASE_URL"))
    if os.environ.get("REDIS_URL"):
        server.env["REDIS_URL"] = os.environ["REDIS_URL"]
    started: list[ServerProcess | AgentProcess] = [server]
    try:
        server.start()
        print(f"server      {server.url}/  (history: {server.url}/rooms/{args.room}/history)")
        ice_host = None if args.real_interfaces else "127.0.0.1"
        for user in USERS:
            agent = agent_for(server, data, user, args.room, ice_host=ice_host)
            started.append(agent)
            agent.start()
            print(f"{user:<11} {agent.url}/", flush=True)
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
        stop_all(started)
    return 0
