#!/usr/bin/env python3
"""Summary of one bench/run CSV as a Markdown fragment.

    python3 bench/summary.py bench/out/RUN.csv > bench/out/RUN.md

Medians over repetitions; every ratio is taken within one repetition (the
trials of a repetition ran back to back) and the median of those ratios is
shown. Failed trials (ok=0) are left out of the figures and listed at the
end. Then the issue's targets, each with the figure it is judged on.
Python standard library only.
"""

import argparse
import csv
import statistics
import subprocess
import sys
from collections import defaultdict

THROUGHPUT = [
    ("seq1", "`-s 1 -m 1000 -l 1024` (sequential, 1 msg/conn)"),
    ("s100", "`-s 100 -m 4000 -l 1024` (100 sessions, 1 msg/conn)"),
    ("s100d", "`-s 100 -m 10000 -l 1024 -d` (100 msgs/conn)"),
    ("s20big", "`-s 20 -m 1000 -l 102400` (100 KB)"),
]


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN: not measured


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0, suffix=""):
    if v is None:
        return "–"
    return "{:,.{}f}{}".format(v, digits, suffix)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class Run:
    def __init__(self, rows):
        self.rows = rows
        # (config, rep, target) → row
        self.by = {(r["config"], r["rep"], r["target"]): r for r in rows}
        self.reps = sorted({r["rep"] for r in rows}, key=int)

    def ok(self, config, target):
        return [r for r in self.rows if r["config"] == config and r["target"] == target and r["ok"] == "1"]

    def median(self, config, target, field):
        return med(num(r[field]) for r in self.ok(config, target))

    def peak(self, config, target, field):
        vals = [num(r[field]) for r in self.ok(config, target) if num(r[field])]
        return max(vals) if vals else None

    def ratio(self, config, a, b, field, invert=False):
        """Median over repetitions of a/b (both trials ok, same repetition)."""
        out = []
        for rep in self.reps:
            ra, rb = self.by.get((config, rep, a)), self.by.get((config, rep, b))
            if not ra or not rb or ra["ok"] != "1" or rb["ok"] != "1":
                continue
            va, vb = num(ra[field]), num(rb[field])
            if va and vb:
                out.append(vb / va if invert else va / vb)
        return med(out)

    def count(self, config, target):
        return len(self.ok(config, target)), len(
            [r for r in self.rows if r["config"] == config and r["target"] == target])


def cpu_split_table(run, configs, p):
    """CPU per message of each proxy, and how much of it is the kernel's."""
    p("#### CPU per message: user + system, and the kernel's share")
    p()
    p("| configuration | postern: all / system | nginx: all / system | HAProxy: all / system "
      "| postern / nginx | postern / HAProxy | 0.8 × nginx |")
    p("|---|---|---|---|---|---|---|")
    for c, label in THROUGHPUT:
        if c not in configs:
            continue
        cells = [label]
        for t in ("postern", "nginx", "haproxy"):
            cells.append("%s / %s" % (fmt(run.median(c, t, "cpu_us_per_msg")),
                                      fmt(run.median(c, t, "sys_us_per_msg"))))
        cells.append(fmt(run.ratio(c, "postern", "nginx", "cpu_us_per_msg"), 2))
        cells.append(fmt(run.ratio(c, "postern", "haproxy", "cpu_us_per_msg"), 2))
        n = run.median(c, "nginx", "cpu_us_per_msg")
        cells.append(fmt(0.8 * n if n else None))
        p("| " + " | ".join(cells) + " |")
    p()
    p("µs per message (medians); system: the proxy's kernel time (/proc/PID/stat stime), "
      "the system calls and the loopback TCP and wake-ups they cause. Ratios: medians "
      "of per-repetition ratios of all CPU.")
    p()


