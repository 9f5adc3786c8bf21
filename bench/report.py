"""Writes docs/benchmarks.md from the results files under docs/benchmarks/ (each written by
its benchmark in the same run of scripts/bench.sh): the append-cost curves of Numina and of
LangChain's DynamoDBChatMessageHistory side by side, as ratios; cold starts against a
hello-world lambda_runtime binary; round trips per endpoint; handler CPU (criterion);
throughput under load; and the other results.
"""

import json
import os
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/benchmarks"


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def kib(n):
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:,.1f} MiB"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def append_section(ours, peer):
    lines = ["## 1. Append cost as a conversation grows", ""]
    if not ours or not peer:
        return lines + ["Not run: `scripts/bench.sh` writes both results files.", ""]
    lines += [
        f"One conversation, messages 1 to {ours['messages']:,} of {ours['messageBytes']} bytes, "
        "alternating user and assistant, appended one at a time against the same local "
        f"DynamoDB server (moto): Numina through the service the add-message "
        f"handler calls, the peer through {peer['peer']} (`DynamoDBChatMessageHistory`, "
        "which keeps a whole session in one item). *Bytes written* are the bodies of the "
        "write requests one append sends; *ms* is the mean of that append and the four before "
        "it, on this shared 2-core machine (ratios hold better than absolute times); Numina's "
        f"client built in the {ours.get('profile', 'bench (release)')} profile.",
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
    second = ours["points"][1]
    if "writeUnits" in last:
        how = (
            f"{last['writeCalls']} write calls and {last['writeUnits']} write units from "
            f"message {second['message']:,} on ({first['writeUnits']} at message 1, whose "
            "automatic title moves the creation indexes): the message put at its slot, then "
            "the conversation's tip, count and activity; nothing already stored is sent again"
        )
    else:
        how = "one transaction: the new message item and the conversation's count and activity"
    lines += [
        "",
        f"- Numina's append writes {kib(first['bytesWritten'])} at message 1 and "
        f"{kib(last['bytesWritten'])} at message {last['message']:,}: flat ({how}). "
        f"Its store: {ours.get('store', 'as configured by default')}.",
    ]
    lines.append(
        "- The peer's figures are from the run its results file records; Numina's are from "
        "the run of this commit. Bytes and units do not depend on the run; times compare "
        "only within a run."
    )
    lines.append(
        "- The peer's times on moto grow with its item mostly because moto (Python) parses, "
        "sizes and serialises the whole item on every read and write; DynamoDB's latency would "
        "grow less, but what it bills grows with the item (below)."
    )
    read = [p for p in peer["points"] if "bytesRead" in p]
    if read:
        lines.append(
            "- The peer also reads the whole session before every append ("
            + ", ".join(f"{kib(p['bytesRead'])} at message {p['message']:,}" for p in read)
            + "); Numina's append reads only its conversation's item and summary (one "
            "consistent query of a few hundred bytes, 1 read unit at any length: section 1b)."
        )
    billed = [p for p in peer["points"] if "writeUnits" in p]
    if billed:
        lines.append(
            "- In what DynamoDB bills (from the item sizes by its documented rules: an UpdateItem "
            "costs a write unit per KB of the larger of the item before and after, its read half "
            "a unit per 4 KB): the peer's append costs "
            + ", ".join(
                f"{p['writeUnits']:,} write and {p['readUnits']:g} read units at message "
                f"{p['message']:,}"
                for p in billed
            )
            + f"; Numina's {last.get('writeUnits', 12)} write units and 1 read unit at any "
            "length (the message, the conversation's item and its `ByStateActivity` entry: "
            "[data-model.md](data-model.md), \"Appending\")."
        )
    failure = peer.get("failure")
    if failure:
        lines.append(
            f"- The peer rewrites the whole session on every append, so its writes grow with "
            f"the conversation, and it **fails at message {failure['atMessage']:,}**: the "
            f"session's item passes the item size limit (`{failure['error'][:120]}`). "
            "Every message after that is lost to it."
        )
    else:
        lines.append("- The peer rewrites the whole session on every append.")
    if peer.get("projectedFailureAtMessage"):
        lines.append(
            f"- By DynamoDB's documented size rules the peer's item passes 400 KB at message "
            f"{peer['projectedFailureAtMessage']:,} (projected from the stored item's exact "
            f"size, {kib(peer['itemBytesAtEnd'])} at the end of the run); the failure above is "
            "where the local server (moto, which counts sizes a little differently and allows "
            "405,000 bytes) refused the append."
        )
    if peer.get("appendedOneAtATime", peer["completed"]) < peer["completed"]:
        lines.append(
            f"- moto slows down with the peer's growing item, so the peer appended one at a "
            f"time for {peer['budgetSeconds']:.0f} s (to message "
            f"{peer['appendedOneAtATime']:,}); each later checkpoint was reached by one "
            "`add_messages` call with the messages up to four before it, and the last five "
            "appends before it were sent and timed one at a time."
        )
    branched = ours.get("branched")
    if branched:
        lines += [
            "",
            f"The same {ours['messages']:,} appends to a conversation of {branched['branches']} "
            f"branches ({branched['messagesBefore']} messages before them: its last question "
            "edited 100 times, each edit answered, so the branch shown is the last of 100 "
            "nested ones; issue 19, [data-model.md](data-model.md), \"Branches\"):",
            "",
            "| append | bytes written | write calls | write units | ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for point in branched["points"]:
            lines.append(
                f"| {point['message']:,} | {kib(point['bytesWritten'])} | {point['writeCalls']} | "
                f"{point['writeUnits']} | {point['ms']} |"
            )
        at = {p["message"]: p for p in branched["points"]}
        ten, thousand = at.get(10), at.get(1000)
        if ten and thousand:
            flat = (
                ten["bytesWritten"] == thousand["bytesWritten"]
                and ten["writeUnits"] == thousand["writeUnits"]
            )
            lines += [
                "",
                f"- Append 1,000 writes {kib(thousand['bytesWritten'])} and "
                f"{thousand['writeUnits']} write units, append 10 {kib(ten['bytesWritten'])} "
                f"and {ten['writeUnits']}: "
                + ("flat, with 100 branches: an append never rewrites the tree."
                   if flat else "**not flat**."),
                "- The times grow in both conversations with what moto and the meter (which "
                "reads every written item's images from moto) hold, not with what an append "
                "sends: moto dominates every local time (compare counts, bytes and units).",
            ]
    lines += [
        "",
        f"- Over the whole run: Numina sent {kib(ours['totalBytesWritten'])} in writes for "
        f"{ours['completed']:,} messages; the peer's one-at-a-time appends of messages 1 to "
        f"{peer['completed']:,} send {kib(peer['totalBytesWritten'])} (computed with botocore's "
        "serializer; equal to the measured bytes of every append that was sent).",
        "",
        "Results: [append-cost.json](benchmarks/append-cost.json), "
        "[append-cost-langchain.json](benchmarks/append-cost-langchain.json).",
        "",
    ]
    return lines


def message_cost_section(ours, peer):
    lines = ["## 1b. What a message costs to keep: write and read units, all-in", ""]
    if not ours:
        return lines + ["Not run: `scripts/bench.sh` writes docs/benchmarks/message-cost.json.", ""]
    one, mixed, reads = ours["oneConversation"], ours["mixedWorkload"], ours["readUnits"]
    lines += [
        "What DynamoDB would bill, metered call by call from the items themselves by its "
        "documented rules (`tests/src/meter.rs`, `tests/src/capacity.rs`): every call of the "
        "real handlers, through the local API, and of the real stream functions, fed by the "
        "local poller as in AWS, each part through a meter of its own. Write units are whole "
        "units per item write (1 KB each, the larger of the item before and after; a "
        "transaction's twice) and per index entry; the cache is off, so every read reaches "
        "the table."
        + (
            " Conversation and message items are written lean (`LEAN_ITEMS=true`: "
            "[operations.md](operations.md), \"Lean items\"; the full shape, the default until "
            "every function reads lean items, is about 115 bytes more per conversation item and "
            "145 per message)."
            if ours.get("itemShape") == "lean"
            else ""
        )
        + (
            " Message content and summaries are written deflated where that makes them smaller "
            "(`COMPRESS_TEXT=true`: [operations.md](operations.md), \"Deflated text\")."
            if ours.get("compressedText")
            else ""
        )
        + (
            " Messages are appended by slot, without a transaction (`SLOT_KEYS=true`: "
            "[data-model.md](data-model.md), \"Appending\"; in a transaction, the default until "
            "every function reads slots, every item of the append counts twice: 2 more units per "
            "append, 3 more with a client message id)."
            if ours.get("slotKeys")
            else ""
        ),
        "",
        f"One conversation, messages of {one['messageBytes']} bytes alternating user and "
        "assistant (the workload of section 1, which the peer runs on the same server): the "
        "write units of the append itself (table, then indexes), of the search index and the "
        "summaries it causes, and of the other background functions, each the mean of the 20 "
        "messages ending at that message (summaries are written every 20: a checkpoint on one "
        "is not billed it alone; *that message* is the one message's own all-in).",
        "",
        "| message | append: table | append: indexes | search | summaries | others | all-in | that message | peer | peer / Numina |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peer_points = {p["message"]: p for p in (peer or {}).get("points", []) if "writeUnits" in p}
    for point in one["points"]:
        at = point["message"]
        indexes = sum(point["request"]["indexes"].values())
        theirs = peer_points.get(at)
        theirs_units = f"{theirs['writeUnits']:,}" if theirs else "–"
        lines.append(
            f"| {at:,} | {point['request']['table']:g} | {indexes:g} "
            f"({', '.join(f'{k} {v:g}' for k, v in point['request']['indexes'].items() if v)}) | "
            f"{point['search']:g} | {point['summaries']:g} | {point['others']:g} | "
            f"**{point['allIn']:g}** | {point.get('thisMessage', '–')} | {theirs_units} | "
            f"{ratio(theirs['writeUnits'], point['allIn']) if theirs else '–'} |"
        )
    per = mixed["perMessage"]
    lines += [
        "",
        f"The mixed workload: {mixed['users']} users, {mixed['conversations']} conversations "
        f"(median length {mixed['lengthMedian']} messages, the longest {mixed['lengthMax']:,}), "
        f"{mixed['messages']:,} messages (user messages of 20 B to 1 KB"
        + (
            ", each with a client message id as the app sends them"
            if mixed.get("userMessagesWithClientIds")
            else ""
        )
        + ", replies of 100 B to 4 KB, words from a Zipf vocabulary), with renames, tags, "
        "archives, deletes, lists, syncs and searches. Write units per message:",
        "",
        "| append: table | append: indexes | search | summaries | others | all-in (appends) | everything else | all-in |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {per['request']['table']:g} | {sum(per['request']['indexes'].values()):.2f} | "
        f"{per['search']:g} | {per['summaries']:g} | {per['others']:g} | {per['allIn']:g} | "
        f"{mixed['everythingElsePerMessage']:g} | **{mixed['allInPerMessage']:g}** |",
        "",
        "- By index, per message: "
        + ", ".join(f"{k} {v:g}" for k, v in per["request"]["indexes"].items())
        + ".",
    ]
    if "textDeflatesTo" in mixed:
        lines.append(
            f"- The workload's text deflates to {mixed['textDeflatesTo']:.0%} of its bytes "
            "(texts of 128 bytes or more, where that is smaller; what `COMPRESS_TEXT` keeps); "
            f"English prose in pieces of 2 KB (this project's docs) to "
            f"{mixed['englishDeflatesTo']:.0%}: real chat text saves less than the generated "
            "words do."
        )
    dearest = mixed.get("dearestMessage") or {}
    if dearest:
        lines.append(
            f"- The dearest message: {dearest['allIn']:g} write units all-in "
            f"({dearest['bytes']:,} bytes, message {dearest['message']:,} of its conversation; "
            f"append {dearest['request']['total']:g}, search {dearest['search']:g}, "
            f"summaries {dearest['summaries']:g})."
        )
    lines.append(
        "- Everything else, each (a delete with its later check by the hourly sweep): "
        + ", ".join(
            f"{action} {v['allIn']:g} ({v['count']})"
            for action, v in mixed["otherOperations"].items()
        )
        + " write units all-in (how many were made)."
    )
    lines += [
        "",
        "Read units of one request (the cache off):",
        "",
        "| request | read units | calls |",
        "|---|---:|---:|",
    ]
    for name, value in reads.items():
        lines.append(f"| {name} | {value['reads']:g} | {value['calls']} |")
    lines += [
        "",
        "syncChangesPage is the page an app that synced before gets once 15 conversations had a "
        "new message and 5 were renamed (20 changes). Before appends left the change log "
        "(issue 18), that page was one keys-only query of `ByChange` and a consistent "
        "`BatchGetItem` of the 20 conversations: 0.5 + 20 read units by the same rules "
        "(computed, not measured: the benchmark reads the code it is built with). It is "
        "measured after the other requests, so they read what they read before it was added.",
        "",
        (
            f"The summaries here are as long as a real model's (about {ours['summaryChars']:,} "
            "characters, the 200 words its instruction asks for, in the conversation's own "
            "words: `RealLengthSummaries`, a stand-in behind the model interface). Each is an "
            "item of its own, one put that moves no index, and the conversation's item keeps "
            "a 240-character preview of it, which the next append brings in: the item stays "
            "under 1 KB, and the append at 4 write units with summaries of any length "
            "([summaries.md](summaries.md))."
            if ours.get("summaryChars")
            else "The summaries here are the local model's, a sentence of about 250 bytes, so a "
            "summarized conversation's item stays under 1 KB. A real model's summary (up to 400 "
            "tokens, some 1.2 to 1.6 KB) takes the item past 1 KB ("
            + (
                "lean and deflated, about 1.35 KB with 1,200 characters of English, which "
                "deflate to about half"
                if ours.get("compressedText")
                else "lean, about 1.9 KB with 1,200 characters"
            )
            + (
                "): each append then writes 2 units of it and its `ByStateActivity` entry, "
                "deleted and put, 2 units each: 7 write units for the append at messages 100 "
                "and 1,000 instead of 4, about 8.2 all-in, 38× below the peer at message 1,000 "
                "(computed by the same rules, not measured)."
                if ours.get("slotKeys")
                else "): each append then writes 2 units of it, twice in the transaction, and "
                "its `ByStateActivity` entry, deleted and put, 2 units each: 10 write units for "
                "the append at messages 100 and 1,000 instead of 6, about 11.2 all-in, 27× "
                "below the peer at message 1,000 (computed by the same rules, not measured)."
            )
        ),
        "",
        "Issue 18's targets: the append at most 4 write units; all-in at most 6 per message "
        "over the workload and at most 8 for any message; below the peer from about message "
        "15, and at least 40× below it at message 1,000.",
        "",
        "Results: [message-cost.json](benchmarks/message-cost.json).",
        "",
    ]
    return lines


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "–"


def size(n):
    """A size in bytes as `kib` writes it; "–" when it was not measured."""
    return kib(n) if n else "–"


def builds_at_init(function):
    """What a function's main builds before its first `GET /next`, read from its main.rs."""
    try:
        with open(os.path.join(ROOT, "functions", function, "src", "main.rs")) as f:
            main = f.read()
    except OSError:
        return "–"
    if "Cache::configured" in main and "State::from_env" not in main:
        return "the cache's client (connects on first use)"
    core = "DynamoDB client, the cache's client (connects on first use)"
    if "from_env_without_bucket" not in main:
        core += "; S3 on first use"
    if "health_check" in main:
        return core + "; ElastiCache client (the cache's name looked up)"
    if "assistant" in main:
        built = core + "; the model provider's client (the tokenizer's tables are read in place)"
        if "JwtVerifier" in main:
            built += "; the user pool's signing keys (fetched)"
        return built
    return core


def cold_start_section(results):
    lines = ["## 2. Cold start", ""]
    if not results:
        return lines + ["Not run.", ""]
    hello = results["helloWorld"]
    lines += [
        "Each function's release binary started as Lambda starts it: a local implementation "
        "of the Lambda Runtime API (in the bench) hands it one event (its `events/*.json`) "
        f"and takes its answer; median of {results['runs']} starts, against the local servers. "
        "*Init* is exec to the first `GET /next` (configuration read, clients built); *first "
        "response* is exec to the answer (including the request's own store calls); peak RSS "
        "is the process's high-water mark once it has answered; sizes are of the stripped "
        "binaries. Ratios are to a hello-world `lambda_runtime` binary built in the same run. "
        "*Answered* is what the function gave its event (an HTTP status, or ok/error for the "
        "stream and state-machine handlers), every distinct answer of the runs: the events "
        "name conversations and runs that a fresh table does not hold, so most read and write "
        "handlers answer 404 after their lookup, and the migration steps fail their condition "
        "until a run exists (in the first round; the start-run step runs after them); "
        "completion-stream's event carries a token the stand-in user pool does not accept (401).",
        "",
        "| function | init ms | × hello | first response ms | × hello | peak RSS | × hello | binary | × hello | answered | builds at init |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        f"| hello-world | {hello['initMs']} | 1.0× | {hello['firstResponseMs']} | 1.0× | "
        f"{size(hello['peakRssKib'] * 1024)} | 1.0× | {size(hello['binaryBytes'])} | 1.0× | "
        f"{hello['answered']} | the runtime's client |",
    ]
    for r in results["results"]:
        lines.append(
            f"| {r['function']} | {r['initMs'] or '–'} | {ratio(r['initMs'], hello['initMs'])} | "
            f"{r['firstResponseMs'] or '–'} | "
            f"{ratio(r['firstResponseMs'], hello['firstResponseMs'])} | "
            f"{size((r['peakRssKib'] or 0) * 1024)} | {ratio(r['peakRssKib'], hello['peakRssKib'])} | "
            f"{size(r['binaryBytes'])} | {ratio(r['binaryBytes'], hello['binaryBytes'])} | "
            f"{r['answered']} | {builds_at_init(r['function'])} |"
        )
    lines.append("")
    for label, key in [
        ("Init", "initMs"),
        ("First response", "firstResponseMs"),
        ("Peak RSS", "peakRssKib"),
        ("Binary size", "binaryBytes"),
    ]:
        ratios = sorted(
            r[key] / hello[key] for r in results["results"] if r.get(key) and hello.get(key)
        )
        if ratios:
            lines.append(
                f"- {label}: {ratios[len(ratios) // 2]:.1f}× hello-world for the median "
                f"function ({ratios[0]:.1f}× to {ratios[-1]:.1f}× over {len(ratios)} functions)."
            )
    lines.append(
        "- What init spends beyond hello-world (`perf record` and `strace` over repeated "
        "starts of a function that builds a DynamoDB client): the client's TLS connector and "
        "endpoint rules, and the binary's own pages and relocations. The connector used to "
        "load and parse the platform's whole certificate store (the bundle, then every file "
        "of /etc/ssl/certs: about half of that difference, add-message's exec to first poll "
        "4.4 ms against 2.3 ms without it); the SDK clients now trust only the five Amazon "
        "Trust Services roots AWS's endpoints chain to, embedded (shared/certs/). A function "
        "that builds no SDK client (invalidate-cached-reads: the cache's client only) starts "
        "at hello-world's pace; S3's client is built on first use, and not at all by the ten "
        "functions that never reach the bucket."
    )
    lines.append(
        "- Peak RSS follows the binary's size: the kernel maps a binary's cached pages "
        "around each one touched (fault-around), so most of a binary is resident once it has "
        "answered (list-conversations right after its answer, from /proc/<pid>/smaps: 4.3 MiB "
        "of its 5.5 MiB binary resident, libc 1.4 MiB, libm 0.3 MiB, heap and stack 0.4 MiB). "
        "The four assistant functions carry the o200k_base tables (3.1 MiB: every token's "
        "bytes, their ends, the index) and the pre-tokenizing pattern's regex engines "
        "(about 0.5 MiB) on top of the conversations' clients, which is why they stay above "
        "8 MiB and completion's peak RSS above 3× hello-world. completion's "
        "was 58.6 MiB when tiktoken built its hash maps on the first count; the o200k_base "
        "tables are now laid out at build time and read in place (ai/build.rs)."
    )
    unanswered = [r["function"] for r in results["results"] if not r.get("firstResponseMs")]
    if unanswered:
        lines.append(f"- No answer from: {', '.join(unanswered)} (see target/cold-start/).")
    lines += ["", "Results: [cold-start.json](benchmarks/cold-start.json).", ""]
    return lines


def release_profile_section(results):
    lines = ["## Release profile", ""]
    if not results:
        return lines + ["Not run.", ""]
    lines += [
        "The profile every Lambda binary is built with (`[profile.release]` in Cargo.toml), "
        "chosen by building the same functions under each candidate and starting them cold "
        "(" + results["command"].split(";")[0].split(" cargo ")[0] + " …, then the cold-start "
        "bench). Sizes are of the stripped binaries; times are medians of 5 starts.",
        "",
        "| profile | build s | function | binary | init ms | first response ms | peak RSS |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for variant in results["variants"]:
        runs = variant["coldStart"]
        for row in [runs["helloWorld"]] + runs["results"]:
            lines.append(
                f"| {variant['name']} | {variant['buildSeconds']} | {row['function']} | "
                f"{size(row['binaryBytes'])} | {row['initMs']} | {row['firstResponseMs']} | "
                f"{size((row['peakRssKib'] or 0) * 1024)} |"
            )
    lines += [""] + [f"- {v['name']}: {v['buildNote']}." for v in results["variants"]]
    lines += [
        "",
        "Chosen: opt-level `s`, fat LTO, one codegen unit, stripped. It halves every binary "
        "against the previous profile, lowers peak RSS and starts as fast; its build from "
        "scratch was no slower (the two build times above are not like for like: see their "
        "notes).",
        "",
        "Panics abort (`panic = \"abort\"`). That is what cargo-lambda applies to every "
        "release build whose profile leaves the strategy unset (with `-C target-cpu=haswell` "
        "on x86_64; its debug log names both), so the binaries measured above already "
        "aborted; the profile now says so. Measured against unwinding (the profile set to "
        "`unwind`, same functions, 7 cold starts each): add-message 7.5 MiB against 8.3 MiB "
        "and 8.2 MiB peak RSS against 9.0 MiB, completion 13.2 MiB against 14.3 MiB and 12.5 "
        "MiB against 14.2 MiB, hello-world 1.1 MiB against 1.2 MiB; init the same. A panic is "
        "a bug that fails its invocation either way: unwinding lets `lambda_runtime` report it "
        "and keep the sandbox, aborting costs one more cold start after it, against a smaller "
        "binary and less memory at every start.",
        "",
        "Linked at a fixed address (`-no-pie`, by every function's build script, "
        "functions/position-dependent.rs; the code is still compiled position-independent). "
        "A position-independent executable carries a relocation for every pointer in its "
        "read-only data, which the loader applies at each start: add-message had 469 KiB of "
        "`.rela.dyn` (3 KiB without), and its 300 KiB of `.data.rel.ro` were written at every "
        "start. Measured over all 29 functions, 7 cold starts each, against the same tree "
        "linked as PIE: every binary 0.36 to 0.69 MiB smaller (mobile-batch 8.30 to 7.79 MiB, "
        "add-message 7.54 to 7.08, completion 13.23 to 12.54), peak RSS 0.2 to 0.7 MiB lower, "
        "init the same. Given up: address randomisation of the executable's own image (the "
        "stack, the heap and the shared libraries stay randomised). Setting "
        "`-C relocation-model=static` instead does not link: crc-fast (under the S3 SDK's "
        "checksums) also builds a shared library. The cold-start smoke in the test command "
        "fails if a Lambda build comes out position-independent.",
        "",
        "One thread. Each function runs Tokio's current-thread runtime "
        "(`#[tokio::main(flavor = \"current_thread\")]`): Lambda hands a sandbox one event at a "
        "time, and a handler's concurrent calls (a page of S3 reads, the purge's batch "
        "deletes) are I/O that one thread drives. Against the multi-threaded runtime, "
        "measured on list-conversations and add-message (7 starts each): peak RSS 7.0 to 6.6 "
        "MiB and 7.9 to 7.5 MiB (no worker threads, their stacks and allocator arenas, no "
        "scheduler statistics), init and first response the same. hello-world keeps the "
        "multi-threaded `#[tokio::main]` of the standard example: it is the baseline the "
        "issue measures against.",
        "",
        "Results: [release-profile.json](benchmarks/release-profile.json).",
        "",
    ]
    return lines


def operations(counts):
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "–"


def round_trips_section(results):
    lines = ["## 3. Round trips and bytes per request", ""]
    if not results:
        return lines + ["Not run.", ""]
    lines += [
        f"One user with {results['conversations']} conversations, one of them "
        f"{results['messagesInConversation']} messages long. Counted, not estimated: the "
        "handlers' AWS calls pass through a recording HTTP proxy (operation and answer size "
        "per call), the cache connection through a byte-counting TCP proxy, and "
        "redis-server's command statistics give the cache commands. *Cold*: the cache was "
        "emptied just before; *warm*: the same read again at once.",
        "",
        "| endpoint | cache | store calls | store operations | bytes read from store | cache commands | cache operations | bytes read from cache |",
        "|---|---|---:|---|---:|---:|---|---:|",
    ]
    for r in results["results"]:
        lines.append(
            f"| `{r['endpoint']}` | {r['cache']} | {r['storeCalls']} | "
            f"{operations(r['storeOperations'])} | {kib(r['storeBytesRead'])} | "
            f"{r['cacheCommands']} | {operations(r['cacheOperations'])} | "
            f"{kib(r['cacheBytesRead'])} |"
        )
    lines += ["", "Results: [round-trips.json](benchmarks/round-trips.json).", ""]
    return lines


def nanos(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def handler_cpu_section(results):
    lines = ["## 4. Handler CPU", ""]
    if not results:
        return lines + ["Not run.", ""]
    lines += [
        "criterion benchmarks of the pure code on the request path, no I/O "
        "(`cargo bench -p shared --bench hot_paths`; estimates with 95% confidence bounds).",
        "",
        "| benchmark | mean | 95% interval | median |",
        "|---|---:|---:|---:|",
    ]
    for r in results["results"]:
        lines.append(
            f"| {r['benchmark']} | {nanos(r['meanNs'])} | "
            f"{nanos(r['meanLowerNs'])} – {nanos(r['meanUpperNs'])} | {nanos(r['medianNs'])} |"
        )
    lines += [
        "",
        "The context rows read messages as the assistant stores them: each prompt and reply "
        "carries its token count from when it was written (`tokens`, `encoding:count`), so a "
        "read adds numbers instead of tokenizing (issue 16's target: at most 50 µs at the "
        "default budget). Messages added through the API carry none (add-message links no "
        "tokenizer) and are counted as the context is read: the *not counted* row. The page "
        "row maps the query's items to the response's JSON (target: at most 400 µs); the "
        "items come to it owned, as the SDK returns them, so copying them is not timed.",
    ]
    by_name = {r["benchmark"]: r for r in results["results"]}
    plain = by_name.get("items/200-message page to response JSON")
    deflated = next(
        (r for name, r in by_name.items() if name.startswith("items/200-message page, content deflated")),
        None,
    )
    if plain and deflated:
        lines += [
            "",
            "The deflated page row is the same page with every content deflated as "
            "`COMPRESS_TEXT` writes it (docs/operations.md, \"Deflated text\"): inflating costs "
            f"{nanos(deflated['meanNs'] - plain['meanNs'])} more for its 200 messages "
            f"({deflated['meanNs'] / plain['meanNs']:.1f}× the page's CPU), the price of "
            "reading about half the bytes from DynamoDB.",
        ]
    lines += [
        "",
        "Results: [handler-cpu.json](benchmarks/handler-cpu.json).",
        "",
    ]
    return lines


def throughput_section(results):
    lines = ["## 5. Throughput", ""]
    if not results:
        return lines + ["Not run.", ""]
    lines += [
        f"wrk against the local gateway (release build) for {results['seconds']} s per "
        f"scenario, {results['connections']} connections on {results['threads']} threads, with "
        "the cache warm and with no cache. *CPU per 1,000 requests* is what each process "
        "spent (from /proc) while the scenario ran: it shows where the time goes.",
        "",
        "| scenario | cache | requests/s | p50 ms | p99 ms | non-2xx | socket errors | CPU s per 1,000: moto / redis / gateway | moto's share |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results["results"]:
        cpu = r["cpuSecondsPer1000"]
        lines.append(
            f"| {r['scenario']} | {r['cache']} | {r['requestsPerSecond']:.0f} | {r['p50Ms']} | "
            f"{r['p99Ms']} | {r['non2xx']} | {r['socketErrors']} | "
            f"{cpu['moto']:.2f} / {cpu['redis']:.2f} / {cpu['gateway']:.2f} | "
            f"{r['cpuShare']['moto'] * 100:.0f}% |"
        )
    lines += [
        "",
        "The local DynamoDB server (moto: Python, one request at a time) is the bottleneck "
        "wherever a request reaches the store; with the cache warm, reads do not reach it. "
        "Against DynamoDB the store's share is a network round trip of a few milliseconds "
        "instead, served in parallel.",
        "",
        "Results: [throughput.json](benchmarks/throughput.json).",
        "",
    ]
    return lines


def export_memory_section(results):
    if not results:
        return []
    return [
        "## Export memory",
        "",
        f"A conversation of {results['messages']} messages of {results['messageBytes'] // (1024 * 1024)} MiB "
        "each (the largest the API accepts, their content compressed in the bucket) exported to "
        f"JSON ({results['exportBytes'] / (1024 * 1024):.0f} MiB) through the service the "
        "export-conversation handler calls (`tests/benches/export_memory.rs`). Peak resident memory "
        "above the process's baseline (VmHWM):",
        "",
        "| | peak above baseline |",
        "|---|---|",
        f"| the export, each message's content read as it is written | {results['exportPeakAboveBaselineMiB']:.1f} MiB |",
        f"| one page of {results['pageAtOnceMessages']} messages read with their content at once (how exports read before) | {results['pageAtOncePeakAboveBaselineMiB']:.1f} MiB |",
        "",
        f"The function has {results['functionMemoryMiB']} MB.",
        "",
    ]


def others_section():
    lines = ["## Other results", ""]
    if os.environ.get("BENCH_OTHERS", "1") == "0":
        lines += [
            "Not re-run in this run (`BENCH_OTHERS=0`): each file holds its benchmark's last "
            "results.",
            "",
        ]
    for name, title, columns in [
        (
            "cache-list.json",
            "A conversation list request, by cache state",
            [("median µs", "medianMicros"), ("p95 µs", "p95Micros"),
             ("store calls per request", "storeCallsPerRequest")],
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
        "2-core machine: compare the ratios and the counts. Written "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the results files.",
        "",
    ]
    lines += append_section(ours, peer)
    lines += message_cost_section(load("message-cost.json"), peer)
    lines += cold_start_section(load("cold-start.json"))
    lines += release_profile_section(load("release-profile.json"))
    lines += round_trips_section(load("round-trips.json"))
    lines += handler_cpu_section(load("handler-cpu.json"))
    lines += throughput_section(load("throughput.json"))
    lines += export_memory_section(load("export-memory.json"))
    lines += others_section()
    (ROOT / "docs/benchmarks.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
