#!/usr/bin/env python3
"""The daemon under hostile load: its memory and its answers while attacked.

Starts the escalade binary on the example city in a fresh temporary state directory, on a port of
127.0.0.1, and attacks it in phases, each bounded in count and time:

  idle       10,000 connections opened and left silent; meanwhile /healthz and an authenticated
             submission are timed on fresh connections
  unauth     400 requests announcing 1 MiB bodies without a token, each sending 64 KiB and stalling
  stalled    400 authenticated requests sending half of a 1 MiB body and stalling
  uploads    32 multipart uploads at once, 8 photos of 9.7 MB each (78 MB a request)
  lists      16 clients listing 1,000 issues of the longest descriptions, for 10 s

It reads the daemon's resident memory (VmRSS) from /proc every 100 ms and prints, per phase, the
peak and the memory after the phase, and the latencies measured. Nothing but 127.0.0.1 is
contacted; the daemon is stopped at the end (or after 10 minutes in all, whatever happens).

    cargo build --release -p escalade
    python3 daemon/benches/attack.py [--binary target/release/escalade]
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEADLINE = time.monotonic() + 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Samples the daemon's RSS every 100 ms; `peak` since the last `reset`."""

    def __init__(self, pid):
        self.pid, self.peak = pid, 0.0

    def reset(self):
        self.peak = rss_mb(self.pid)

    async def run(self):
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.1)


