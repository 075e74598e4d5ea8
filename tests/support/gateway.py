"""The database gateway (shared.database.Database) for tests that are not async themselves.

``gateway(engine)`` answers each operation as a plain call, over the test's own engine: the coroutine
runs on one event loop that a background thread keeps for all tests (a test's own thread may already
run a loop: playwright's sync API leaves one).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from typing import Any

from sqlalchemy import Engine

from shared.database import Database

__all__ = ["BlockingDatabase", "gateway", "on_test_loop", "release"]

CALL_TIMEOUT_SECONDS = 60.0

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()
_gateways: weakref.WeakKeyDictionary[Engine, BlockingDatabase] = weakref.WeakKeyDictionary()


def on_test_loop(coroutine: Any, timeout: float = CALL_TIMEOUT_SECONDS) -> Any:
    """Run ``coroutine`` on the tests' background event loop; its result."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="test-gateway-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result(timeout)


class BlockingDatabase:
    """Every operation of ``db`` as a blocking call: ``gateway(engine).get_jobs([1, 2])``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.db, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return on_test_loop(attribute(*args, **kwargs))

        return call


def gateway(engine: Engine) -> BlockingDatabase:
    """The gateway over ``engine`` (one per engine, kept while the engine lives)."""
    found = _gateways.get(engine)
    if found is None:
        # As many database threads as a test may race calls (its engine's pool still bounds the connections).
        found = _gateways[engine] = BlockingDatabase(Database("", "tests", pool_size=8, engine=engine))
    return found


def release(engine: Engine) -> None:
    """Let the gateway over ``engine`` go (its threads), before the engine itself is disposed."""
    found = _gateways.pop(engine, None)
    if found is not None:
        found.db.close()
