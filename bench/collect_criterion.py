"""Collects criterion's estimates of the handler CPU benchmarks (target/criterion, written by
`cargo bench -p shared --bench hot_paths`) into docs/benchmarks/handler-cpu.json."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    results = []
    for benchmark in sorted((ROOT / "target/criterion").glob("**/new/benchmark.json")):
        about = json.loads(benchmark.read_text())
        estimates = json.loads((benchmark.parent / "estimates.json").read_text())
        mean = estimates["mean"]
        results.append({
            "benchmark": about["full_id"],
            "meanNs": round(mean["point_estimate"], 1),
            "meanLowerNs": round(mean["confidence_interval"]["lower_bound"], 1),
            "meanUpperNs": round(mean["confidence_interval"]["upper_bound"], 1),
            "medianNs": round(estimates["median"]["point_estimate"], 1),
        })
    out = ROOT / "docs/benchmarks/handler-cpu.json"
    out.write_text(json.dumps({"tool": "criterion", "results": results}, indent=2) + "\n")
    print(f"handler CPU: {len(results)} benchmarks written to {out}")


if __name__ == "__main__":
    main()
