"""Checking a message's signature, the work every receiver does for every message: with the
parsed public key remembered per device (what `Envelope.verify` does) against the baseline of
parsing the key and deriving its device id on every call (what it did before). The two run
interleaved in one process, so the ratio holds on a noisy machine.

    .venv/bin/python -m bench.verify [--messages 3000] [--rounds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.report import machine, write_section
from protocol import DeviceKey, Envelope
from protocol.keys import _parse_public_key, b64decode, device_id_for


def verify_parsing_every_time(env: Envelope, public_key_b64: str) -> None:
    """The baseline: parse the key, derive its device, check the signature."""
    key = _parse_public_key(public_key_b64)
    assert device_id_for(key.public_bytes_raw()) == env.device
    key.verify(b64decode(env.sig), env.signed_bytes())


def rate(check: Callable[[Envelope, str], None], envs: list[Envelope], key: str) -> float:
    started = time.perf_counter()
    for env in envs:
        check(env, key)
    return len(envs) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    key = DeviceKey.generate()
    envs = [Envelope.create(key, room="lobby", author="alice", seq=i + 1, lamport=i + 1,
                            ts=1_700_000_000_000 + i, text=f"message {i} " + "x" * 80)
            for i in range(args.messages)]
    public = key.public_key_b64
    cached: list[float] = []
    baseline: list[float] = []
    for _ in range(args.rounds):
        baseline.append(rate(verify_parsing_every_time, envs, public))
        cached.append(rate(Envelope.verify, envs, public))
    best_cached, best_baseline = max(cached), max(baseline)
    lines = [
        "## Signature checks (`bench/verify.py`)",
        "",
        f"{machine('cryptography')}; {args.messages} messages of about 100 characters, "
        f"best of {args.rounds} interleaved rounds.",
        "",
        "| check | messages/s | µs each |",
        "|---|---:|---:|",
        f"| `Envelope.verify`, parsed key remembered | {best_cached:,.0f} | "
        f"{1e6 / best_cached:.0f} |",
        f"| baseline: key parsed on every call | {best_baseline:,.0f} | "
        f"{1e6 / best_baseline:.0f} |",
        "",
        f"Ratio: {best_cached / best_baseline:.2f}x. The Ed25519 check itself dominates both.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        print(f"written to {write_section('verify', chr(10).join(lines))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
