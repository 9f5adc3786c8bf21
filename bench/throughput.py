"""The arithmetic of bench/throughput.sh: turns one wrk run (the JSON line its Lua `done`
prints) and the CPU counters sampled around it into one result, and writes
docs/benchmarks/throughput.json from all the results with a short table.

  throughput.py result --scenario S --cache C --wrk-output FILE --before "..." --after "..."
      --wrk-ticks N --ticks-per-second HZ       prints one result as a JSON line (and a
                                                summary line on stderr)
  throughput.py write --results FILE --out FILE --seconds S --connections C --threads T
      --cores N                                 writes the results file, prints the table

A sample ("before"/"after") is seven integers: CPU clock ticks (utime + stime) of moto,
redis-server and numina-local, busy ticks of the whole machine (/proc/stat), redis's
keyspace hits and misses, and how many times the gateway has logged that it went on without
the cache.
"""

import argparse
import json
import sys
from pathlib import Path

PROCESSES = ("moto", "redis", "gateway")
MARK = "THROUGHPUT_JSON "


def wrk_summary(path):
    for line in Path(path).read_text().splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    sys.exit(f"throughput: no {MARK.strip()} line in {path} (did wrk run the Lua script?)")


def sample(text):
    values = [int(v) for v in text.split()]
    if len(values) != 7:
        sys.exit(f"throughput: a sample has 7 integers, not {text!r}")
    ticks = dict(zip(PROCESSES, values[:3]))
    return ticks, values[3], values[4], values[5], values[6]


def result(args):
    wrk = wrk_summary(args.wrk_output)
    before, busy0, hits0, misses0, failures0 = sample(args.before)
    after, busy1, hits1, misses1, failures1 = sample(args.after)
    hz = args.ticks_per_second
    requests = wrk["requests"]
    seconds = {p: (after[p] - before[p]) / hz for p in PROCESSES}
    total = sum(seconds.values())
    per_thousand = {p: round(s * 1000 / requests, 4) if requests else None for p, s in seconds.items()}
    share = {p: round(s / total, 3) if total else None for p, s in seconds.items()}
    wrk_seconds = args.wrk_ticks / hz
    busy = (busy1 - busy0) / hz
    out = {
        "scenario": args.scenario,
        "cache": args.cache,
        "requestsPerSecond": round(requests / (wrk["durationMicros"] / 1e6), 1),
        "p50Ms": round(wrk["p50Micros"] / 1000, 3),
        "p99Ms": round(wrk["p99Micros"] / 1000, 3),
        "non2xx": wrk["non2xx"],
        "socketErrors": wrk["connectErrors"] + wrk["readErrors"] + wrk["writeErrors"] + wrk["timeouts"],
        "cpuSecondsPer1000": per_thousand,
        "cpuShare": share,
        # Beyond the three servers: the load generator's own CPU, and what the rest of the
        # machine (other jobs on it) used in the same window.
        "requests": requests,
        "p90Ms": round(wrk["p90Micros"] / 1000, 3),
        "maxMs": round(wrk["maxMicros"] / 1000, 3),
        "wrkCpuSecondsPer1000": round(wrk_seconds * 1000 / requests, 4) if requests else None,
        "cpuSeconds": {**{p: round(s, 2) for p, s in seconds.items()}, "wrk": round(wrk_seconds, 2),
                       "otherOnMachine": round(max(busy - total - wrk_seconds, 0.0), 2)},
        "redisKeyspaceHits": hits1 - hits0,
        "redisKeyspaceMisses": misses1 - misses0,
        "cacheUnavailable": failures1 - failures0,
    }
    print(json.dumps(out))
    print(f"  {out['scenario']:<6} {out['requestsPerSecond']:>8.1f} req/s  p50 {out['p50Ms']:.2f} ms  "
          f"p99 {out['p99Ms']:.2f} ms  non-2xx {out['non2xx']}  socket errors {out['socketErrors']}",
          file=sys.stderr)


def fmt(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def write(args):
    results = [json.loads(l) for l in Path(args.results).read_text().splitlines() if l.strip()]
    doc = {
        "benchmark": "HTTP throughput of the local API gateway (numina-local, release) under wrk, "
        "with the cache warm and without a cache",
        "seconds": args.seconds,
        "connections": args.connections,
        "threads": args.threads,
        "machine": f"{args.cores} cores, shared by wrk, numina-local, moto and redis-server",
        "server": "numina-local on 127.0.0.1 over moto_server (one request at a time, see "
        "scripts/moto_server.py) and redis-server; the gateway also runs the stream functions "
        "(search indexing, cache invalidation), whose work shows in the append scenario",
        "cacheTimeoutMs": args.cache_timeout_ms,
        "cacheBreakerSeconds": args.cache_breaker_seconds,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")

    head = (f"{'scenario':<8} {'cache':<5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non2xx':>6} "
            f"{'sockerr':>7} | {'CPU s/1000 req: moto':>20} {'redis':>6} {'gw':>6} {'wrk':>6} | "
            f"{'share moto/redis/gw':>19} | {'redis hits/req':>14} {'other jobs, cores':>17}")
    print(head)
    print("-" * len(head))
    for r in results:
        c, s = r["cpuSecondsPer1000"], r["cpuShare"]
        shares = "/".join(fmt(s[p] * 100 if s[p] is not None else None, 0) for p in PROCESSES)
        hits = r["redisKeyspaceHits"] / r["requests"] if r["requests"] else None
        print(f"{r['scenario']:<8} {r['cache']:<5} {r['requestsPerSecond']:>8.1f} {r['p50Ms']:>8.2f} "
              f"{r['p99Ms']:>8.2f} {r['non2xx']:>6} {r['socketErrors']:>7} | {fmt(c['moto'], 3):>20} "
              f"{fmt(c['redis'], 3):>6} {fmt(c['gateway'], 3):>6} {fmt(r['wrkCpuSecondsPer1000'], 3):>6} | "
              f"{shares + ' %':>19} | {fmt(hits, 2):>14} {r['cpuSeconds']['otherOnMachine'] / args.seconds:>17.2f}")
    for r in results:
        if r["cacheUnavailable"]:
            print(f"throughput: {r['scenario']} (cache {r['cache']}): the gateway went on without the "
                  f"cache {r['cacheUnavailable']} times (timeouts; see its log)", file=sys.stderr)
    bad = [r for r in results if r["non2xx"] or r["socketErrors"]]
    for r in bad:
        print(f"throughput: {r['scenario']} (cache {r['cache']}): {r['non2xx']} non-2xx responses, "
              f"{r['socketErrors']} socket errors", file=sys.stderr)
    return 1 if bad else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("result")
    r.add_argument("--scenario", required=True)
    r.add_argument("--cache", required=True)
    r.add_argument("--wrk-output", required=True)
    r.add_argument("--before", required=True)
    r.add_argument("--after", required=True)
    r.add_argument("--wrk-ticks", type=int, required=True)
    r.add_argument("--ticks-per-second", type=int, required=True)
    w = sub.add_parser("write")
    w.add_argument("--results", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--seconds", type=int, required=True)
    w.add_argument("--connections", type=int, required=True)
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--cores", type=int, required=True)
    w.add_argument("--cache-timeout-ms", type=int, required=True)
    w.add_argument("--cache-breaker-seconds", type=int, required=True)
    args = parser.parse_args()
    if args.command == "result":
        result(args)
        return 0
    return write(args)


if __name__ == "__main__":
    sys.exit(main())
