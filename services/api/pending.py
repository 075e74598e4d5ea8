"""A request whose message the instrumentation wrapper asks for only once the caller is admitted."""

from __future__ import annotations

from typing import Any

__all__ = ["PendingRequest"]


class PendingRequest:
    """Stands for a request message until ``load()``, which the wrapper of every RPC
    (services/api/instrumentation.py) awaits right after authorization: the REST shim's body is read
    and parsed only then (services/api/rest.py, ``RestRequest``). ``load`` returns the message, or aborts
    the call through its context."""

    __slots__ = ()

    async def load(self) -> Any:
        raise NotImplementedError
