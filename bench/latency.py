#!/usr/bin/env python3
"""Session latency of an SMTP server: N one-message sessions, one after the other.

    python3 bench/latency.py --port 2525 --n 300 --mode lockstep
    python3 bench/latency.py --port 2525 --n 100 --mode pipelined
    python3 bench/latency.py --port 2526,2525,2527 --n 300 --steps

Each session is timed from connect() to the reply to QUIT:

- lockstep: greeting, EHLO, MAIL, RCPT, DATA, the body and ".", QUIT, each
  command written only after the reply to the previous one (a client without
  PIPELINING, one round trip per command);
- pipelined: greeting, EHLO, then MAIL, RCPT and DATA in one write, as
  Postfix's smtp client does with a server that announces PIPELINING
  (RFC 2920), then the body and "." in one write, then QUIT. The server must
  announce PIPELINING, or the run fails.

The body is a few header lines and --size bytes of text in 78-character
lines. The client sets TCP_NODELAY: every write is one segment, so what is
measured is the server's own turnaround.

With several ports (--port A,B,C) the sessions alternate between them, one
to each in turn, so that every target is measured over the same stretch of
time (on a shared machine, one measured after the other would not be
comparable).

Prints per port one line of name=value pairs (port, mode, n, errors, p50_ms,
p90_ms, p99_ms, max_ms, mean_ms) and exits 1 if any session failed or the
--deadline passed. With --steps, a second line per port ("steps_p50_ms
port=P …") gives the median time of each step (from the
previous reply to this one: connect+greeting, EHLO, MAIL, RCPT, DATA, the
body's end, QUIT; pipelined: MAIL+RCPT+DATA together), to see which command
a proxy makes slow.

Python standard library only.
"""

import argparse
import socket
import statistics
import sys
import time


class SmtpError(Exception):
    """An unexpected reply or a lost connection."""


class Conn:
    """A client connection with a receive buffer, reading SMTP replies."""

    def __init__(self, host, port, timeout, source=None):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """Reads one (possibly multi-line) reply: (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise SmtpError("connection closed by the server")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                try:
                    return int(line[:3]), lines
                except ValueError:
                    raise SmtpError("garbage reply: %r" % line[:60]) from None

    def expect(self, code, what):
        got, lines = self.reply()
        if got != code:
            raise SmtpError("%s: expected %d, got %r" % (what, code, lines[-1][:120]))
        return lines

    def close(self):
        self.sock.close()


def body(size, sender, rcpt):
    head = (
        "From: <%s>\r\nTo: <%s>\r\nSubject: latency probe\r\n"
        "Message-ID: <probe@latency.test>\r\n\r\n" % (sender, rcpt)
    ).encode()
    line = b"x" * 76 + b"\r\n"
    n, rest = divmod(size, len(line))
    text = line * n + (b"y" * max(rest - 2, 0) + b"\r\n" if rest else b"")
    return head + text + b".\r\n"


def session(args, message, steps):
    """One timed session; returns its duration in seconds. Appends
    (step, seconds since the previous step) to steps."""
    t0 = time.perf_counter()
    last = [t0]

    def step(name):
        now = time.perf_counter()
        steps.append((name, now - last[0]))
        last[0] = now

    c = Conn(args.host, args.port, args.timeout, args.source)
    try:
        c.expect(220, "greeting")
        step("greeting")
        c.send(b"EHLO latency.test\r\n")
        ehlo = c.expect(250, "EHLO")
        step("ehlo")
        mail = b"MAIL FROM:<%s>\r\n" % args.sender.encode()
        rcpt = b"RCPT TO:<%s>\r\n" % args.rcpt.encode()
        if args.mode == "pipelined":
            if not any(l[4:].upper().startswith(b"PIPELINING") for l in ehlo):
                raise SmtpError("the server does not announce PIPELINING")
            c.send(mail + rcpt + b"DATA\r\n")
            c.expect(250, "MAIL")
            c.expect(250, "RCPT")
            c.expect(354, "DATA")
            step("mail+rcpt+data")
        else:
            c.send(mail)
            c.expect(250, "MAIL")
            step("mail")
            c.send(rcpt)
            c.expect(250, "RCPT")
            step("rcpt")
            c.send(b"DATA\r\n")
            c.expect(354, "DATA")
            step("data")
        c.send(message)
        c.expect(250, "end of data")
        step("dot")
        c.send(b"QUIT\r\n")
        c.expect(221, "QUIT")
        step("quit")
    finally:
        c.close()
    return time.perf_counter() - t0


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", required=True,
                    help="port, or ports separated by commas: sessions alternate between them")
    ap.add_argument("--source", help="local address to connect from")
    ap.add_argument("--n", type=int, default=300, help="sessions per port (default 300)")
    ap.add_argument("--mode", choices=["lockstep", "pipelined"], default="lockstep")
    ap.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
    ap.add_argument("--sender", default="sender@load.test")
    ap.add_argument("--rcpt", default="user@bench.test")
    ap.add_argument("--timeout", type=float, default=10.0, help="per socket operation, s")
    ap.add_argument("--deadline", type=float, default=300.0, help="whole run, s")
    ap.add_argument("--steps", action="store_true", help="also print each step's median")
    args = ap.parse_args()
    ports = [int(p) for p in args.port.split(",")]

    message = body(args.size, args.sender, args.rcpt)
    times = {p: [] for p in ports}
    steps = {p: [] for p in ports}
    errors = {p: 0 for p in ports}
    first_error = ""
    stop_at = time.monotonic() + args.deadline
    for _ in range(args.n):
        if time.monotonic() > stop_at:
            for p in ports:
                errors[p] = args.n - len(times[p])
            first_error = first_error or "deadline of %.0f s passed" % args.deadline
            break
        # One session to each port in turn: the targets see the same moments
        # of a noisy machine.
        for p in ports:
            args.port = p
            try:
                times[p].append(session(args, message, steps[p]))
            except (OSError, SmtpError) as e:
                errors[p] += 1
                first_error = first_error or "port %d: %s" % (p, e)
    for p in ports:
        ms = sorted(t * 1000 for t in times[p])
        fields = [
            ("port", p),
            ("mode", args.mode),
            ("n", args.n),
            ("ok", len(ms)),
            ("errors", errors[p]),
            ("p50_ms", "%.3f" % percentile(ms, 50)),
            ("p90_ms", "%.3f" % percentile(ms, 90)),
            ("p99_ms", "%.3f" % percentile(ms, 99)),
            ("max_ms", "%.3f" % (ms[-1] if ms else float("nan"))),
            ("mean_ms", "%.3f" % (statistics.fmean(ms) if ms else float("nan"))),
        ]
        print(" ".join("%s=%s" % f for f in fields))
        if args.steps:
            by = {}
            for name, dt in steps[p]:
                by.setdefault(name, []).append(dt * 1000)
            print("steps_p50_ms port=%d " % p + " ".join(
                "%s=%.3f" % (name, statistics.median(v)) for name, v in by.items()))
    failed = sum(errors.values())
    if failed:
        print("latency: %d session(s) failed; first: %s" % (failed, first_error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
