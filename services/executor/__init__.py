"""The executor: leases READY jobs, runs the handler registered for each job's type, heartbeats its
leases and writes the outcomes back in batches. Run it with ``python -m services.executor``.

What handler authors import from here::

    from pydantic import BaseModel

    from services.executor import JobContext, PermanentError, handler

    class ResizeImage(BaseModel):
        url: str
        width: int = 640

    @handler("resize_image")
    def resize_image(payload: ResizeImage, ctx: JobContext) -> dict:
        ...
        return {"width": payload.width}

A payload parameter annotated with a pydantic model or a dataclass receives the validated payload; one
annotated ``dict`` (or not at all) receives the payload as it is. ``services.executor.testing`` runs a
handler in-process for tests. See docs/handlers.md.
"""

from services.executor.context import JobContext
from services.executor.errors import InvalidPayload, NonRetryableError, PermanentError
from services.executor.registry import handler

__all__ = ["InvalidPayload", "JobContext", "NonRetryableError", "PermanentError", "handler"]