async def request(port, raw, timeout=10.0):
    """Sends raw bytes on a new connection while reading the answer (which may come before the
    whole body is sent, a refusal say); the status code and body, or None on timeout."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (asyncio.TimeoutError, OSError):
        return None, b""

    async def send():
        try:
            w.write(raw)
            await w.drain()
        except OSError:
            pass

    sending = asyncio.create_task(send())
    try:
        data = await asyncio.wait_for(r.read(), timeout)
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body
    except (asyncio.TimeoutError, OSError, IndexError, ValueError):
        return None, b""
    finally:
        sending.cancel()
        w.close()


def post(path, token, body, ctype="application/json"):
    h = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ctype}\r\n"
    if token:
        h += f"Authorization: Bearer {token}\r\n"
    return h.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def get(path, token=None):
    h = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if token:
        h += f"Authorization: Bearer {token}\r\n"
    return (h + "\r\n").encode()


ISSUE = json.dumps(
    {"category": "garbage", "unit": "g-0001", "description": "小区门口垃圾三天未清运"}
).encode()


async def timed(port, raw, n):
    """`n` sequential requests on fresh connections: statuses and latencies in ms."""
    lat, statuses = [], []
    for _ in range(n):
        t = time.monotonic()
        status, _ = await request(port, raw)
        lat.append((time.monotonic() - t) * 1000)
        statuses.append(status)
    return statuses, lat


async def idle_phase(port, token, held=10_000):
    conns = []
    for i in range(held):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError as e:
            print(f"  opened {i} idle connections, then: {e}", file=sys.stderr)
            break
    await asyncio.sleep(1)
    hs, hl = await timed(port, get("/healthz"), 50)
    ss, sl = await timed(port, post("/api/v1/issues", token, ISSUE), 50)
    for _, w in conns:
        w.close()
    return {
        "held": len(conns),
        "healthz": (hs, hl),
        "submit": (ss, sl),
    }


async def stalled_bodies(port, token, n=400, send=64 << 10, stall=35.0):
    """`n` requests announcing 1 MiB, sending `send` bytes of it, then silent for `stall` s."""

    async def one():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            head = "POST /api/v1/issues HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            head += f"Content-Length: {1 << 20}\r\n\r\n"
            w.write(head.encode() + b" " * send)
            await w.drain()
            data = await asyncio.wait_for(r.read(4096), stall)
            w.close()
            return int(data.split(b" ")[1]) if data else "closed"
        except asyncio.TimeoutError:
            return "no answer"
        except (OSError, IndexError, ValueError) as e:
            return type(e).__name__

    results = await asyncio.gather(*(one() for _ in range(n)))
    counts = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    return counts


def png(side, seed):
    """A valid RGB PNG of side x side pixels of noise, stored uncompressed: about 3 side^2 bytes."""
    import random
    import struct
    import zlib

    rng = random.Random(seed)
    row = side * 3
    raw = b"".join(b"\0" + rng.randbytes(row) for _ in range(side))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


def multipart(photos, side):
    boundary = "attackboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="issue"\r\n'
        f"Content-Type: application/json\r\n\r\n".encode()
        + ISSUE
        + b"\r\n"
    ]
    for i in range(photos):
        body = png(side, i)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{i}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + body
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def uploads(port, token, n=32):
    # 8 photos of 1,800 x 1,800 pixels, 9.7 MB each (under the 10 MiB default).
    body, ctype = multipart(8, 1800)
    raw = post("/api/v1/issues", token, body, ctype)
    results = await asyncio.gather(*(request(port, raw, timeout=120) for _ in range(n)))
    counts = {}
    for status, _ in results:
        counts[status] = counts.get(status, 0) + 1
    return counts, len(body)


async def lists(port, token, clients=16, seconds=10.0):
    long = json.dumps(
        {"category": "garbage", "unit": "g-0001", "description": "垃" * 4000}
    ).encode()
    for _ in range(1000):
        await request(port, post("/api/v1/issues", token, long))
    end = time.monotonic() + seconds
    sizes, statuses = [], []

    async def client():
        while time.monotonic() < end:
            status, body = await request(port, get("/api/v1/issues?limit=1000", token), 30)
            statuses.append(status)
            sizes.append(len(body))

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses, sizes


def summary(lat):
    return f"p50 {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/escalade"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    state = tempfile.mkdtemp(prefix="escalade-attack-")
    port = free_port()
    env = dict(
        os.environ,
        ESCALADE_STATE_DIR=state,
        ESCALADE_RULES=os.path.join(ROOT, "examples/city"),
        ESCALADE_LISTEN=f"127.0.0.1:{port}",
        RUST_LOG="warn",
    )
    token = (
        subprocess.run(
            [args.binary, "token", "create", "--role", "admin"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .split()[-1]
    )
    daemon = subprocess.Popen(
        [args.binary, "run"], env=env, stderr=open(os.path.join(state, "log"), "w")
    )
    try:
        for _ in range(100):
            if (await request(port, get("/healthz"), 1))[0] == 200:
                break
            await asyncio.sleep(0.1)
        sampler = Sampler(daemon.pid)
        sampling = asyncio.create_task(sampler.run())
        for _ in range(50):
            await request(port, post("/api/v1/issues", token, ISSUE))
        base = rss_mb(daemon.pid)
        print(f"base after 50 submissions: {base:.0f} MB")
        rows = []

        async def phase(name, coro, describe):
            if time.monotonic() > DEADLINE:
                print(f"{name}: skipped, out of time")
                return
            sampler.reset()
            t = time.monotonic()
            result = await coro
            took = time.monotonic() - t
            await asyncio.sleep(3)
            after = rss_mb(daemon.pid)
            rows.append((name, sampler.peak, after, took, describe(result)))
            print(f"{name}: peak {sampler.peak:.0f} MB, after {after:.0f} MB, {took:.1f} s: {describe(result)}")

        await phase(
            "idle",
            idle_phase(port, token),
            lambda r: f"{r['held']} held; /healthz {summary(r['healthz'][1])} "
            f"(statuses {sorted(set(r['healthz'][0]), key=str)}); "
            f"submission {summary(r['submit'][1])} (statuses {sorted(set(r['submit'][0]), key=str)})",
        )
        await phase("unauth", stalled_bodies(port, None, stall=10), lambda r: f"answers {r}")
        await phase("stalled", stalled_bodies(port, token, send=512 << 10), lambda r: f"answers {r}")
        await phase(
            "uploads",
            uploads(port, token),
            lambda r: f"answers {r[0]}, {r[1] / 1e6:.0f} MB a request",
        )
        await phase(
            "lists",
            lists(port, token),
            lambda r: f"{len(r[0])} lists, statuses {sorted(set(r[0]), key=str)}, "
            f"largest {max(r[1]) / 1e6:.2f} MB",
        )
        sampling.cancel()
        await asyncio.sleep(5)
        print(f"after all: {rss_mb(daemon.pid):.0f} MB (base {base:.0f} MB)")
        print()
        print("| phase | peak RSS | RSS after | took | what was seen |")
        print("|---|---|---|---|---|")
        for name, peak, after, took, what in rows:
            print(f"| {name} | {peak:.0f} MB | {after:.0f} MB | {took:.1f} s | {what} |")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 600))
