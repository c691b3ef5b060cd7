"""Checking messages' signatures, the work every receiver does for every message, and the
batches of catch-up in particular (server history pages of 500, peer batches of 100).

Side by side, interleaved in one process so the ratios hold on a noisy machine:

- **baseline**: today's single-thread check through `cryptography` (OpenSSL), the key parsed
  once per device, one envelope after another;
- `cryptography` in a thread pool (one thread per core), batch by batch;
- `Envelope.verify` one by one (libsodium through PyNaCl, OpenSSL confirming refusals);
- `verify_envelopes` over a batch: the same checks spread over a thread pool, libsodium
  releasing the GIL;
- a process pool (one process per core) checking the batch's signatures with libsodium, the
  envelopes' bytes sent to it;
- the last two again beside a thread busy with Python, as the agent's event loop is while it
  catches up.

    .venv/bin/python -m bench.verify [--messages 6000] [--batch 500] [--rounds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from cryptography.exceptions import InvalidSignature
from nacl.bindings import crypto_sign_open

from bench.report import machine, write_section
from protocol import DeviceKey, Envelope, verify_envelopes
from protocol.keys import b64decode, load_public_key, public_key_and_device

Pairs = Sequence[tuple[Envelope, str]]


def with_cryptography(pairs: Pairs) -> int:
    """The baseline: what `Envelope.verify` did before libsodium, one envelope at a time."""
    good = 0
    for env, public in pairs:
        key, device = public_key_and_device(public)
        assert device == env.device
        try:
            key.verify(b64decode(env.sig), env.signed_bytes())
            good += 1
        except InvalidSignature:
            pass
    return good


def cryptography_threads(pool: ThreadPoolExecutor, workers: int) -> Callable[[Pairs], int]:
    def check(pairs: Pairs) -> int:
        return sum(pool.map(with_cryptography, _split(pairs, workers)))
    return check


def one_by_one(pairs: Pairs) -> int:
    for env, public in pairs:
        env.verify(public)
    return len(pairs)


def batched(pool: ThreadPoolExecutor) -> Callable[[Pairs], int]:
    def check(pairs: Pairs) -> int:
        return sum(p is None for p in verify_envelopes(pairs, pool))
    return check


def beside_busy_python(check: Callable[[Pairs], int]) -> Callable[[Pairs], int]:
    """`check` while another thread runs Python non-stop, as the agent's event loop does
    during a catch-up: each libsodium call gives the GIL up and must win it back."""
    def checked(pairs: Pairs) -> int:
        done = threading.Event()

        def busy() -> None:
            line = {"t": "batch", "envs": list(range(40))}
            while not done.is_set():
                json.dumps(line)

        other = threading.Thread(target=busy)
        other.start()
        try:
            return check(pairs)
        finally:
            done.set()
            other.join()
    return checked


def _libsodium_chunk(items: list[tuple[bytes, bytes, bytes]]) -> int:
    for raw_key, signature, data in items:
        crypto_sign_open(signature + data, raw_key)
    return len(items)


def process_pool(pool: ProcessPoolExecutor, workers: int) -> Callable[[Pairs], int]:
    def check(pairs: Pairs) -> int:
        items = [(b64decode(public), b64decode(env.sig), env.signed_bytes())
                 for env, public in pairs]
        return sum(pool.map(_libsodium_chunk, _split(items, workers)))
    return check


def _split(items: Sequence, parts: int) -> list:  # type: ignore[type-arg]
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]


def rate(check: Callable[[Pairs], int], pairs: list[tuple[Envelope, str]], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(pairs), batch):
        check(pairs[i:i + batch])
    return len(pairs) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=500, help="envelopes per batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    keys = [DeviceKey.generate() for _ in range(4)]
    pairs = [(Envelope.create(keys[i % 4], room="lobby", author="alice", seq=i + 1,
                              lamport=i + 1, ts=1_700_000_000_000 + i,
                              text=f"message {i} " + "x" * 80), keys[i % 4].public_key_b64)
             for i in range(args.messages)]
    for _, public in pairs[:4]:
        load_public_key(public)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    with ThreadPoolExecutor(cores) as threads, ProcessPoolExecutor(cores) as processes:
        list(processes.map(_libsodium_chunk, [[]] * cores))  # started before timing
        ways: dict[str, Callable[[Pairs], int]] = {
            "baseline: `cryptography`, one thread, one by one": with_cryptography,
            f"`cryptography` in {cores} threads, by batch": cryptography_threads(threads, cores),
            "`Envelope.verify` (libsodium), one by one": one_by_one,
            f"`verify_envelopes` (libsodium), its thread + {cores} in a pool, by batch":
                batched(threads),
            f"libsodium in {cores} processes, by batch": process_pool(processes, cores),
            f"`verify_envelopes` (libsodium), its thread + {cores} in a pool, beside a thread "
            "busy with Python": beside_busy_python(batched(threads)),
            f"libsodium in {cores} processes, beside a thread busy with Python":
                beside_busy_python(process_pool(processes, cores)),
        }
        best = dict.fromkeys(ways, 0.0)
        for _ in range(args.rounds):
            for name, check in ways.items():
                best[name] = max(best[name], rate(check, pairs, args.batch))
    base = best["baseline: `cryptography`, one thread, one by one"]
    lines = [
        "## Signature checks (`bench/verify.py`)",
        "",
        f"{machine('cryptography', 'pynacl')}; {args.messages} messages of "
        f"about 100 characters from 4 devices, batches of {args.batch}, best of "
        f"{args.rounds} interleaved rounds; 1-minute load average {os.getloadavg()[0]:.1f} "
        "(other work shares the machine, so compare the ratios).",
        "",
        "| check | messages/s | µs each | × baseline |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {r:,.0f} | {1e6 / r:.0f} | {r / base:.2f} |" for name, r in best.items()),
        "",
        "The catch-up paths (server history pages, peer batches) and the server's uploads use "
        "`verify_envelopes`: libsodium releases the GIL, so threads share the work without "
        "copying the envelopes to other processes; OpenSSL still decides every refusal "
        "(protocol/keys.py). The last two rows show its limit: beside a thread that runs "
        "Python without pause (the agent's event loop while it catches up), a checking thread "
        "gives the GIL up at every signature and waits to win it back, where processes do "
        "not wait.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        print(f"written to {write_section('verify', chr(10).join(lines))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
