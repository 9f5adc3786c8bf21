"""The peer side of the append-cost benchmark: the same workload as
tests/benches/append_cost.rs (messages 1 to 2,000 of about 200 bytes, alternating user and
assistant, to one conversation) through LangChain's DynamoDBChatMessageHistory, which keeps a
whole session in one item, against the same local DynamoDB server. Measures the bytes of the
write requests each append sends (a boto3 hook on the client's requests), its time, and where
it fails (DynamoDB's 400 KB item limit). Writes docs/benchmarks/append-cost-langchain.json.

moto gets slower with every append to the growing item (seconds per append by message 500,
most of it in moto's own serialisation of the item it returns to the append's read), so
appending all 2,000 one at a time would take hours. The run appends one at a time, timing
each, for PEER_BUDGET_SECONDS (default 300); after that, each checkpoint still ahead is
reached by one `add_messages` call carrying the messages up to four before it (that call is
neither timed nor counted), and the last five appends up to the checkpoint are timed one at a
time again. The item's size is computed from the stored item by DynamoDB's documented size
rules; from it the run projects the message at which the item passes 400 KB. moto sizes items
by a rule of its own (no list or map overheads, a 405,000-byte limit), so the run also
projects moto's refusal, jumps to just before it and appends one at a time until the server
refuses one: the failure is observed on the server, and DynamoDB's is computed. The bytes each append would send (the peer's own UpdateItem, serialised by
botocore) are computed for every message up to the failure; for every append that was sent
they must equal the measured bytes, which the run checks.

Run by scripts/bench.sh, which installs LangChain into its own virtualenv (.venv-bench).
"""

import json
import math
import os
import sys
import time
import uuid
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.serialize import create_serializer
from langchain_community.chat_message_histories import DynamoDBChatMessageHistory
from langchain_core.messages import AIMessage, HumanMessage, messages_to_dict

CHECKPOINTS = [1, 10, 100, 1_000, 2_000]
MESSAGES = 2_000
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
# DynamoDB's item size limit: 400 KB, attribute names included.
ITEM_LIMIT_BYTES = 400 * 1024
# Appends timed one at a time before each checkpoint (the checkpoint's ms is their mean).
WINDOW = 5
# After the projected failure, how many more single appends to try before giving up.
PAST_PROJECTION = 20


def content(n: int) -> str:
    """Message n (from 1), as the Rust side makes it."""
    text = f"Message {n}: "
    while len(text) < 200:
        text += "planning the trip to Lisbon, the trams and the bakeries. "
    return text[:200]


def message(n: int):
    return HumanMessage(content=content(n)) if n % 2 == 1 else AIMessage(content=content(n))


