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
import glob, json, os, re, shlex, statistics, subprocess, sys, time

def progs(pid):
    out = {}
    for fd in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            t = open(fd).read()
        except OSError:
            continue
        if "prog_type" not in t:
            continue
        m = dict(re.findall(r"^(\w+):\s+(\S+)", t, re.M))
        out[m.get("prog_id")] = (int(m.get("run_time_ns", 0)), int(m.get("run_cnt", 0)))
    return out

def label(b):
    """A build's name: the directory its binary is in."""
    return os.path.basename(os.path.dirname(b)) if "/" in b else b

def main():
    target_bin, dur, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    bins = sys.argv[4:]
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    results = []
    for r in range(rounds):
        w = subprocess.Popen(shlex.split(target_bin), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        procs = []
        for i, b in enumerate(bins):
            out = f"/tmp/sbs/out{i}"
            subprocess.run(["rm", "-rf", out])
            p = subprocess.Popen([b, "record", "--pid", str(w.pid), "--duration", f"{dur}s", "--unwind", "auto",
                                  "--formats", "pprof", "--output-dir", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append((b, p, out))
        bt = subprocess.Popen(["bpftrace", "-f", "json", "-e",
            f"profile:hz:99 /pid == {w.pid}/ {{ @[ustack, kstack] = count(); }} interval:s:{dur} {{ exit(); }}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        last = {}
        allp = [(b, p) for b, p, _ in procs] + [("bpftrace", bt)]
        while any(p.poll() is None for _, p in allp):
            for b, p in allp:
                if p.poll() is None:
                    v = progs(p.pid)
                    if v:
                        last[p.pid] = v
            time.sleep(0.1)
        out_bt = bt.stdout.read()
        bt_samples = 0
        for line in out_bt.splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("type") == "map":
                for v in j["data"].values():
                    if isinstance(v, dict):
                        bt_samples += sum(v.values())
        w.kill(); w.wait()
        ref = None
        row = {}
        for b, p, out in procs:
            m = glob.glob(f"{out}/*.json")
            n = json.load(open(m[0]))["samples_collected"] if m else 0
            if n and ref is None:
                ref = n
        for b, p, out in procs:
            ns = sum(t for t, c in last.get(p.pid, {}).values())
            row[b] = ns / ref
        ns = sum(t for t, c in last.get(bt.pid, {}).values())
        row["bpftrace"] = ns / max(bt_samples, 1)
        print(f"round {r}: ref samples {ref}, bpftrace samples {bt_samples}: " +
              ", ".join(f"{label(k)}={v:.0f} ns ({v/row['bpftrace']:.2f}x)" for k, v in row.items()), flush=True)
        results.append(row)
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
    for b in bins:
        ratios = sorted(r[b] / r["bpftrace"] for r in results)
        print(f"{label(b)}: median {statistics.median(ratios):.2f}x bpftrace "
              f"({ratios[0]:.2f}-{ratios[-1]:.2f}x over {len(ratios)} rounds)")

main()
