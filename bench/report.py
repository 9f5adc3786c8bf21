"""Writes docs/benchmarks.md from the results files under docs/benchmarks/ (each written by
its benchmark in the same run of scripts/bench.sh): the append-cost curves of Numina and of
LangChain's DynamoDBChatMessageHistory side by side, as ratios, and the other results.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/benchmarks"


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def kib(n):
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def append_section(ours, peer):
    lines = ["## 1. Append cost as a conversation grows", ""]
    if not ours or not peer:
        return lines + ["Not run: `scripts/bench.sh` writes both results files.", ""]
    lines += [
        f"One conversation, messages 1 to {ours['messages']:,} of {ours['messageBytes']} bytes, "
        "alternating user and assistant, appended one at a time against the same local "
        f"DynamoDB server (moto) in the same run: Numina through the service the add-message "
        f"handler calls, the peer through {peer['peer']} (`DynamoDBChatMessageHistory`, "
        "which keeps a whole session in one item). *Bytes written* are the bodies of the "
        "write requests one append sends; *ms* is the mean of that append and the four before "
        "it, on this shared 2-core machine (ratios hold better than absolute times).",
        "",
        "| message | Numina bytes written | peer bytes written | peer / Numina | Numina ms | peer ms | peer / Numina |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peer_points = {p["message"]: p for p in peer["points"]}
    for point in ours["points"]:
        at = point["message"]
        theirs = peer_points.get(at, {"failed": True})
        if theirs.get("failed"):
            lines.append(
                f"| {at:,} | {kib(point['bytesWritten'])} | failed | – | {point['ms']} | failed | – |"
            )
            continue
        lines.append(
            f"| {at:,} | {kib(point['bytesWritten'])} | {kib(theirs['bytesWritten'])} | "
            f"{theirs['bytesWritten'] / point['bytesWritten']:.1f}× | {point['ms']} | "
            f"{theirs['ms']} | {theirs['ms'] / point['ms']:.1f}× |"
        )
    first, last = ours["points"][0], ours["points"][-1]
    lines += [
        "",
        f"- Numina's append writes {kib(first['bytesWritten'])} at message 1 and "
        f"{kib(last['bytesWritten'])} at message {last['message']:,}: flat (one transaction: "
        "the new message item and the conversation's count and activity; nothing already "
        "stored is sent again).",
    ]
    failure = peer.get("failure")
    if failure:
        lines.append(
            f"- The peer rewrites the whole session on every append, so its writes grow with "
            f"the conversation, and it **fails at message {failure['atMessage']:,}**: the "
            f"session's item passes DynamoDB's 400 KB item limit (`{failure['error'][:120]}`). "
            "Every message after that is lost to it."
        )
    else:
        lines.append("- The peer rewrites the whole session on every append.")
    lines += [
        f"- Over the whole run: Numina sent {kib(ours['totalBytesWritten'])} in writes for "
        f"{ours['completed']:,} messages; the peer {kib(peer['totalBytesWritten'])} for "
        f"{peer['completed']:,}.",
        "",
        "Results: [append-cost.json](benchmarks/append-cost.json), "
        "[append-cost-langchain.json](benchmarks/append-cost-langchain.json).",
        "",
    ]
    return lines


def others_section():
    lines = ["## Other results", ""]
    for name, title, columns in [
        (
            "cache-list.json",
            "A conversation list request, by cache state",
            [("median µs", "medianMicros"), ("p95 µs", "p95Micros"),
             ("store calls per request", "storeCallsPerRequest")],
        ),
        (
            "context-selection.json",
            "Context selection over a 10,000-message conversation",
            [("median µs", "medianMicros"), ("p95 µs", "p95Micros"),
             ("messages kept", "messagesKept")],
        ),
    ]:
        results = load(name)
        if not results:
            continue
        lines += [f"**{title}** ([{name}](benchmarks/{name})):", ""]
        lines.append("| scenario | " + " | ".join(head for head, _ in columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for r in results["results"]:
            lines.append(f"| {r['scenario']} | " + " | ".join(str(r[key]) for _, key in columns) + " |")
        lines.append("")
    for name, title in [
        ("migration-throughput.json", "Migration throughput (batched against one message per call)"),
        ("search.json", "Search: index build and query cost"),
    ]:
        if load(name):
            lines.append(f"- {title}: [{name}](benchmarks/{name})")
    lines.append("")
    return lines


def main():
    ours = load("append-cost.json")
    peer = load("append-cost-langchain.json")
    lines = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench.sh` (which runs every benchmark against the local servers, "
        "then `bench/report.py`); do not edit by hand. Absolute times are of moto on a shared "
        "2-core machine: compare the ratios and the counts.",
        "",
    ]
    lines += append_section(ours, peer)
    lines += others_section()
    lines += [
        "## Not measured yet",
        "",
        "Cold start against a hello-world `lambda_runtime` binary, store and cache calls per "
        "request for every endpoint, criterion benchmarks of request parsing, item mapping and "
        "cursor encoding, and a load generator against the local gateway are still to be built "
        "(issue 9).",
        "",
    ]
    (ROOT / "docs/benchmarks.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
