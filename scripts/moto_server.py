"""moto's server, with requests handled one at a time.

moto's DynamoDB backend is not safe under concurrent requests: a TransactWriteItems call
that is cancelled restores a copy of the whole table taken when it started, wiping out
every write another request made in the meantime. Real DynamoDB has no such behaviour, and
our tests deliberately run transactions concurrently (20 parallel appends, retry storms).
Serialising requests behind one lock keeps moto's answers correct; connections are still
accepted concurrently, so clients never block on each other's idle keep-alive sockets.

Usage: python scripts/moto_server.py PORT
"""

import sys
import threading

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


def main() -> None:
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
