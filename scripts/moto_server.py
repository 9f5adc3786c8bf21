"""moto's server, with requests handled one at a time.

moto's DynamoDB backend is not safe under concurrent requests: a TransactWriteItems call
that is cancelled restores a copy of the whole table taken when it started, wiping out
every write another request made in the meantime. Real DynamoDB has no such behaviour, and
our tests deliberately run transactions concurrently (20 parallel appends, retry storms).
Serialising requests behind one lock keeps moto's answers correct; connections are still
accepted concurrently, so clients never block on each other's idle keep-alive sockets.

Fixes of moto's memory, time and streams, applied before it serves (see untrack_models and
copy_tables_once_per_transaction).

Usage: python scripts/moto_server.py PORT
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.core.common_models import BaseModel
from moto.dynamodb.models.table import Table

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


class _TableCopies:
    """`copy` as moto's DynamoDB module sees it: while a transaction runs, a table is copied
    once (moto copies it again for every item of the transaction, to the same end)."""

    def __init__(self):
        self.in_transaction = False
        self.copies = {}

    def deepcopy(self, value, memo=None):
        if not (self.in_transaction and isinstance(value, Table)):
            return copy.deepcopy(value, memo)
        if id(value) not in self.copies:
            self.copies[id(value)] = copy.deepcopy(value, memo)
        return self.copies[id(value)]


def copy_tables_once_per_transaction() -> None:
    copies = _TableCopies()
    dynamodb_models.copy = copies
    transact = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        # A cancelled transaction puts back its copy of the table, whose stream is a copy
        # too: readers of the stream (their shard iterators hold the live one) would hear
        # nothing more. Keep the live stream, without what the cancelled writes added to it.
        streams = {
            name: (table, table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        copies.in_transaction, copies.copies = True, {}
        try:
            return transact(self, transact_items)
        except Exception:
            for name, (live, shard, length) in streams.items():
                restored = self.tables.get(name)
                if restored is not None and restored is not live:
                    del shard.items[length:]
                    shard.table = restored
                    restored.stream_shard = shard
            raise
        finally:
            copies.in_transaction, copies.copies = False, {}

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items


def main() -> None:
    untrack_models()
    copy_tables_once_per_transaction()
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
