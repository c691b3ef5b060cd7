# The two commands README leads with. Both create what they need (.venv, pinned installs).
.PHONY: run demo-faults server test test-fast lint bootstrap

PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000

bootstrap:
	@bash scripts/bootstrap

run: bootstrap
	$(PY) -m demo --port $(PORT) $(DEMO_ARGS)

# The guided fault demo, for people: the server and a peer killed (-9) and back, each step
# checked, waiting for Enter before each one and running on at the end until Ctrl-C. Without
# --step (`python -m demo --faults`) it runs straight through, as CI does.
demo-faults: bootstrap
	$(PY) -m demo --faults --step --port $(PORT) $(DEMO_ARGS)

server: bootstrap
	$(PY) -m signaling --host $(HOST) --port $(PORT)

# tsc (typescript pinned in package.json) checks the JSDoc types of the `// @ts-check` modules
# listed in tsconfig.json.
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy
	node_modules/.bin/tsc -p tsconfig.json

# The whole suite on TEST_WORKERS processes (pytest-xdist). Most of its time is waiting on
# servers, agents and browsers, so more workers than cores pays. --dist worksteal lets an idle
# worker take tests queued on a busy one: the long modules no longer make one worker's tail
# (8:11 against 9:04 for --dist loadfile, the same 1,452 tests on this 2-core machine).
TEST_WORKERS ?= 4

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The pure tier for the edit-run loop: protocol rules, parsers, the local log and roster cache,
# ICE pinning, the room core. No server, no peer connection, no browser; well under a minute.
FAST_TESTS := tests/protocol tests/peer_agent/test_log.py tests/peer_agent/test_roster_cache.py \
	tests/peer_agent/test_ice.py tests/peer_agent/test_room_core.py \
	tests/peer_agent/test_room_scenarios.py

test-fast: bootstrap
	$(PY) -m pytest -n 2 -q $(FAST_TESTS) $(PYTEST_ARGS)
