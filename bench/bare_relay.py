"""The floor of the signal relay (bench/signal_relay.py): a bare Flask-SocketIO server that
forwards a `signal` to the device named in it with one emit to its sid, and nothing else: no
sign-in, no database, no rate limit, no checks. It runs as the server does (threading mode,
Werkzeug's threaded server with the server's request handler, the server's JSON packets), so
the difference between the two is what the server's relay adds.

    .venv/bin/python -m bench.bare_relay [--port 0]

`join {room, device}` records device -> sid; `signal {room, to, kind, payload}` reaches the
sid of `to` as the server's relay does (`{room, from, kind, payload}`) and acks `{ok: true}`."""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, request
from flask_socketio import SocketIO, emit

from signaling.packets import JsonPacket
from signaling.serving import serve

app = Flask(__name__)
socketio = SocketIO(app, async_mode="threading", serializer=JsonPacket)
_sids: dict[str, str] = {}  # device -> sid
_devices: dict[str, str] = {}  # sid -> device


@socketio.on("join")  # type: ignore[untyped-decorator]
def on_join(data: dict[str, Any]) -> dict[str, Any]:
    sid = request.sid  # type: ignore[attr-defined]
    _sids[data["device"]] = sid
    _devices[sid] = data["device"]
    return {"ok": True, "peers": []}


@socketio.on("signal")  # type: ignore[untyped-decorator]
def on_signal(data: dict[str, Any]) -> dict[str, Any]:
    sender = _devices.get(request.sid)  # type: ignore[attr-defined]
    emit("signal", {"room": data["room"], "from": {"device": sender}, "kind": data["kind"],
                    "payload": data["payload"]}, to=_sids[data["to"]])
    return {"ok": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    args = parser.parse_args(argv)
    serve(app, "127.0.0.1", args.port, "bare relay")


if __name__ == "__main__":
    main()
