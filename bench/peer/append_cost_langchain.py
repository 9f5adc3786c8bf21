"""The peer side of the append-cost benchmark: the same workload as
tests/benches/append_cost.rs (messages 1 to 2,000 of about 200 bytes, alternating user and
assistant, to one conversation) through LangChain's DynamoDBChatMessageHistory, which keeps a
whole session in one item, against the same local DynamoDB server. Measures the bytes of the
write requests each append sends (a boto3 hook on the client's requests) and its time, and
where it fails (DynamoDB's 400 KB item limit). Writes docs/benchmarks/append-cost-langchain.json.

Run by scripts/bench.sh, which installs LangChain into its own virtualenv (.venv-bench).
"""

import json
import os
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import boto3
from langchain_community.chat_message_histories import DynamoDBChatMessageHistory
from langchain_core.messages import AIMessage, HumanMessage

CHECKPOINTS = [1, 10, 100, 1_000, 2_000]
MESSAGES = 2_000
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def content(n: int) -> str:
    """Message n (from 1), as the Rust side makes it."""
    text = f"Message {n}: "
    while len(text) < 200:
        text += "planning the trip to Lisbon, the trams and the bakeries. "
    return text[:200]


def main() -> None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        sys.exit("run this through scripts/bench.sh, which starts the local servers")
    table_name = f"bench-langchain-{uuid.uuid4().hex[:12]}"
    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint)
    table = dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "SessionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "SessionId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()

    history = DynamoDBChatMessageHistory(
        table_name=table_name, session_id="append-cost", endpoint_url=endpoint
    )
    sent = {"bytes": 0, "calls": 0}

    def measure(request, operation_name=None, **_):
        name = operation_name or request.headers.get("X-Amz-Target", b"").decode().split(".")[-1]
        if name in WRITES:
            body = request.body or b""
            sent["bytes"] += len(body if isinstance(body, bytes) else body.encode())
            sent["calls"] += 1

    history.table.meta.client.meta.events.register("before-send.dynamodb.*", measure)

    appends = []
    failure = None
    for n in range(1, MESSAGES + 1):
        message = HumanMessage(content=content(n)) if n % 2 == 1 else AIMessage(content=content(n))
        before = dict(sent)
        started = time.perf_counter()
        try:
            history.add_message(message)
        except Exception as error:  # the item limit, as DynamoDB reports it
            failure = {"atMessage": n, "error": str(error)[:300]}
            break
        took = (time.perf_counter() - started) * 1000.0
        appends.append((sent["bytes"] - before["bytes"], sent["calls"] - before["calls"], took))

    points = []
    for at in CHECKPOINTS:
        if at > len(appends):
            points.append({"message": at, "failed": True})
            continue
        written, calls, _ = appends[at - 1]
        window = appends[max(0, at - 5):at]
        ms = sum(a[2] for a in window) / len(window)
        points.append(
            {"message": at, "bytesWritten": written, "writeCalls": calls, "ms": round(ms, 2)}
        )
    results = {
        "benchmark": "append cost as a conversation grows (LangChain DynamoDBChatMessageHistory)",
        "peer": f"langchain-community {version('langchain-community')}, boto3 {version('boto3')}",
        "server": "moto_server on 127.0.0.1 (the same one Numina's side runs against)",
        "messageBytes": 200,
        "messages": MESSAGES,
        "completed": len(appends),
        "failure": failure,
        "points": points,
        "totalBytesWritten": sum(a[0] for a in appends),
        "note": "bytesWritten: the bodies of the write requests one append sends (a PutItem "
        "of the whole session: every message so far). ms: the mean of the append and the four "
        "before it (each append also reads the whole session first).",
    }
    out = Path(__file__).resolve().parents[2] / "docs/benchmarks/append-cost-langchain.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
