"""Fixtures of the network tests: the NAT lab (tests/network/natlab.py) with a real coturn in
its public namespace, configured as docs/deploy.md says (`use-auth-secret`).

Without root, `ip`, `iptables` or coturn the package is skipped with the reason on a
developer's machine, and fails in CI (CI=true)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signaling.turn import TurnSettings
from tests.helpers import poll, require, stop_process
from tests.network.natlab import PUBLIC, NatLab, unavailable_reason

TURN_PORT = 3478
TURN_URL = f"turn:{PUBLIC}:{TURN_PORT}?transport=udp"

# The settings of docs/deploy.md ("TURN for peers behind NATs") but TLS, on the lab's address.
COTURN_CONF = """\
listening-ip={public}
relay-ip={public}
listening-port={port}
min-port=49152
max-port=65535
fingerprint
use-auth-secret
static-auth-secret={secret}
realm=gibberish.test
no-tls
no-dtls
no-cli
no-multicast-peers
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=172.16.0.0-172.31.255.255
denied-peer-ip=192.168.0.0-192.168.255.255
denied-peer-ip=169.254.0.0-169.254.255.255
userdb={workdir}/turndb
pidfile={workdir}/turnserver.pid
log-file=stdout
simple-log
"""


@dataclass
class Coturn:
    """coturn running in the lab's public namespace; `settings` mint its credentials."""

    proc: subprocess.Popen[str]
    settings: TurnSettings
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def missing_prerequisite() -> str | None:
    if shutil.which("turnserver") is None:
        return "coturn is not installed (apt-get install coturn)"
    return unavailable_reason()


@pytest.fixture(scope="package")
def lab() -> Iterator[NatLab]:
    reason = missing_prerequisite()
    require(reason, "network tests need namespaces, iptables and coturn")
    built = NatLab()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="package")
def coturn(lab: NatLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    workdir = tmp_path_factory.mktemp("coturn")
    secret = secrets.token_urlsafe(24)
    conf = workdir / "turnserver.conf"
    conf.write_text(COTURN_CONF.format(public=PUBLIC, port=TURN_PORT, secret=secret,
                                       workdir=workdir))
    log_path = workdir / "turnserver.log"
    with open(log_path, "w") as log_file:
        proc = lab.popen("pub", ["turnserver", "-c", str(conf)], stdout=log_file,
                         stderr=subprocess.STDOUT)
    running = Coturn(proc, TurnSettings(urls=(TURN_URL,), secret=secret, ttl=600), log_path)
    try:
        poll(lambda: f"{PUBLIC}:{TURN_PORT}" in lab.sh("pub", "ss -lun"), timeout=15,
             message="coturn listening")
        yield running
    finally:
        stop_process(proc)
