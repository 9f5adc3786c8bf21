"""moto's server, with requests handled one at a time.

moto's DynamoDB backend is not safe under concurrent requests: a TransactWriteItems call
that is cancelled restores a copy of the whole table taken when it started, wiping out
every write another request made in the meantime. Real DynamoDB has no such behaviour, and
our tests deliberately run transactions concurrently (20 parallel appends, retry storms).
Serialising requests behind one lock keeps moto's answers correct; connections are still
accepted concurrently, so clients never block on each other's idle keep-alive sockets.

Fixes of moto's memory, time, streams, item size check, queue attributes and transaction
tokens, applied before it serves (see untrack_models, roll_back_transactions_by_item,
count_replaced_attributes_once, read_queue_attributes_when_asked and
honour_client_request_tokens).

Usage: python scripts/moto_server.py PORT
"""

import copy
import json
import sys
import threading
import time
from collections.abc import Mapping

import moto.dynamodb.models as dynamodb_models
from moto.core.common_models import BaseModel
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.models.table import Table
from moto.sqs.models import Queue, camelcase_to_underscores

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class OneAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Drain the response inside the lock: moto builds it while iterating.
            return list(self.app(environ, start_response))


def untrack_models() -> None:
    """moto keeps a list of every model object it ever made, for its dashboard: every item,
    stream record, shard iterator and each whole-table copy a transaction takes. None is ever
    freed; a suite of transactions over a table with a stream grew it past 20 GB. Nothing
    here uses the dashboard, so objects are made without being listed."""

    def new(cls, *args, **kwargs):
        return object.__new__(cls)

    BaseModel.__new__ = staticmethod(new)


class _NoTableCopies:
    """`copy` as moto's DynamoDB module sees it: while a transaction runs, a table is not
    copied (moto's own rollback then puts the live table back in place of itself)."""

    def __init__(self):
        self.in_transaction = False

    def deepcopy(self, value, memo=None):
        if self.in_transaction and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _touched_items(backend, transact_items):
    """What each item of a transaction holds before it runs: (table, hash, range, a copy of
    the item or None), for the items whose key can be read (one that cannot writes nothing)."""
    touched = []
    for entry in transact_items:
        try:
            _, op = next(iter(entry.items()))
            table = backend.tables[op["TableName"]]
            key = op.get("Key") or op["Item"]
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except (KeyError, TypeError, AttributeError, StopIteration):
            continue
        prior = table.get_item(hash_value, range_value)
        touched.append((table, hash_value, range_value, copy.deepcopy(prior)))
    return touched


def roll_back_transactions_by_item() -> None:
    """moto backs a transaction up by copying every table it names, whole (once per item of
    the transaction), so each TransactWriteItems costs time in proportion to the table and
    its stream: appends slowed down as a suite or a benchmark filled the table. Here a
    transaction keeps what the items it names held before it ran, and a cancelled one puts
    back exactly those, and drops the stream records its writes added (readers of the stream
    never see a cancelled write, as in DynamoDB)."""
    copies = _NoTableCopies()
    dynamodb_models.copy = copies
    transact = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        touched = _touched_items(self, transact_items)
        streams = [
            (table.stream_shard, len(table.stream_shard.items))
            for table in {id(t): t for t, _, _, _ in touched}.values()
            if table.stream_shard is not None
        ]
        copies.in_transaction = True
        try:
            return transact(self, transact_items)
        except Exception:
            # In reverse, so an item named twice gets what it held before the first.
            for table, hash_value, range_value, prior in reversed(touched):
                if range_value is None:
                    if prior is None:
                        table.items.pop(hash_value, None)
                    else:
                        table.items[hash_value] = prior
                elif prior is None:
                    table.items[hash_value].pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = prior
            for shard, length in streams:
                del shard.items[length:]
            raise
        finally:
            copies.in_transaction = False

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items


# moto's item size limit (its docstring: DynamoDB's measured limit lies between 409 and 410 KB).
MOTO_ITEM_LIMIT = 405000


def count_replaced_attributes_once() -> None:
    """moto checks an item's size limit as each attribute is set, by adding the new value to
    the item's size with the value it replaces still counted: an UpdateItem that replaces a
    large attribute (SET History = :h, as LangChain's chat history does on every append) is
    refused once the old and new values together pass the limit, at about half the item size
    DynamoDB allows. The check counts every attribute but the one being set, then the new
    value; everything else about the limit (moto's own size rule) is moto's."""

    def size(value) -> int:
        return value.size() if type(value) is DynamoType else bytesize(str(value))

    def set_attribute(self, key, value):
        others = sum(bytesize(str(name)) + size(v) for name, v in self.items() if name != key)
        if others + bytesize(str(key)) + size(value) > MOTO_ITEM_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self, key, value)

    LimitedSizeDict.__setitem__ = set_attribute


class _QueueAttributes(Mapping):
    """A queue's attributes, each read from the queue when asked for."""

    def __init__(self, queue):
        self.queue = queue
        names = list(Queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += Queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += Queue.KMS_ATTRIBUTES
        if queue.policy:
            names.append("Policy")
        if queue.redrive_policy:
            names.append("RedrivePolicy")
        self.names = names

    def __getitem__(self, name):
        if name not in self.names:
            raise KeyError(name)
        if name == "Policy":
            return self.queue.policy
        if name == "RedrivePolicy":
            import json

            return json.dumps(self.queue.redrive_policy)
        value = getattr(self.queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)


def read_queue_attributes_when_asked() -> None:
    """moto's queue builds every attribute of the queue whenever one is read, counting its
    messages three times over (visible, in flight, delayed), and sending a message reads one:
    each message sent cost time in proportion to the queue's length, so 3,000 messages took
    minutes. The attributes are the same, each read only when asked for."""

    Queue.attributes = property(_QueueAttributes)


# How long DynamoDB remembers a transaction's ClientRequestToken.
CLIENT_REQUEST_TOKEN_SECONDS = 600


def honour_client_request_tokens() -> None:
    """DynamoDB takes a TransactWriteItems sent again with the same ClientRequestToken within 10
    minutes as the call it repeats: it succeeds without being applied again (the same token on
    different items fails with IdempotentParameterMismatchException). The SDK gives every
    transaction a token and keeps it across its retries, so a retry of a commit whose answer
    was lost is not applied twice. moto ignores the token and applied it again; here it is
    honoured as DynamoDB does."""
    from moto.dynamodb.exceptions import DynamodbException, ERROR_TYPE_PREFIX
    from moto.dynamodb.responses import DynamoHandler
    from moto.core.responses import ActionResult

    transact = DynamoHandler.transact_write_items
    seen = {}  # token: (the items as sent, when)

    def transact_write_items(self):
        token = self.body.get("ClientRequestToken")
        # Binary attributes arrive decoded: compare them as their text.
        items = json.dumps(self.body.get("TransactItems"), sort_keys=True, default=repr)
        now = time.monotonic()
        for old in [t for t, (_, at) in seen.items() if now - at > CLIENT_REQUEST_TOKEN_SECONDS]:
            del seen[old]
        if token is not None and token in seen:
            if seen[token][0] != items:
                raise DynamodbException(
                    ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                    "The request uses the same client token as a previous, but non-identical request.",
                )
            return ActionResult({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})
        answer = transact(self)
        if token is not None:
            seen[token] = (items, now)
        return answer

    DynamoHandler.transact_write_items = transact_write_items


def main() -> None:
    untrack_models()
    roll_back_transactions_by_item()
    count_replaced_attributes_once()
    read_queue_attributes_when_asked()
    honour_client_request_tokens()
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        port,
        OneAtATime(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