class Session:
    """One LangChain session on the local server, with the write bytes it sends counted."""

    def __init__(self, endpoint: str):
        self.table_name = f"bench-langchain-{uuid.uuid4().hex[:12]}"
        dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint)
        table = dynamodb.create_table(
            TableName=self.table_name,
            KeySchema=[{"AttributeName": "SessionId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "SessionId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table.wait_until_exists()
        self.history = DynamoDBChatMessageHistory(
            table_name=self.table_name, session_id="append-cost", endpoint_url=endpoint
        )
        self.sent = {"bytes": 0, "calls": 0}
        self.read = {"bytes": 0}
        client = self.history.table.meta.client
        client.meta.events.register("before-send.dynamodb.*", self._count)
        client.meta.events.register("after-call.dynamodb.GetItem", self._count_read)
        self._update_item = client.meta.service_model.operation_model("UpdateItem")
        self._serializer = create_serializer("json")
        self._types = TypeSerializer()
        self.length = 0

    def _count(self, request, operation_name=None, **_):
        name = operation_name or request.headers.get("X-Amz-Target", b"").decode().split(".")[-1]
        if name in WRITES:
            body = request.body or b""
            self.sent["bytes"] += len(body if isinstance(body, bytes) else body.encode())
            self.sent["calls"] += 1

    def _count_read(self, http_response=None, **_):
        if http_response is not None:
            self.read["bytes"] += len(http_response.content or b"")

    def append(self, n: int):
        """Appends message n as an app would (one add_message): (bytes written, write calls,
        ms, bytes read)."""
        before, read_before = dict(self.sent), self.read["bytes"]
        started = time.perf_counter()
        self.history.add_message(message(n))
        took = (time.perf_counter() - started) * 1000.0
        self.length = n
        written = self.sent["bytes"] - before["bytes"]
        return written, self.sent["calls"] - before["calls"], took, self.read["bytes"] - read_before

    def jump_to(self, n: int) -> None:
        """Messages length+1..n in one add_messages call: a fast-forward, not measured."""
        if n > self.length:
            self.history.add_messages([message(k) for k in range(self.length + 1, n + 1)])
            self.length = n

    def stored_item(self) -> dict:
        key = {"SessionId": "append-cost"}
        return self.history.table.get_item(Key=key, ConsistentRead=True)["Item"]

    def bytes_sent_by_append(self, history: list) -> int:
        """The body of the UpdateItem add_message sends when the session becomes `history`
        (a list of message dicts), serialised by botocore as the client serialises it."""
        params = {
            "TableName": self.table_name,
            "Key": {"SessionId": {"S": "append-cost"}},
            "UpdateExpression": "set History = :h",
            "ExpressionAttributeValues": {":h": self._types.serialize(history)},
        }
        request = self._serializer.serialize_to_request(params, self._update_item)
        body = request["body"]
        return len(body if isinstance(body, bytes) else body.encode())


def dynamodb_number_bytes(value) -> int:
    digits = len(str(abs(value)).replace(".", "").lstrip("0")) or 1
    return (digits + 1) // 2 + 1


class SizeRule:
    """How a server sizes an item against its limit. DynamoDB's documented rules: strings and
    binary by their bytes, numbers about one byte per two digits plus one, null and booleans
    one byte, lists and maps three bytes plus one per element (and a map's keys). moto's
    (scripts/moto_server.py): the same without the list and map overheads, numbers by their
    digits."""

    def __init__(self, container: int, element: int, number_bytes, limit: int):
        self.container, self.element, self.number_bytes = container, element, number_bytes
        self.limit = limit

    def value_bytes(self, value) -> int:
        if value is None or isinstance(value, bool):
            return 1
        if isinstance(value, str):
            return len(value.encode("utf-8"))
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        if isinstance(value, (int, float, Decimal)):
            return self.number_bytes(value)
        if isinstance(value, dict):
            entries = (len(k.encode("utf-8")) + self.value_bytes(v) for k, v in value.items())
        elif isinstance(value, (list, tuple, set)):
            entries = (self.value_bytes(v) for v in value)
        else:
            raise TypeError(f"no size rule for {type(value)}")
        return self.container + sum(self.element + size for size in entries)

    def item_bytes(self, item: dict) -> int:
        return sum(len(name.encode("utf-8")) + self.value_bytes(v) for name, v in item.items())

    def first_refused(self, item: dict, length: int) -> int:
        """The first message at which the session's item passes the limit, from the stored
        item's exact size and its last two entries (one user, one assistant message: the
        pattern repeats, every message being 200 bytes)."""
        size = self.item_bytes(item)
        pair = [self.element + self.value_bytes(entry) for entry in item["History"][-2:]]
        n = length
        while size <= self.limit:
            n += 1
            size += pair[(n - length - 1) % 2]
        return n


DYNAMODB = SizeRule(3, 1, dynamodb_number_bytes, ITEM_LIMIT_BYTES)
MOTO = SizeRule(0, 0, lambda value: len(str(value)), 405_000)


def session_item_bytes(history: list) -> int:
    """The size, by DynamoDB's rules, of the peer's item holding `history` (message dicts);
    0 before the first message (no item)."""
    if not history:
        return 0
    return DYNAMODB.item_bytes({"SessionId": "append-cost", "History": history})


def main() -> None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        sys.exit("run this through scripts/bench.sh, which starts the local servers")
    budget = float(os.environ.get("PEER_BUDGET_SECONDS", "300"))
    session = Session(endpoint)
    started = time.monotonic()
    measured = {}  # message -> (bytes, calls, ms), for every append sent one at a time
    failure = None

    def append(n: int) -> bool:
        nonlocal failure
        try:
            measured[n] = session.append(n)
            return True
        except Exception as error:  # the item limit, as the server reports it
            failure = {"atMessage": n, "error": str(error)[:300]}
            return False

    # One at a time while the budget lasts.
    n = 0
    while n < MESSAGES and time.monotonic() - started < budget:
        n += 1
        if not append(n):
            break
    one_at_a_time = session.length
    # Each checkpoint still ahead: fast-forward, then the last appends timed one at a time.
    projection = None
    if failure is None:
        projection = DYNAMODB.first_refused(session.stored_item(), session.length)
        for at in [c for c in CHECKPOINTS if c > session.length and c < projection]:
            session.jump_to(at - WINDOW)
            if not all(append(k) for k in range(session.length + 1, at + 1)):
                break
    # The failure: from just before the server's own projection, one at a time until it
    # refuses an append (moto counts sizes by its own rule, so it refuses later than DynamoDB).
    if failure is None and session.length < MESSAGES:
        on_server = MOTO.first_refused(session.stored_item(), session.length)
        session.jump_to(min(on_server, MESSAGES) - 3)
        for k in range(session.length + 1, min(on_server + PAST_PROJECTION, MESSAGES) + 1):
            if not append(k):
                break
    final_item = session.stored_item()

    # What every append up to the failure sends, computed; checked against every one sent.
    last = failure["atMessage"] - 1 if failure else session.length
    dicts = messages_to_dict([message(k) for k in range(1, last + 1)])
    computed = {k: session.bytes_sent_by_append(dicts[:k]) for k in range(1, last + 1)}
    mismatched = {k: (m[0], computed[k]) for k, m in measured.items() if computed.get(k) != m[0]}
    if mismatched:
        sys.exit(f"computed bytes differ from the bytes sent (message: (sent, computed)): {mismatched}")

    points = []
    for at in CHECKPOINTS:
        if at not in measured:
            points.append({"message": at, "failed": True})
            continue
        written, calls, _, read = measured[at]
        window = [measured[k][2] for k in range(at - WINDOW + 1, at + 1) if k in measured]
        before, after = (session_item_bytes(dicts[:k]) for k in (at - 1, at))
        points.append(
            {
                "message": at,
                "bytesWritten": written,
                "writeCalls": calls,
                "bytesRead": read,
                "itemBytes": after,
                # UpdateItem: one write unit per KB of the larger of the item before and after;
                # the read before it (eventually consistent): half a unit per 4 KB.
                "writeUnits": math.ceil(max(before, after) / 1024),
                "readUnits": math.ceil(before / 4096) / 2 if before else 0.5,
                "ms": round(sum(window) / len(window), 2),
                "timedAppends": len(window),
            }
        )
    results = {
        "benchmark": "append cost as a conversation grows (LangChain DynamoDBChatMessageHistory)",
        "peer": f"langchain-community {version('langchain-community')}, boto3 {version('boto3')}",
        "server": "moto_server on 127.0.0.1 (the same one Numina's side runs against)",
        "messageBytes": 200,
        "messages": MESSAGES,
        "budgetSeconds": budget,
        "appendedOneAtATime": one_at_a_time,
        "completed": last,
        "failure": failure,
        "itemBytesAtEnd": DYNAMODB.item_bytes(final_item),
        "itemLimitBytes": ITEM_LIMIT_BYTES,
        "projectedFailureAtMessage": projection,
        "points": points,
        "totalBytesWritten": sum(computed.values()),
        "totalBytesWrittenMeasured": sum(m[0] for m in measured.values()),
        "note": "bytesWritten: the bodies of the write requests one append sends (an "
        "UpdateItem setting the whole session: every message so far). itemBytes: the session's item after the append, by DynamoDB's size rules; writeUnits and readUnits: what DynamoDB bills for the append's UpdateItem and its read, from those sizes. bytesRead: the body of "
        "the GetItem response each append reads the session with first. ms: the mean of the "
        "append and the four before it, each sent and timed on its own (each append also reads "
        "the whole session first). Messages between timed windows were added by one "
        "add_messages call each (fast-forward, not measured). totalBytesWritten: what appending "
        "messages 1 to `completed` one at a time sends, computed with botocore's serializer "
        "(equal to the measured bytes for every append sent, checked). projectedFailureAtMessage:"
        " where the item passes 400 KB by DynamoDB's documented size rules; failure.atMessage:"
        " where the server (moto, limit 405,000 bytes by its own size rule) refused the append.",
    }
    out = Path(__file__).resolve().parents[2] / "docs/benchmarks/append-cost-langchain.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
