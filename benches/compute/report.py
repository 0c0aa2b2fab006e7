#!/usr/bin/env python3
"""Time the compute benchmarks natively, under wedge and under wasmtime and
print a Markdown report. Called by run.sh (which installs and builds
everything); standard library only.

Positional arguments are NAME=N pairs; binaries are expected at
OUT/native/NAME and OUT/wasm/NAME.wasm, the start-up program at
OUT/startup/hello{,.wasm}.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

RUNNERS = ("native", "wedge", "wasmtime")


def log(msg):
    print(f"report.py: {msg}", file=sys.stderr, flush=True)


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if out.returncode == 0 and text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info():
    model = "?"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model, os.cpu_count(), platform.release()


def sha256_of_stdout(cmd):
    """Run cmd, stream its stdout into sha256. Returns (returncode, hexdigest, stderr)."""
    h = hashlib.sha256()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        while True:
            chunk = proc.stdout.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
        rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return rc, h.hexdigest(), stderr


def time_once(cmd):
    start = time.perf_counter()
    rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - start, rc


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt(x, digits=3):
    return "fail" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None else a / b


def compute_table(args, programs):
    cmds = {}
    for name, n in programs:
        wasm = os.path.join(args.out, "wasm", f"{name}.wasm")
        cmds[name] = {
            "native": [os.path.join(args.out, "native", name), n],
            "wedge": [args.wedge, "run", wasm, n],
            "wasmtime": [args.wasmtime, "run", wasm, n],
        }

    failed = {}  # (name, runner) -> reason
    # Correctness check; it is also the warm-up run that fills both runtimes'
    # compilation caches.
    for name, n in programs:
        ref = None
        for runner in RUNNERS:
            log(f"check {name} {n} ({runner})")
            rc, digest, stderr = sha256_of_stdout(cmds[name][runner])
            if rc != 0:
                failed[(name, runner)] = f"exit status {rc}: {stderr.strip()[-300:]}"
            elif runner == "native":
                ref = digest
            elif digest != ref:
                failed[(name, runner)] = f"stdout sha256 {digest[:16]} differs from native {str(ref)[:16]}"
            if (name, runner) in failed:
                log(f"  FAILED: {failed[(name, runner)]}")

    times = {(name, r): [] for name, _ in programs for r in RUNNERS}
    for i in range(args.runs):
        for name, n in programs:
            # alternate native / wedge / wasmtime so drift hits all alike
            for runner in RUNNERS:
                if (name, runner) in failed:
                    continue
                t, rc = time_once(cmds[name][runner])
                if rc != 0:
                    failed[(name, runner)] = f"exit status {rc} in timed run"
                    continue
                times[(name, runner)].append(t)
        log(f"round {i + 1}/{args.runs} done")

    def med(name, runner):
        if (name, runner) in failed or not times[(name, runner)]:
            return None
        return statistics.median(times[(name, runner)])

    lines = [
        f"## Compute (median of {args.runs} runs, wall seconds, stdout to /dev/null)",
        "",
        "Every program was first run once per runner, its stdout checked against native (sha256);",
        "that run also filled wedge's and wasmtime's compilation caches. Timed runs alternate",
        "native / wedge / wasmtime.",
        "",
        "| program | N | native s | wedge s | wasmtime s | wedge/native | wasmtime/native | wedge/wasmtime |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    cols = {k: [] for k in ("native", "wedge", "wasmtime", "wn", "tn", "wt")}
    for name, n in programs:
        nat, wed, wt = med(name, "native"), med(name, "wedge"), med(name, "wasmtime")
        row = {"native": nat, "wedge": wed, "wasmtime": wt,
               "wn": ratio(wed, nat), "tn": ratio(wt, nat), "wt": ratio(wed, wt)}
        for k, v in row.items():
            cols[k].append(v)
        lines.append(f"| {name} | {n} | {fmt(nat)} | {fmt(wed)} | {fmt(wt)} | "
                     f"{fmt(row['wn'], 2)} | {fmt(row['tn'], 2)} | {fmt(row['wt'], 2)} |")
    g = {k: geomean(v) for k, v in cols.items()}
    lines.append(f"| **geometric mean** | | {fmt(g['native'])} | {fmt(g['wedge'])} | "
                 f"{fmt(g['wasmtime'])} | {fmt(g['wn'], 2)} | {fmt(g['tn'], 2)} | {fmt(g['wt'], 2)} |")
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- {name} under {runner}: {why}" for (name, runner), why in sorted(failed.items())]
    return lines, bool(failed)


def hyperfine_median(cmd, runs, json_path):
    """Median wall time (s) of cmd over `runs` runs, or (None, reason)."""
    rc, digest, stderr = sha256_of_stdout(cmd)
    if rc != 0:
        return None, f"exit status {rc}: {stderr.strip()[-300:]}"
    hf = ["hyperfine", "-N", "--style", "none", "--runs", str(runs), "--warmup", "3",
          "--export-json", json_path, shlex.join(cmd)]
    out = subprocess.run(hf, capture_output=True, text=True)
    if out.returncode != 0:
        return None, f"hyperfine failed: {out.stderr.strip()[-300:]}"
    with open(json_path) as f:
        result = json.load(f)["results"][0]
    return (statistics.median(result["times"]), min(result["times"])), digest


def startup_table(args):
    d = os.path.join(args.out, "startup")
    native = os.path.join(d, "hello")
    wasm = os.path.join(d, "hello.wasm")
    wedge_cwasm = os.path.join(d, "hello.wedge.cwasm")
    wasmtime_cwasm = os.path.join(d, "hello.wasmtime.cwasm")

    problems = []
    for what, cmd, out in (("wedge compile", [args.wedge, "compile", wasm, "-o", wedge_cwasm], wedge_cwasm),
                           ("wasmtime compile", [args.wasmtime, "compile", wasm, "-o", wasmtime_cwasm],
                            wasmtime_cwasm)):
        if os.path.exists(out):
            os.unlink(out)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"{what} failed: {r.stderr.strip()[-300:]}")

    rows = [
        ("native", [native]),
        ("wedge run hello.wasm (cached)", [args.wedge, "run", wasm]),
        ("wedge run hello.cwasm", [args.wedge, "run", *shlex.split(args.wedge_cwasm_flags), wedge_cwasm]),
        ("wasmtime run hello.wasm (cached)", [args.wasmtime, "run", wasm]),
        ("wasmtime run --allow-precompiled hello.cwasm",
         [args.wasmtime, "run", "--allow-precompiled", wasmtime_cwasm]),
    ]
    results = []
    native_med = None
    for i, (label, cmd) in enumerate(rows):
        log(f"start-up: {label}")
        res, info = hyperfine_median(cmd, args.startup_runs, os.path.join(d, f"hyperfine-{i}.json"))
        if res is None:
            problems.append(f"{label}: {info}")
            results.append((label, None, None))
            continue
        med, mn = res
        if i == 0:
            native_med = med
        results.append((label, med, mn))

    lines = [
        f"## Process start-up: hello (hyperfine -N, {args.startup_runs} runs after 3 warm-up runs)",
        "",
        "| command | median ms | min ms | vs native |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, med, mn in results:
        ms = lambda x: None if x is None else x * 1000
        lines.append(f"| {label} | {fmt(ms(med), 2)} | {fmt(ms(mn), 2)} | "
                     f"{fmt(ratio(med, native_med), 1)} |")
    if problems:
        lines += ["", "Failures:", ""] + [f"- {p}" for p in problems]
    return lines, bool(problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--wedge", required=True)
    ap.add_argument("--wedge-cwasm-flags", default="")
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--startup", default="1")
    ap.add_argument("--startup-runs", type=int, default=50)
    ap.add_argument("programs", nargs="+", metavar="NAME=N")
    args = ap.parse_args()
    programs = [tuple(p.split("=", 1)) for p in args.programs]

    model, ncpu, kernel = machine_info()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    header = [
        "# wedge compute benchmarks",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {model}, {ncpu} CPUs (nproc), Linux {kernel}, load average at start {load}",
        f"- native: {first_line(['clang', '--version'])}, `clang -O2`; wasm: `clang --target=wasm32-wasi -O2`",
        f"- wedge: `{args.wedge}` ({first_line([args.wedge, '--version'])})",
        f"- wasmtime: `{args.wasmtime}` ({first_line([args.wasmtime, '--version'])})",
        "",
    ]
    body, failed = compute_table(args, programs)
    if args.startup not in ("0", "no", "false"):
        s_body, s_failed = startup_table(args)
        body += [""] + s_body
        failed = failed or s_failed

    report = "\n".join(header + body) + "\n"
    sys.stdout.write(report)
    with open(os.path.join(args.out, "compute.md"), "w") as f:
        f.write(report)
    log(f"report written to {os.path.join(args.out, 'compute.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
