"""The executor: leases READY jobs, runs the handler registered for each job's type, heartbeats its
leases and writes the outcomes back in batches. Run it with ``python -m services.executor``.

What handler authors import from here::

    from services.executor import JobContext, PermanentError, handler

    @handler("resize_image")
    def resize_image(payload: dict, ctx: JobContext) -> dict:
        ...
        return {"width": 640}
"""

from services.executor.context import JobContext
from services.executor.errors import NonRetryableError, PermanentError
from services.executor.registry import handler

__all__ = ["JobContext", "NonRetryableError", "PermanentError", "handler"]
