"""Start the project's real processes on this machine and drive them: `python -m signaling`
(`ServerProcess`) and `python -m peer_agent` (`AgentProcess`), each on free ports, with a log
file, a start-up deadline, and stop / kill -9 / freeze / thaw / restart always by pid.

One launcher for the tests, the benchmarks and the demo, so that all three start the same
processes the same way. Plain urllib for HTTP: the demo runs with the runtime dependencies only."""

from launcher.agent import LOOPBACK_RECONNECT_MAX, AgentProcess, ui_events
from launcher.child import ROOT, Child, ChildError, start_all, stop_all, stop_leftovers, track
from launcher.history import HistoryReader, LogKey, keys
from launcher.http import HttpError, call
from launcher.server import ServerProcess

__all__ = [
    "ui_events",
    "LOOPBACK_RECONNECT_MAX", "ROOT", "AgentProcess", "Child", "ChildError", "HistoryReader",
    "HttpError", "LogKey", "ServerProcess", "call", "keys", "start_all", "stop_all",
    "stop_leftovers", "track",
]
