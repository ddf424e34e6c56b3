#!/usr/bin/env python3
"""Connections an attacker holds open against a running mathrank, as docs/benchmarks.md's
"Connections" table measures them: what happens to each kind, and whether a new client is still
answered meanwhile. Prints one JSON line per scenario. Standard library only.

Usage: bench/connections.py HOST:PORT [--watch SECONDS] [--only NAME,...] [--flood N]
Scenarios: idle (20 sockets that never send a byte), stalled_body (20 POSTs with
Content-Length: 1000 and one byte), preface (20 HTTP/2 prefaces and nothing else), dribble (3,000
requests sending a header line every 4 s), big_header (a 2 MB header), rapid_reset (200 HTTP/2
streams opened and reset at once), flood (N idle sockets, for the connection cap), and probe (a
new client's GET /health and POST /v1/search every 5 s, on a new connection each time).
"""

import argparse
import asyncio
import json
import socket
import statistics
import struct
import time

STALLED_BODY = (b"POST /v1/search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\n\r\n{")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def watch_close(reader, started, watch):
    """Seconds until the server closes the connection (None if still open after `watch`), and
    the first line it sent."""
    first = b""
    deadline = started + watch
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, first
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                return time.monotonic() - started, first
            if not first:
                first = data.split(b"\r\n", 1)[0][:60]
    except asyncio.TimeoutError:
        return None, first
    except (ConnectionError, OSError):
        return time.monotonic() - started, first


def summary(name, results, **extra):
    closed = [t for t, _ in results if t is not None]
    firsts = sorted({f.decode(errors="replace") for _, f in results if f})
    out = {"scenario": name, "connections": len(results), "closed": len(closed),
           "still_open": len(results) - len(closed)}
    if closed:
        out.update(close_s_min=round(min(closed), 1), close_s_median=round(statistics.median(closed), 1),
                   close_s_max=round(max(closed), 1))
    if firsts:
        out["server_said"] = firsts
    out.update(extra)
    print(json.dumps(out), flush=True)


async def hold(host, port, payload, watch, dribble=None):
    # From before the connect: with thousands of connections in one event loop, the connect's
    # completion can be seen seconds late, so this is an upper bound of the time since accept.
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    if payload:
        writer.write(payload)
    if dribble:
        async def drip():
            i = 0
            try:
                while True:
                    await asyncio.sleep(dribble)
                    writer.write(b"x-dribble-%d: y\r\n" % i)
                    i += 1
            except (ConnectionError, OSError):
                pass
        task = asyncio.create_task(drip())
    result = await watch_close(reader, started, watch)
    if dribble:
        task.cancel()
    writer.close()
    return result


async def many(name, count, host, port, payload, watch, dribble=None):
    results = await asyncio.gather(*(hold(host, port, payload, watch, dribble) for _ in range(count)),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    summary(name, [r for r in results if not isinstance(r, BaseException)], connect_errors=len(errors))


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


async def rapid_reset(host, port, streams=200):
    reader, writer = await asyncio.open_connection(host, port)
    # HEADERS: :method GET, :scheme http, :path /health (literal), :authority x (literal).
    block = b"\x82\x86" + b"\x04\x07/health" + b"\x01\x01x"
    out = PREFACE + frame(4, 0, 0)
    for i in range(streams):
        stream = 2 * i + 1
        out += frame(1, 0x4 | 0x1, stream, block) + frame(3, 0, stream, struct.pack(">I", 8))
    writer.write(out)
    started = time.monotonic()
    buffer, goaway = b"", None
    try:
        while goaway is None and time.monotonic() - started < 10:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            buffer += data
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + length:
                    break
                kind, payload = buffer[3], buffer[9:9 + length]
                buffer = buffer[9 + length:]
                if kind == 7:
                    goaway = int.from_bytes(payload[4:8], "big")
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    names = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 11: "ENHANCE_YOUR_CALM"}
    print(json.dumps({"scenario": "rapid_reset", "streams": streams,
                      "goaway": None if goaway is None else names.get(goaway, goaway)}), flush=True)
    writer.close()


