#!/usr/bin/env python3
"""Side by side: stackwatch builds and bpftrace attached to one target at
once, for comparing test builds of the eBPF program (not part of `cargo
xtask bench`, which measures the tree's own build).

    bench/scripts/side_by_side.py 'TARGET ARGS' SECONDS ROUNDS BUILD/stackwatch...

Each round starts the target command (split as the shell would; e.g.
`'./W cpu 0'` for tests/workloads/unwind_work.c), then
every `BUILD/stackwatch record --pid P --unwind auto` and bpftrace's
`profile:hz:99 /pid == P/ { @[ustack, kstack] = count(); }` together for
SECONDS. Each profiler's figure is the BPF run time of all its programs
(fdinfo `run_time_ns`, polled until it exits; `kernel.bpf_stats_enabled`
is on meanwhile) divided by the target's samples: the first build's
manifest `samples_collected` for every build (a test build may not count
its samples), bpftrace's map total for bpftrace. Prints each round, and
each build's ratio to bpftrace's figure in that round. Needs root.
"""
import glob, json, os, re, shlex, shutil, statistics, subprocess, sys, tempfile, time

def run_times(pid):
    """BPF run time (ns) of each program process `pid` holds, by id."""
    out = {}
    for fd in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            t = open(fd).read()
        except OSError:
            continue
        if "prog_type" not in t:
            continue
        m = dict(re.findall(r"^(\w+):\s+(\S+)", t, re.M))
        out[m.get("prog_id")] = int(m.get("run_time_ns", 0))
    return out

def label(b):
    """A build's name: the directory its binary is in."""
    return os.path.basename(os.path.dirname(b)) if "/" in b else b

def round_(target, dur, bins, work_dir):
    """One round: every build and bpftrace on one target; ns per sample each."""
    w = subprocess.Popen(shlex.split(target), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        procs = []
        for i, b in enumerate(bins):
            out = os.path.join(work_dir, f"out{i}")
            shutil.rmtree(out, ignore_errors=True)
            p = subprocess.Popen([b, "record", "--pid", str(w.pid), "--duration", f"{dur}s", "--unwind", "auto",
                                  "--formats", "pprof", "--output-dir", out],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append((b, p, out))
        bt = subprocess.Popen(["bpftrace", "-f", "json", "-e",
            f"profile:hz:99 /pid == {w.pid}/ {{ @[ustack, kstack] = count(); }} interval:s:{dur} {{ exit(); }}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        last = {}
        everyone = [p for _, p, _ in procs] + [bt]
        while any(p.poll() is None for p in everyone):
            for p in everyone:
                if p.poll() is None:
                    v = run_times(p.pid)
                    if v:
                        last[p.pid] = v
            time.sleep(0.1)
        bt_samples = 0
        for line in bt.stdout.read().splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("type") == "map":
                for v in j["data"].values():
                    if isinstance(v, dict):
                        bt_samples += sum(v.values())
    finally:
        w.kill()
        w.wait()
    # Only the reference build must succeed: a test build that counts
    # nothing may end with an error about its empty profile.
    if procs[0][1].returncode != 0:
        sys.exit(f"{bins[0]} (the reference build) exited with {procs[0][1].returncode}")
    if bt.returncode != 0 or bt_samples == 0:
        sys.exit(f"bpftrace exited with {bt.returncode} after {bt_samples} samples")
    manifests = glob.glob(os.path.join(procs[0][2], "*.json"))
    ref = json.load(open(manifests[0]))["samples_collected"] if manifests else 0
    if ref == 0:
        sys.exit(f"{bins[0]} (the reference build) wrote no manifest with samples")
    row = {b: sum(last.get(p.pid, {}).values()) / ref for b, p, _ in procs}
    row["bpftrace"] = sum(last.get(bt.pid, {}).values()) / bt_samples
    return ref, bt_samples, row

def main():
    target, dur, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    bins = sys.argv[4:]
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    work_dir = tempfile.mkdtemp(prefix="side_by_side.")
    results = []
    try:
        for r in range(rounds):
            ref, bt_samples, row = round_(target, dur, bins, work_dir)
            print(f"round {r}: ref samples {ref}, bpftrace samples {bt_samples}: " +
                  ", ".join(f"{label(k)}={v:.0f} ns ({v/row['bpftrace']:.2f}x)" for k, v in row.items()), flush=True)
            results.append(row)
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
        shutil.rmtree(work_dir, ignore_errors=True)
    for b in bins:
        ratios = sorted(r[b] / r["bpftrace"] for r in results)
        print(f"{label(b)}: median {statistics.median(ratios):.2f}x bpftrace "
              f"({ratios[0]:.2f}-{ratios[-1]:.2f}x over {len(ratios)} rounds)")

main()
