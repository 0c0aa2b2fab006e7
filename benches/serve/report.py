#!/usr/bin/env python3
"""Turn a wrk benchmark's outputs into a Markdown report (stdlib only).

Called by benches/serve/run.sh and benches/state/run.sh with a TSV of results, one line per row:
    name <TAB> label <TAB> "ok" or a failure text <TAB> path of wrk's output (may be empty)
    <TAB> the server's CPU seconds (user + system) during the measured run (may be empty)
The server's CPU per request is that over wrk's request count: on a shared machine it moves
less from run to run than req/s does.
Each `--ratio NAME=HEADER` adds a column: the row's req/s over row NAME's (default: native and
wasmtime, the serve benchmark's). `--note TEXT` adds a line under the table.
Prints the report and writes it to --out.
"""
import argparse
import datetime
import os
import platform
import re
import subprocess
import sys

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unknown latency {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(path):
    """requests/s, p50 ms, p99 ms, and notes (errors, non-2xx) from `wrk --latency` output."""
    text = open(path, encoding="utf-8", errors="replace").read()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise ValueError(f"no Requests/sec in {path}")
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    if "50" not in dist or "99" not in dist:
        raise ValueError(f"no Latency Distribution in {path}")
    notes = []
    total = re.search(r"^\s+(\d+) requests in ([\d.]+\w+)", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        notes.append(f"{non2xx.group(1)} non-2xx/3xx responses")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock and any(int(x) for x in sock.groups()):
        notes.append("socket errors: connect {}, read {}, write {}, timeout {}".format(*sock.groups()))
    return {
        "rps": float(rps.group(1)),
        "p50": to_ms(dist["50"]),
        "p99": to_ms(dist["99"]),
        "requests": int(total.group(1)) if total else None,
        "notes": notes,
    }


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def machine():
    model = ""
    for line in sh("lscpu").splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return f"{model or platform.processor() or 'unknown CPU'}, {os.cpu_count()} CPUs (nproc {sh('nproc').strip()}), Linux {platform.release()}"


def ratio(value, base):
    if value is None or not base:
        return "—"
    return f"{value / base:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--wrk", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="Serve benchmark")
    ap.add_argument("--first-column", default="server")
    ap.add_argument("--ratio", action="append", metavar="NAME=HEADER")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()
    ratios = [r.split("=", 1) for r in (args.ratio or ["native=req/s vs native", "wasmtime=req/s vs wasmtime serve"])]

    rows = []
    for line in open(args.results, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line:
            continue
        name, label, state, wrk_path, cpu = (line.split("\t") + [""] * 5)[:5]
        row = {"name": name, "label": label, "state": state, "data": None, "cpu": None}
        if cpu:
            try:
                row["cpu"] = float(cpu)
            except ValueError:
                row["state"] = f"unreadable CPU time {cpu!r}"
        if wrk_path:
            try:
                row["data"] = parse_wrk(wrk_path)
            except (OSError, ValueError) as e:
                row["state"] = f"unreadable wrk output: {e}"
        rows.append(row)

    def rps_of(name):
        for r in rows:
            if r["name"] == name and r["data"] and r["state"] == "ok":
                return r["data"]["rps"]
        return None

    bases = [(rps_of(name), header) for name, header in ratios]
    out = []
    out.append(f"# {args.title}")
    out.append("")
    out.append(f"- command: `{args.command}`")
    out.append(f"- load: {args.wrk}, one server at a time")
    out.append(f"- machine: {machine()}")
    out.append(f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    out.append("")
    out.append(
        f"| {args.first_column} | req/s | p50 ms | p99 ms | server CPU µs/req | "
        + " | ".join(h for _, h in bases)
        + " |"
    )
    out.append("| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(bases))
    notes = []
    for r in rows:
        d = r["data"]
        if d is None:
            out.append(f"| {r['label']} | {r['state']} | | | |" + " |" * len(bases))
            continue
        rps = d["rps"]
        cpu = "—"
        if r["cpu"] is not None and d["requests"]:
            cpu = f"{r['cpu'] * 1e6 / d['requests']:.1f}"
        out.append(
            f"| {r['label']} | {rps:,.0f} | {d['p50']:.2f} | {d['p99']:.2f} | {cpu} | "
            + " | ".join(ratio(rps, base) for base, _ in bases)
            + " |"
        )
        if r["state"] != "ok":
            notes.append(f"{r['label']}: {r['state']}")
        for n in d["notes"]:
            notes.append(f"{r['label']}: {n} (counted in req/s)")
    notes.extend(args.note)
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {n}" for n in notes)
    out.append("")
    out.append(
        "wrk runs on the same machine as the server (loopback), so both share the CPUs; "
        "compare ratios, not absolute numbers."
    )
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
