#!/usr/bin/env python3
"""Density of deployed-but-idle functions: the server's RSS with N deployed hello functions,
the time to deploy each, and the time to restart with all of them.

Run by benches/deploy/run.sh, which builds wedge and the guests. Usage:

    density.py WEDGE GUEST.wasm --counts 1,100,1000,10000 [--distinct 100] [--out FILE]

Two kinds of deploy are measured, on fresh data dirs:
  same bytes   N functions from one binary, each with its own name, route and env
               (content-addressed: one blob, one compiled artifact, shared code)
  distinct     N functions whose binaries differ (a custom section with the function's
               number is appended), so each is compiled and loaded on its own
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PORT = int(os.environ.get("PORT", "3917"))


def leb128(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def with_custom_section(wasm, index):
    """The same component or module, made distinct by a trailing custom section."""
    name = b"wedge-density"
    payload = leb128(len(name)) + name + str(index).encode()
    return wasm + b"\x00" + leb128(len(payload)) + payload


def rss_kib(pid, field="VmRSS"):
    """Resident memory in KiB: VmRSS (all), RssAnon (heap, anonymous maps) or RssFile
    (mapped files: compiled code mapped from the cache)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


class Server:
    def __init__(self, wedge, data):
        self.wedge, self.data = wedge, data
        self.proc = None

    def start(self):
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [self.wedge, "serve", "--listen", f"127.0.0.1:{PORT}", "--data", self.data,
             "--max-concurrency", "64"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        first = self.proc.stdout.readline()
        listening = time.monotonic() - started
        if not first.startswith("wedge: serving"):
            raise RuntimeError(f"wedge serve did not start: {first!r}")
        # Drain the rest (one line per function) so wedge never blocks on the pipe.
        subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "api-token")) as f:
            self.token = f.read().strip()
        self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
        return listening, first.strip()

    def deploy(self, name, wasm, config):
        boundary = "density-7f3a9c"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n"
            f"{json.dumps(config)}\r\n--{boundary}\r\n"
            f"Content-Disposition: form-data; name=\"wasm\"\r\n\r\n"
        ).encode() + wasm + f"\r\n--{boundary}--\r\n".encode()
        self.conn.request("PUT", f"/_wedge/api/v1/functions/{name}", body, {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        })
        response = self.conn.getresponse()
        text = response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"deploy {name}: {response.status} {text[:300]!r}")

    def get(self, path):
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        return response.status, response.read()

    def rss(self):
        return rss_kib(self.proc.pid)

    def rss_parts(self):
        return {"anon_kib": rss_kib(self.proc.pid, "RssAnon"),
                "file_kib": rss_kib(self.proc.pid, "RssFile")}

    def stop(self):
        self.conn.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def settle():
    time.sleep(1.0)


def measure(wedge, wasm, counts, distinct, label):
    rows = []
    data = tempfile.mkdtemp(prefix="wedge-density-")
    try:
        server = Server(wedge, data)
        server.start()
        settle()
        base = server.rss()
        rows.append({"functions": 0, "rss_kib": base})
        print(f"density: {label}: 0 functions, RSS {base} KiB", file=sys.stderr)
        deployed, times = 0, []
        for count in counts:
            while deployed < count:
                body = with_custom_section(wasm, deployed) if distinct else wasm
                name = f"f{deployed}"
                started = time.monotonic()
                server.deploy(name, body, {"route": f"/{name}", "env": {"N": str(deployed)}})
                times.append(time.monotonic() - started)
                deployed += 1
            status, reply = server.get(f"/f{deployed - 1}")
            assert status == 200, (status, reply)
            settle()
            rss = server.rss()
            window = times[-min(len(times), 100):]
            rows.append({
                "functions": count,
                "rss_kib": rss,
                **server.rss_parts(),
                "per_function_kib": (rss - rows[1]["rss_kib"]) / (count - 1) if count > 1 else None,
                "deploy_ms_median": statistics.median(window) * 1000,
            })
            print(f"density: {label}: {count} functions, RSS {rss} KiB, "
                  f"deploy median {rows[-1]['deploy_ms_median']:.1f} ms (last {len(window)})",
                  file=sys.stderr)
        server.stop()
        # Restart with everything deployed: time until the listener is open (every function
        # restored and linked), and RSS after.
        restarted = Server(wedge, data)
        listening, first = restarted.start()
        status, _ = restarted.get(f"/f{deployed - 1}")
        assert status == 200
        settle()
        restart = {"functions": deployed, "seconds": listening, "rss_kib": restarted.rss(),
                   **restarted.rss_parts(), "line": first}
        print(f"density: {label}: restart with {deployed}: {listening:.2f} s", file=sys.stderr)
        restarted.stop()
        return rows, restart
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("wedge")
    parser.add_argument("guest")
    parser.add_argument("--counts", default="1,100,1000,10000")
    parser.add_argument("--distinct", default="1,100,1000")
    parser.add_argument("--out")
    args = parser.parse_args()
    wasm = open(args.guest, "rb").read()
    results = {"guest": os.path.basename(args.guest), "guest_bytes": len(wasm)}
    counts = [int(c) for c in args.counts.split(",") if c]
    distinct = [int(c) for c in args.distinct.split(",") if c]
    if counts:
        results["same"] = measure(args.wedge, wasm, counts, False, "same bytes")
    if distinct:
        results["distinct"] = measure(args.wedge, wasm, distinct, True, "distinct")
    text = json.dumps(results, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
