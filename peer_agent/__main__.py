"""`python -m peer_agent`: run one user's peer agent and serve their chat UI on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

from protocol.catchup import SYNC_INTERVAL

from . import sctp_acks
from .device import AgentConfig, Device
from .ice import pin_ice_hosts
from .signaling_client import RECONNECT_MAX, SignInError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m peer_agent",
        description="Run a Gibberish agent for one device of a user: every room it joins, one "
                    "WebRTC connection per peer device, a local log, "
                    "and the chat UI at http://127.0.0.1:PORT/. The password comes from "
                    "GIBBERISH_PASSWORD or a prompt.",
    )
    parser.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--user", required=True, help="your user name")
    parser.add_argument("--room", action="append", default=[], metavar="ROOM",
                        help="a room to join (repeat for more); rooms joined before are "
                             "remembered in the data dir and joined again")
    parser.add_argument("--ui-port", type=int, default=0,
                        help="port of the chat UI on 127.0.0.1 (default: a free one, printed)")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="where the device key, the session and the local log live")
    parser.add_argument("--register", action="store_true",
                        help="create the account first if the name is free")
    parser.add_argument("--ice-host", action="append", metavar="ADDR",
                        help="use only this address for ICE (repeatable); e.g. 127.0.0.1 to keep "
                             "all WebRTC traffic on loopback. Default: every real interface")
    parser.add_argument("--rendezvous-host", metavar="ADDR", type=ip_address,
                        help="address of the rendezvous listener, published in the room's "
                             "roster so peers can reach this agent while the server is down "
                             "(default: the first --ice-host, else 127.0.0.1)")
    parser.add_argument("--rendezvous-port", type=int, default=0, metavar="N",
                        help="port of the rendezvous listener (default: a free one, printed)")
    parser.add_argument("--no-rendezvous", action="store_true",
                        help="do not listen for rendezvous (peers cannot reach this agent "
                             "while the server is down; it can still reach them)")
    parser.add_argument("--sync-interval", type=_seconds, default=SYNC_INTERVAL, metavar="S",
                        help="seconds between two comparisons of logs with each linked peer "
                             f"(a small digest frame; default {SYNC_INTERVAL:g})")
    parser.add_argument("--reconnect-max", type=_seconds, default=RECONNECT_MAX, metavar="S",
                        help="the longest wait, in seconds, between two attempts to reach the "
                             "server while it is down; the wait doubles from 0.5 s up to this "
                             f"(default {RECONNECT_MAX:g})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError("give a number of seconds from 0.05 to 3600")
    return value


def ip_address(text: str) -> str:
    """An IP address (what peers dial: docs/protocol.md, Rendezvous), never a host name."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def rendezvous_host(args: argparse.Namespace) -> str | None:
    """Where the rendezvous listens: as asked, else on the first address ICE is pinned to
    (the one address peers are known to reach), else on loopback; None when turned off."""
    if args.no_rendezvous:
        return None
    if args.rendezvous_host:
        return str(args.rendezvous_host)
    return str(args.ice_host[0]) if args.ice_host else "127.0.0.1"


async def run(args: argparse.Namespace, password: str | None) -> None:
    pin_ice_hosts(args.ice_host)
    sctp_acks.install()
    agent = Device(AgentConfig(
        server_url=args.server, username=args.user, rooms=args.room, data_dir=args.data_dir,
        password=password, register=args.register, ui_port=args.ui_port,
        ice_hosts=args.ice_host, rendezvous_host=rendezvous_host(args),
        rendezvous_port=args.rendezvous_port, sync_interval=args.sync_interval,
        reconnect_max=args.reconnect_max,
    ))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.start()
        # The UI line first: scripts read up to it (the rendezvous address is also in
        # /api/state).
        print(f"Gibberish agent UI on {agent.ui.url}", flush=True)
        for room in agent.rooms.values():
            if room.rendezvous is not None:
                print(f"Gibberish agent #{room.room} rendezvous on {room.rendezvous.address}",
                      flush=True)
        await stop.wait()
    finally:
        await agent.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    password = os.environ.get("GIBBERISH_PASSWORD")
    if password is None and not (args.data_dir / "session.json").exists():
        password = getpass.getpass(f"Password for {args.user}: ")
    try:
        asyncio.run(run(args, password))
    except SignInError as exc:
        print(f"cannot sign in: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