def compare(run, rev, configs):
    """bench/run --compare REV: this tree's postern against REV's, paired."""
    p = print
    p("### This tree against %s (postern-base), paired" % rev)
    p()
    p("Ratios: median over repetitions of this tree / the base, same repetition "
      "(below 1: this tree uses less).")
    p()
    p("| configuration | messages/s: this / base (ratio) | CPU µs/msg: this / base (ratio) "
      "| smtpd | router | master | trials ok |")
    p("|---|---|---|---|---|---|---|")
    for c, label in THROUGHPUT:
        if c not in configs:
            continue
        a, b = "postern", "postern-base"
        per = []
        for field in ("smtpd_cpu_us_per_msg", "router_cpu_us_per_msg", "master_cpu_us_per_msg"):
            per.append("%s / %s" % (fmt(run.median(c, a, field)), fmt(run.median(c, b, field))))
        p("| %s | %s / %s (%s) | %s / %s (%s) | %s | %s/%s, %s/%s |" % (
            label, fmt(run.median(c, a, "msgs_per_s")), fmt(run.median(c, b, "msgs_per_s")),
            fmt(run.ratio(c, a, b, "msgs_per_s"), 2),
            fmt(run.median(c, a, "cpu_us_per_msg")), fmt(run.median(c, b, "cpu_us_per_msg")),
            fmt(run.ratio(c, a, b, "cpu_us_per_msg"), 2),
            " | ".join(per), *run.count(c, a), *run.count(c, b)))
    if "idle" in configs:
        p()
        p("| idle sessions | total RSS, all processes: this / base (ratio) | largest smtpd | trials ok |")
        p("|---|---|---|---|")
        a, b = "postern", "postern-base"
        mb = lambda v: fmt(v / 1024 if v else None, 1, " MB")
        flags = next((r["flags"] for r in run.rows if r["config"] == "idle"), "")
        p("| `%s` | %s / %s (%s) | %s / %s | %s/%s, %s/%s |" % (
            flags, mb(run.median("idle", a, "proxy_rss_kb")),
            mb(run.median("idle", b, "proxy_rss_kb")),
            fmt(run.ratio("idle", a, b, "proxy_rss_kb"), 2),
            mb(run.median("idle", a, "smtpd_hwm_kb")), mb(run.median("idle", b, "smtpd_hwm_kb")),
            *run.count("idle", a), *run.count("idle", b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--quick", default="no")
    ap.add_argument("--compare", default="")
    args = ap.parse_args()
    with open(args.csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print("no trial in %s" % args.csv)
        return 1
    run = Run(rows)
    p = print
    run_id = rows[0]["run"]
    p("## Run %s: %d repetition(s)" % (run_id, len(run.reps)))
    p()
    if args.quick == "yes":
        p("**Smoke run (`--quick`: small counts, 1 repetition) on a shared, busy "
          "machine — not the reference figures.**")
        p()
    p("Machine: %s; %s CPUs; kernel %s; postfix %s; %s; %s; postern %s." % (
        sh("lscpu | sed -n 's/^Model name: *//p'") or "?", sh("nproc") or "?",
        sh("uname -r") or "?", sh("dpkg-query -W -f='${Version}' postfix") or "?",
        sh("nginx -v 2>&1 | sed 's/^nginx version: //'") or "nginx ?",
        sh("rustc -V") or "rustc ?",
        sh("git -C \"$(dirname %s)/..\" describe --always --dirty 2>/dev/null" % args.csv) or "?"))
    p("Load average at the end: %s." % (sh("cut -d' ' -f1-3 /proc/loadavg") or "?"))
    p()

    configs = {r["config"] for r in rows}
    if args.compare:
        compare(run, args.compare, configs)
        return 0
    if configs & {c for c, _ in THROUGHPUT}:
        p("### Throughput (messages/s; in brackets the median of per-repetition ratios to direct)")
        p()
        p("| configuration | direct | postern | nginx | postern / nginx | CPU µs/msg postern | nginx "
          "| peak RSS per smtpd | per nginx worker | trials ok |")
        p("|---|---|---|---|---|---|---|---|---|---|")
        for c, label in THROUGHPUT:
            if c not in configs:
                continue
            d = run.median(c, "direct", "msgs_per_s")
            cells = [label, fmt(d)]
            for t in ("postern", "nginx"):
                cells.append("%s (%s)" % (fmt(run.median(c, t, "msgs_per_s")),
                                          fmt(run.ratio(c, t, "direct", "msgs_per_s"), 2)))
            cells.append(fmt(run.ratio(c, "postern", "nginx", "msgs_per_s"), 2))
            cells.append(fmt(run.median(c, "postern", "cpu_us_per_msg")))
            cells.append(fmt(run.median(c, "nginx", "cpu_us_per_msg")))
            for t in ("postern", "nginx"):
                v = run.peak(c, t, "smtpd_hwm_kb")
                cells.append(fmt(v / 1024 if v else None, 1, " MB"))
            oks = [run.count(c, t) for t in ("direct", "postern", "nginx")]
            cells.append("%d/%d" % (sum(o[0] for o in oks), sum(o[1] for o in oks)))
            p("| " + " | ".join(cells) + " |")
        p()
        p("CPU µs/msg: user + system time of all the proxy's processes during the load "
          "(/proc/PID/stat of master and workers) / messages. Peak RSS: largest VmHWM "
          "of a postern-smtpd (an nginx worker), reset before the load.")
        p()
        if any(r["target"] == "haproxy" for r in rows):
            p("#### The floor: a relay of bytes (HAProxy, `mode tcp`, 2 threads)")
            p()
            p("| configuration | direct | HAProxy TCP (ratio to direct) | postern / HAProxy "
              "| nginx / HAProxy | CPU µs/msg HAProxy | trials ok |")
            p("|---|---|---|---|---|---|---|")
            for c, label in THROUGHPUT:
                if c not in configs or not run.count(c, "haproxy")[1]:
                    continue
                ok, all_ = run.count(c, "haproxy")
                p("| %s | %s | %s (%s) | %s | %s | %s | %d/%d |" % (
                    label, fmt(run.median(c, "direct", "msgs_per_s")),
                    fmt(run.median(c, "haproxy", "msgs_per_s")),
                    fmt(run.ratio(c, "haproxy", "direct", "msgs_per_s"), 2),
                    fmt(run.ratio(c, "postern", "haproxy", "msgs_per_s"), 2),
                    fmt(run.ratio(c, "nginx", "haproxy", "msgs_per_s"), 2),
                    fmt(run.median(c, "haproxy", "cpu_us_per_msg")), ok, all_))
            p()
            p("HAProxy relays bytes without reading SMTP: no parsing, no routing, no "
              "accounting, one backend connection per client connection. It is the least "
              "work any proxy in the path can do, so its ratio to direct bounds what any "
              "proxy can reach on this machine.")
            p()
        if any(r.get("sys_us_per_msg") for r in rows):
            cpu_split_table(run, configs, p)

    if configs & {"lockstep", "pipelined"}:
        p("### Session latency (ms; median over repetitions of each run's p50 and p99; "
          "ratio = p50 / direct's p50, same repetition)")
        p()
        p("| client | direct p50 / p99 | postern p50 / p99 (ratio) | nginx p50 / p99 (ratio) "
          "| HAProxy p50 / p99 (ratio) |")
        p("|---|---|---|---|---|")
        for c, label in (("lockstep", "lock-step (one command at a time)"),
                         ("pipelined", "pipelined (MAIL+RCPT+DATA in one write)")):
            if c not in configs:
                continue
            cells = [label, "%s / %s" % (fmt(run.median(c, "direct", "p50_ms"), 3),
                                         fmt(run.median(c, "direct", "p99_ms"), 3))]
            for t in ("postern", "nginx", "haproxy"):
                cells.append("%s / %s (%s)" % (
                    fmt(run.median(c, t, "p50_ms"), 3), fmt(run.median(c, t, "p99_ms"), 3),
                    fmt(run.ratio(c, t, "direct", "p50_ms"), 2)))
            p("| " + " | ".join(cells) + " |")
        p()
        p("Where the time goes (median over repetitions of each step's median, ms; a step runs "
          "from the previous reply to its own; greeting includes connect):")
        p()
        for c in ("lockstep", "pipelined"):
            steps = defaultdict(lambda: defaultdict(list))
            names = []
            for r in rows:
                if r["config"] != c or r["ok"] != "1" or not r.get("steps"):
                    continue
                for kv in r["steps"].split():
                    k, _, v = kv.partition("=")
                    if k not in names:
                        names.append(k)
                    steps[r["target"]][k].append(num(v))
            if not names:
                continue
            p("| %s | %s |" % (c, " | ".join(names)))
            p("|---|" + "---|" * len(names))
            for t in ("direct", "postern", "nginx", "haproxy"):
                if t in steps:
                    p("| %s | %s |" % (t, " | ".join(fmt(med(steps[t][k]), 3) for k in names)))
            p()

    if "router" in configs:
        p("### Router lookups (s100's load; one server holding 1 or 100,000 domains)")
        p()
        p("| routing table | messages/s (ratio to direct) | route lookup p50 / p99 under load | "
          "lookup / session time | CPU µs/msg: all postern / router | trials ok |")
        p("|---|---|---|---|---|---|")
        shares = {}
        for t, label in (("direct", "— (direct)"), ("postern-1dom", "1 domain"),
                         ("postern-100k", "100,000 domains"),
                         ("postern-100k-alias", "1 domain, 100,000 aliases (the load's recipient one)")):
            rate = run.median("router", t, "msgs_per_s")
            share_list = []
            for r in run.ok("router", t):
                pr, ra = num(r["probe_p50_us"]), num(r["msgs_per_s"])
                if pr and ra:
                    # 100 sessions in flight, one message each: a session lasts 100 / rate s.
                    share_list.append(pr / (100 / ra * 1e6))
            shares[t] = med(share_list)
            ok, n = run.count("router", t)
            p("| %s | %s (%s) | %s | %s | %s | %d/%d |" % (
                label, fmt(rate), fmt(run.ratio("router", t, "direct", "msgs_per_s"), 2)
                if t != "direct" else "1",
                "–" if t == "direct" else "%s / %s µs" % (
                    fmt(run.median("router", t, "probe_p50_us")),
                    fmt(run.median("router", t, "probe_p99_us"))),
                fmt(shares[t] * 100 if shares[t] is not None else None, 1, " %"),
                "–" if t == "direct" else "%s / %s" % (
                    fmt(run.median("router", t, "cpu_us_per_msg")),
                    fmt(run.median("router", t, "router_cpu_us_per_msg"))), ok, n))
        p()
        big = run.ratio("router", "postern-100k", "postern-1dom", "msgs_per_s")
        alias_cpu = run.ratio("router", "postern-100k-alias", "postern-1dom", "cpu_us_per_msg")
        p("100,000 domains vs 1: throughput ratio %s. Lookup / session time: the route lookup's "
          "round trip (bench/routerprobe.py on router.sock, p50, during the load) over the mean "
          "session time (100 / messages per second). A session waits for at most one router "
          "call: the route of its RCPT's domain, which smtpd keeps 5 s (the connection "
          "count runs while the greeting and EHLO are exchanged)." % fmt(big, 3))
        p()
        p("100,000 aliases, every RCPT expanded, vs no alias: CPU per message ratio %s "
          "(the same trial's probe asks for the domain, without an alias)." % fmt(alias_cpu, 3))
        p()

    if "reload" in configs:
        p("### Reload under load (latency.py lock-step while smtp-source -s 100 runs; "
          "100,000-domain table)")
        p()
        p("| | p50 ms | p99 ms | p99 / steady p99 | peak RSS per smtpd | notes |")
        p("|---|---|---|---|---|---|")
        for t, label in (("postern-steady", "no reload"), ("postern-reload", "`postern reload` every second")):
            notes = "; ".join(sorted({r["note"] for r in run.ok("reload", t) if r["note"]}))
            v = run.peak("reload", t, "smtpd_hwm_kb")
            p("| %s | %s | %s | %s | %s | %s |" % (
                label, fmt(run.median("reload", t, "p50_ms"), 2), fmt(run.median("reload", t, "p99_ms"), 2),
                fmt(run.ratio("reload", t, "postern-steady", "p99_ms"), 2),
                fmt(v / 1024 if v else None, 1, " MB"), notes or "–"))
        p()

    if "policy" in configs:
        p("### Policy (s100's load; 10,000 access entries, four restrictions, two blocklist zones)")
        p()
        p("| policy | messages/s | CPU µs/msg: all postern / router | trials ok |")
        p("|---|---|---|---|")
        for t, label in (("postern", "off"), ("postern-policy", "on"),
                         ("postern-greylist", "on, with greylisting (1,000,000 triplets)"),
                         ("postern-greylist-redis", "on, with greylisting on Redis (1,000,000 triplets)")):
            ok, n = run.count("policy", t)
            p("| %s | %s | %s / %s | %d/%d |" % (
                label, fmt(run.median("policy", t, "msgs_per_s")),
                fmt(run.median("policy", t, "cpu_us_per_msg")),
                fmt(run.median("policy", t, "router_cpu_us_per_msg")), ok, n))
        p()
        p50, p99 = run.median("policy", "postern-greylist", "probe_p50_us"), run.median(
            "policy", "postern-greylist", "probe_p99_us")
        p("A policy decision under this load, greylisting on (bench/routerprobe.py --policy on "
          "router.sock, the load's own passed triplet): p50 %s µs, p99 %s µs." % (fmt(p50), fmt(p99)))
        r50, r99 = run.median("policy", "postern-greylist-redis", "probe_p50_us"), run.median(
            "policy", "postern-greylist-redis", "probe_p99_us")
        p("The same with the Redis store: p50 %s µs, p99 %s µs." % (fmt(r50), fmt(r99)))
        p()

    if "idle" in configs:
        p("### Idle sessions (bench/idle.py; limits raised for this trial)")
        p()
        p("| target | sessions open | total RSS, all processes | largest worker | trials ok |")
        p("|---|---|---|---|---|")
        for t in ("postern", "nginx"):
            ok, n = run.count("idle", t)
            if not n:
                continue
            rss = run.median("idle", t, "proxy_rss_kb")
            w = run.median("idle", t, "smtpd_hwm_kb")
            p("| %s | %s | %s | %s | %d/%d |" % (
                t, fmt(run.median("idle", t, "arrived")), fmt(rss / 1024 if rss else None, 1, " MB"),
                fmt(w / 1024 if w else None, 1, " MB"), ok, n))
        p()

    # The targets.
    p("### Targets")
    p()
    p("| target | measured | met |")
    p("|---|---|---|")

    def target(label, value, ok, digits=2, suffix=""):
        if value is None:
            p("| %s | – | not measured |" % label)
        else:
            p("| %s | %s | %s |" % (label, fmt(value, digits, suffix), "yes" if ok(value) else "**no**"))

    # Performance round 2: per configuration, CPU per message at most 0.8 ×
    # nginx's and at most HAProxy's, messages/s at least both of theirs.
    for c, label in THROUGHPUT:
        if c not in configs:
            continue
        target("%s: CPU per message ≤ 0.8 × nginx" % c,
               run.ratio(c, "postern", "nginx", "cpu_us_per_msg"), lambda v: v <= 0.8)
        target("%s: CPU per message ≤ HAProxy" % c,
               run.ratio(c, "postern", "haproxy", "cpu_us_per_msg"), lambda v: v <= 1)
        target("%s: messages/s ≥ nginx" % c,
               run.ratio(c, "postern", "nginx", "msgs_per_s"), lambda v: v >= 1)
        target("%s: messages/s ≥ HAProxy" % c,
               run.ratio(c, "postern", "haproxy", "msgs_per_s"), lambda v: v >= 1)
    target("lock-step p50 ≤ 1.15 × direct", run.ratio("lockstep", "postern", "direct", "p50_ms"),
           lambda v: v <= 1.15)
    target("pipelined p50 ≤ 1.25 × direct", run.ratio("pipelined", "postern", "direct", "p50_ms"),
           lambda v: v <= 1.25)
    peaks = [run.peak(c, "postern", "smtpd_hwm_kb") for c, _ in THROUGHPUT]
    peaks = [v for v in peaks if v]
    target("memory ≤ 16 MB per smtpd under load", max(peaks) / 1024 if peaks else None,
           lambda v: v <= 16, 1, " MB")
    rss = run.median("idle", "postern", "proxy_rss_kb")
    target("10,000 idle sessions ≤ 40 MB in all", rss / 1024 if rss else None, lambda v: v <= 40, 1, " MB")
    if "router" in configs:
        s = shares.get("postern-100k")
        target("router lookup < 5 % of session time (100,000 domains, 100 sessions)",
               s * 100 if s is not None else None, lambda v: v < 5, 1, " %")
    target("with the policy on, CPU per message ≤ 1.15 × policy off",
           run.ratio("policy", "postern-policy", "postern", "cpu_us_per_msg"), lambda v: v <= 1.15)
    p99 = run.median("policy", "postern-greylist", "probe_p99_us")
    target("a policy decision's p99 under s100's load < 1 ms (embedded store, 1,000,000 triplets)",
           p99 / 1000 if p99 else None, lambda v: v < 1, 3, " ms")
    r99 = run.median("policy", "postern-greylist-redis", "probe_p99_us")
    target("a policy decision's p99 under s100's load < 2 ms (Redis store over loopback)",
           r99 / 1000 if r99 else None, lambda v: v < 2, 3, " ms")
    target("with greylisting on too, CPU per message ≤ 1.15 × policy off",
           run.ratio("policy", "postern-greylist", "postern", "cpu_us_per_msg"), lambda v: v <= 1.15)
    target("p99 with reloads ≤ 2 × p99 without", run.ratio("reload", "postern-reload", "postern-steady", "p99_ms"),
           lambda v: v <= 2)
    p()

    bad = [r for r in rows if r["ok"] != "1" or (r["warnings"] not in ("", "0"))]
    if bad:
        p("### Trials that failed or logged warnings")
        p()
        for r in bad:
            p("- %s rep %s %s: %s%s" % (r["config"], r["rep"], r["target"],
                                       "ok" if r["ok"] == "1" else "**failed**",
                                       ", %s warning line(s)" % r["warnings"] if r["warnings"] not in ("", "0") else "")
              + (" — " + r["note"] if r["note"] else ""))
        p()
    return 0


if __name__ == "__main__":
    sys.exit(main())
