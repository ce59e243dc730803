#!/usr/bin/env python3
"""Tiny asyncio TCP proxy that adds about one round trip of latency per request.

    python3 latency_proxy.py --listen 127.0.0.1:PORT2 --target 127.0.0.1:PORT --delay-ms 50

Model: for every client connection, bytes flowing client->server are held for
--delay-ms at the start of each new client "burst" -- the first bytes on the
connection, and the first bytes after the server has sent anything since the
client last wrote (i.e. the next request on a keep-alive HTTP/1.1 connection).
The rest of a burst (e.g. a streamed upload body) and all server->client bytes
are forwarded without delay, so each HTTP request/response exchange costs
about +delay, a streamed body costs it once, and bandwidth is not limited.
A new connection's handshake takes --connect-delay-ms (default: --delay-ms)
from the moment it was accepted: its first request waits until then (plus the
request's own delay), standing in for the TCP handshake round trip. So a
connection opened ahead of need has its handshake behind it when the request
comes, as on a real network.

With --delay-ms 0 the proxy only adds its own copying cost (useful as the
control measurement). Stop it with SIGINT/SIGTERM.

Copied from the shared tools (shared/tools/latency_proxy.py) for benchmarks/wan.py, with type hints and f-strings
(for ruff) and one change to the model: the shared copy charged the handshake at a connection's first request
whenever that came, so a connection opened early (a client preconnecting while a manifest is in flight) paid
it twice over; here it runs from the accept, as a TCP handshake does. A client that opens its connection when
it sends the request sees no difference.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass, field

BUF = 1 << 20


def hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host, int(port)


class Conn:
    """State shared by the two directions of one proxied connection."""

    def __init__(self) -> None:
        self.server_spoke = True  # True -> next client bytes start a new burst
        self.first = True
        self.accepted = time.monotonic()


@dataclass
class Stats:
    conns: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def pump_client_to_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Conn, delay: float, connect_delay: float
) -> None:
    try:
        while True:
            data = await reader.read(BUF)
            if not data:
                break
            if conn.server_spoke:
                conn.server_spoke = False
                handshake_left = conn.accepted + connect_delay - time.monotonic() if conn.first else 0.0
                wait = delay + max(0.0, handshake_left)
                conn.first = False
                if wait > 0:
                    await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def pump_server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Conn) -> None:
    try:
        while True:
            data = await reader.read(BUF)
            if not data:
                break
            conn.server_spoke = True
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def handle(
    creader: asyncio.StreamReader,
    cwriter: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
    connect_delay: float,
    stats: Stats,
) -> None:
    stats.conns += 1
    task = asyncio.current_task()
    assert task is not None
    stats.tasks.add(task)
    try:
        await _handle(creader, cwriter, target, delay, connect_delay)
    except asyncio.CancelledError:
        pass
    finally:
        stats.tasks.discard(task)


async def _handle(
    creader: asyncio.StreamReader,
    cwriter: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
    connect_delay: float,
) -> None:
    try:
        sreader, swriter = await asyncio.open_connection(*target, limit=BUF)
    except OSError as e:
        print(f"connect {target[0]}:{target[1]} failed: {e}", file=sys.stderr)
        cwriter.close()
        return
    conn = Conn()
    try:
        await asyncio.gather(
            pump_client_to_server(creader, swriter, conn, delay, connect_delay),
            pump_server_to_client(sreader, cwriter, conn),
        )
    finally:
        for w in (swriter, cwriter):
            try:
                w.close()
            except Exception:
                pass


async def main_async(args: argparse.Namespace) -> None:
    delay = args.delay_ms / 1000.0
    connect_delay = (args.delay_ms if args.connect_delay_ms is None else args.connect_delay_ms) / 1000.0
    stats = Stats()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.target, delay, connect_delay, stats),
        host=args.listen[0],
        port=args.listen[1],
        limit=BUF,
        reuse_address=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"latency_proxy {args.listen[0]}:{args.listen[1]} -> {args.target[0]}:{args.target[1]} "
        f"delay {delay * 1000:.1f} ms (connect +{connect_delay * 1000:.1f} ms)",
        flush=True,
    )
    async with server:
        await stop.wait()
        server.close()
        for t in list(stats.tasks):
            t.cancel()
        await asyncio.gather(*stats.tasks, return_exceptions=True)
    print(f"latency_proxy: {stats.conns} connections served", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=hostport, required=True, help="HOST:PORT to listen on")
    ap.add_argument("--target", type=hostport, required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="delay per request (client burst), ms")
    ap.add_argument(
        "--connect-delay-ms",
        type=float,
        default=None,
        help="extra delay before a new connection's first request (default: --delay-ms)",
    )
    args = ap.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
