#!/usr/bin/env python3
"""Round-trip time of one router lookup, as smtpd makes it (or, with
--policy, of one policy question).

    python3 bench/routerprobe.py --socket RUN_DIR/router.sock --n 2000 --domain bench.test

Connects to postern-router's socket (ARCHITECTURE.md, "IPC"), reads its
greeting, then sends --n `request=route` lookups one after the other on that
connection, each an attribute list (name=value lines, an empty line ends it),
and times each from the write to the end of the reply. --pause-ms spaces them
out so that the probe itself adds little load. Every reply must be
`status=ok` (the domain is in the table), else the run fails. SIGTERM
ends the run early (after the lookup in flight) and still prints the figures,
so a caller can time lookups for exactly as long as some load runs.

Prints one line of name=value pairs (n, errors, p50_us, p90_us, p99_us,
max_us, mean_us); exits 1 on any error. Python standard library only.
"""

import argparse
import signal
import socket
import statistics
import sys
import time


def read_message(sock, buf):
    """Reads one attribute list; returns (dict, rest of the buffer)."""
    while b"\n\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("router closed the connection")
        buf += chunk
    msg, rest = buf.split(b"\n\n", 1)
    attrs = {}
    for line in msg.split(b"\n"):
        name, _, value = line.partition(b"=")
        attrs[name.decode()] = value.decode()
    return attrs, rest


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", required=True, help="path of router.sock")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--domain", default="bench.test")
    ap.add_argument("--client", default="127.0.0.1")
    ap.add_argument(
        "--policy",
        metavar="SENDER,RECIPIENT",
        help="time policy questions (request=policy) for this sender and recipient instead of route lookups",
    )
    ap.add_argument("--pause-ms", type=float, default=1.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    args = ap.parse_args()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(args.socket)
    hello, buf = read_message(sock, b"")
    if hello.get("protocol") != "postern-router":
        print("routerprobe: unexpected greeting %r" % hello, file=sys.stderr)
        return 1
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    us, errors, first = [], 0, ""
    stop_at = time.monotonic() + args.deadline
    for i in range(args.n):
        if stopped or time.monotonic() > stop_at:
            break
        if args.policy:
            sender, recipient = args.policy.split(",", 1)
            req = (
                "request=policy\nid=%d\nsid=PROBE%06d\nclient=%s\nsender=%s\nrecipient=%s\n\n"
                % (i, i, args.client, sender, recipient)
            ).encode()
        else:
            req = (
                "request=route\nid=%d\nsid=PROBE%06d\nclient=%s\ndomain=%s\n\n"
                % (i, i, args.client, args.domain)
            ).encode()
        t0 = time.perf_counter()
        sock.sendall(req)
        reply, buf = read_message(sock, buf)
        dt = time.perf_counter() - t0
        # A policy question must be answered, and not refused: the probe's
        # triplet is one that passed greylisting.
        refused = args.policy and reply.get("action") not in ("dunno", "accept")
        if reply.get("status") != "ok" or reply.get("id") != str(i) or refused:
            errors += 1
            first = first or repr(reply)
        else:
            us.append(dt * 1e6)
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000)
    sock.close()
    us.sort()
    fields = [
        ("n", len(us) + errors),
        ("errors", errors),
        ("p50_us", "%.1f" % percentile(us, 50)),
        ("p90_us", "%.1f" % percentile(us, 90)),
        ("p99_us", "%.1f" % percentile(us, 99)),
        ("max_us", "%.1f" % (us[-1] if us else float("nan"))),
        ("mean_us", "%.1f" % (statistics.fmean(us) if us else float("nan"))),
    ]
    print(" ".join("%s=%s" % f for f in fields))
    if errors:
        print("routerprobe: %d failed lookup(s); first: %s" % (errors, first), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