async def big_header(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (2 << 20) + b"\r\n\r\n")
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    result = await watch_close(reader, time.monotonic(), 10)
    summary("big_header", [result])
    writer.close()


async def http(host, port, request, timeout=10):
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(request)
        line = await asyncio.wait_for(reader.readline(), timeout)
        writer.close()
        return line.decode(errors="replace").strip(), round((time.monotonic() - started) * 1000, 1)
    except (asyncio.TimeoutError, ConnectionError, OSError) as err:
        return f"failed: {type(err).__name__}", round((time.monotonic() - started) * 1000, 1)


async def probe(host, port, watch, every=5, wait=0):
    body = json.dumps({"query": "Eigenvalues of a triangular matrix", "rerank": False}).encode()
    search = (b"POST /v1/search HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\n\r\n" % len(body)) + body
    health = b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    started = time.monotonic()
    rows = []
    await asyncio.sleep(wait)
    while time.monotonic() - started < watch:
        await asyncio.sleep(every)
        rows.append({"t_s": round(time.monotonic() - started), "health": await http(host, port, health),
                     "search": await http(host, port, search)})
    ok = [r for r in rows if r["health"][0].startswith("HTTP/1.1 200") and r["search"][0].startswith("HTTP/1.1 200")]
    print(json.dumps({"scenario": "probe", "probes": len(rows), "answered": len(ok),
                      "search_ms_median": statistics.median([r["search"][1] for r in ok]) if ok else None,
                      "failures": [r for r in rows if r not in ok][:5]}), flush=True)


def flood(host, port, count, watch):
    """`count` idle sockets, connected as fast as the kernel accepts them (plain blocking
    connects: asyncio's resolver queue would spread them over a minute), then watched."""
    import selectors
    started = time.monotonic()
    selector, opened, errors = selectors.DefaultSelector(), {}, 0
    for _ in range(count):
        try:
            sock = socket.create_connection((host, port), timeout=30)
        except OSError:
            errors += 1
            continue
        sock.setblocking(False)
        opened[sock] = time.monotonic()
        selector.register(sock, selectors.EVENT_READ)
    connected_s = time.monotonic() - started
    results = []
    while opened and time.monotonic() - started < watch:
        for key, _ in selector.select(timeout=1):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                results.append((time.monotonic() - opened.pop(sock), b""))
                selector.unregister(sock)
                sock.close()
    results.extend((None, b"") for _ in opened)
    summary("flood", results, connect_errors=errors, connected_in_s=round(connected_s, 1))


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("addr")
    parser.add_argument("--watch", type=float, default=150)
    parser.add_argument("--only", default="idle,stalled_body,preface,dribble,big_header,rapid_reset,probe")
    parser.add_argument("--flood", type=int, default=0)
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    port = int(port)
    only = set(args.only.split(","))
    jobs = []
    if args.flood:
        jobs.append(asyncio.to_thread(flood, host, port, args.flood, args.watch))
    if "idle" in only:
        jobs.append(many("idle", 20, host, port, b"", args.watch))
    if "stalled_body" in only:
        jobs.append(many("stalled_body", 20, host, port, STALLED_BODY, args.watch))
    if "preface" in only:
        jobs.append(many("preface", 20, host, port, PREFACE, args.watch))
    if "dribble" in only:
        jobs.append(many("dribble", 3000, host, port, b"GET /health HTTP/1.1\r\nhost: x\r\n", args.watch, dribble=4))
    if "big_header" in only:
        jobs.append(big_header(host, port))
    if "rapid_reset" in only:
        jobs.append(rapid_reset(host, port))
    if "probe" in only:
        jobs.append(probe(host, port, args.watch))
    await asyncio.gather(*jobs)


if __name__ == "__main__":
    asyncio.run(main())
