"""The demos: `python -m demo` (a room of three on this machine) and `python -m demo --faults`
(the guided fault story). They start their processes with the launcher package."""
