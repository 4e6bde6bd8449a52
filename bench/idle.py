#!/usr/bin/env python3
"""Memory of a proxy holding many idle SMTP sessions.

    python3 bench/idle.py --port 2525 --n 10000 --pid MASTER_PID

Opens --n connections to the server, from --sources loopback addresses in
turn (127.0.0.2, 127.0.0.3, …: each source address has its own ephemeral
ports, so 10,000 connections never exhaust them), in batches, and reads each
one's greeting: a session that got its 220 is open and idle (it sends
nothing more). Once all are open it holds them --hold seconds, checks that a
sample still answers NOOP with 250, then reads VmRSS, VmHWM, RssAnon and
PSS of the process --pid and of all its descendants from /proc, and closes
everything.

Prints one line of name=value pairs (n, greeted, refused, failed, alive,
rss_kb total, hwm_kb total, anon_kb and pss_kb totals,
per_process=comm:pid:rss_kb,…) and exits 1 unless
every connection was greeted and the sample answered. Bounded: --deadline
seconds for the whole run. Raises its own RLIMIT_NOFILE (root may raise the
hard limit too). Python standard library only.
"""

import argparse
import os
import resource
import selectors
import socket
import sys
import time


def descendants(pid):
    """pid and every process below it, from /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory(pid):
    """(comm, VmRSS kB, VmHWM kB, RssAnon kB, Pss kB) of one process.

    RssAnon is what the process allocated itself (heap, stacks), without the
    pages of its program and libraries it has mapped; Pss counts each shared
    page as a share among the processes that map it (0 when the kernel does
    not say)."""
    comm, rss, hwm, anon, pss = "?", 0, 0, 0, 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Name:"):
                comm = line.split()[1]
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return comm, rss, hwm, anon, pss


def read_greetings(socks, timeout):
    """Waits for the first reply line on every socket: {sock: code or None}."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    codes = {}
    end = time.monotonic() + timeout
    while len(codes) < len(socks) and time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                codes[s] = None
                sel.unregister(s)
                continue
            bufs[s] += data
            if b"\r\n" in bufs[s]:
                line = bufs[s].split(b"\r\n", 1)[0]
                codes[s] = int(line[:3]) if line[:3].isdigit() else None
                sel.unregister(s)
    sel.close()
    for s in socks:
        codes.setdefault(s, None)
    return codes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--sources", type=int, default=10,
                    help="number of source addresses 127.0.0.2… (default 10)")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds to hold them open")
    ap.add_argument("--sample", type=int, default=100, help="sessions checked with NOOP")
    ap.add_argument("--pid", type=int, required=True, help="the proxy's main process")
    ap.add_argument("--deadline", type=float, default=180.0)
    args = ap.parse_args()

    want = args.n + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))

    stop_at = time.monotonic() + args.deadline
    held, refused, failed = [], 0, 0
    try:
        i = 0
        while i < args.n and time.monotonic() < stop_at:
            batch = []
            for j in range(i, min(i + args.batch, args.n)):
                src = "127.0.0.%d" % (2 + j % args.sources)
                try:
                    batch.append(socket.create_connection(
                        (args.host, args.port), timeout=10, source_address=(src, 0)))
                except OSError:
                    failed += 1
            i += args.batch
            codes = read_greetings(batch, max(1.0, min(20.0, stop_at - time.monotonic())))
            for s, code in codes.items():
                if code == 220:
                    held.append(s)
                else:
                    if code is not None and code >= 400:
                        refused += 1
                    else:
                        failed += 1
                    s.close()
        time.sleep(args.hold)
        # A sample of the oldest sessions must still be alive and answering.
        alive = 0
        sample = held[: args.sample]
        for s in sample:
            s.setblocking(True)
            s.settimeout(10)
            try:
                s.sendall(b"NOOP\r\n")
                if s.recv(4096).startswith(b"250"):
                    alive += 1
            except OSError:
                pass
        procs = []
        for p in descendants(args.pid):
            try:
                procs.append((p,) + memory(p))
            except OSError:
                pass
    finally:
        for s in held:
            s.close()
    rss = sum(p[2] for p in procs)
    hwm = sum(p[3] for p in procs)
    anon = sum(p[4] for p in procs)
    pss = sum(p[5] for p in procs)
    per = ",".join("%s:%d:%d" % (c, p, r) for p, c, r, _, _, _ in procs)
    print("n=%d greeted=%d refused=%d failed=%d alive=%d/%d rss_kb=%d hwm_kb=%d "
          "anon_kb=%d pss_kb=%d per_process=%s"
          % (args.n, len(held), refused, failed, alive, len(sample), rss, hwm, anon, pss, per))
    ok = len(held) == args.n and alive == len(sample)
    if not ok:
        print("idle: not every session was opened and alive", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
