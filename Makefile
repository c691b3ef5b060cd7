# The two commands README leads with. Both create what they need (.venv, pinned installs).
.PHONY: run demo-faults server test lint bootstrap

PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000

bootstrap:
	@bash scripts/bootstrap

run: bootstrap
	$(PY) -m peer_agent.demo --port $(PORT) $(DEMO_ARGS)

# The guided fault demo, for people: the server and a peer killed (-9) and back, each step
# checked, waiting for Enter before each one and running on at the end until Ctrl-C. Without
# --step (`python -m peer_agent.demo --faults`) it runs straight through, as CI does.
demo-faults: bootstrap
	$(PY) -m peer_agent.demo --faults --step --port $(PORT) $(DEMO_ARGS)

server: bootstrap
	$(PY) -m signaling --host $(HOST) --port $(PORT)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

test: lint
	$(PY) -m pytest
