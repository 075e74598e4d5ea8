"""``AsyncJobClient``: the asyncio (grpc.aio) client of ``jobs.v1.JobService``; the same calls as JobClient.

What each call does is written once in ``_calls.py``; this module only does its I/O with grpc.aio's stubs
(see ``AsyncJobClient._drive``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from jobclient import _calls
from jobclient._calls import CallOptions, Emit, OpenStream, ReadStream, Run, Sleep
from jobclient._channel import BaseClient
from jobclient._proto.jobs.v1.job_service_pb2_grpc import JobServiceStub

__all__ = ["AsyncJobClient"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


def awaitable(
    call: Callable[Concatenate[CallOptions, P], _calls.Call[Any, R]],
) -> Callable[Concatenate[AsyncJobClient, P], Coroutine[Any, Any, R]]:
    """An AsyncJobClient coroutine method that makes ``call`` and returns its result."""

    async def method(self: AsyncJobClient, *args: P.args, **kwargs: P.kwargs) -> R:
        run = Run(call(self._options, *args, **kwargs))
        async for _ in self._drive(run):
            pass
        return run.result

    _calls.method_signature(call, method)
    return method


def async_iterating(
    call: Callable[Concatenate[CallOptions, P], _calls.Call[T, None]],
) -> Callable[Concatenate[AsyncJobClient, P], AsyncIterator[T]]:
    """An AsyncJobClient method that makes ``call`` and iterates (``async for``) over what it emits."""

    def method(self: AsyncJobClient, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._drive(Run(call(self._options, *args, **kwargs)))

    _calls.method_signature(call, method)
    return method


class AsyncJobClient(BaseClient):
    """The asyncio client; every method of JobClient, as coroutines (``list`` and ``watch`` are async
    iterators). Create and use it inside a running event loop, one per loop:

    >>> async with AsyncJobClient("localhost:50051") as client:
    ...     job = await client.submit("send_email", {"to": "user@example.com"})
    ...     async for update in client.watch(job.job_id):
    ...         print(update.status)

    Arguments are those of JobClient.
    """

    def _connect(self) -> None:
        # The channel is made on first use, inside the event loop that will run it.
        self._channel: grpc.aio.Channel | None = None
        self._stub_instance: JobServiceStub | None = None

    @property
    def _stub(self) -> JobServiceStub:
        if self._stub_instance is None:
            self._channel = self._settings.aio_channel()
            self._stub_instance = JobServiceStub(self._channel)
        return self._stub_instance

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub_instance = None

    async def __aenter__(self) -> AsyncJobClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    submit = awaitable(_calls.submit)
    submit_many = awaitable(_calls.submit_many)
    get = awaitable(_calls.get)
    list = async_iterating(_calls.list)
    attempts = awaitable(_calls.attempts)
    cancel_jobs = awaitable(_calls.cancel_jobs)
    retry_jobs = awaitable(_calls.retry_jobs)
    cancel = awaitable(_calls.cancel)
    retry = awaitable(_calls.retry)
    stats = awaitable(_calls.stats)
    watch = async_iterating(_calls.watch)
    wait = awaitable(_calls.wait)
    set_limits = awaitable(_calls.set_limits)
    list_limits = awaitable(_calls.list_limits)
    delete_limits = awaitable(_calls.delete_limits)
    create_schedule = awaitable(_calls.create_schedule)
    get_schedule = awaitable(_calls.get_schedule)
    list_schedules = awaitable(_calls.list_schedules)
    update_schedule = awaitable(_calls.update_schedule)
    pause_schedule = awaitable(_calls.pause_schedule)
    resume_schedule = awaitable(_calls.resume_schedule)
    trigger_schedule = awaitable(_calls.trigger_schedule)
    list_types = async_iterating(_calls.list_types)
    pause_type = awaitable(_calls.pause_type)
    resume_type = awaitable(_calls.resume_type)
    list_executors = awaitable(_calls.list_executors)
    delete_schedule = awaitable(_calls.delete_schedule)

    async def _drive(self, run: Run[T, Any]) -> AsyncIterator[T]:
        """Do the call's operations one by one, yielding what it emits; cancels its streams at the end."""
        try:
            for operation in run:
                if isinstance(operation, Emit):
                    yield operation.value
                    continue
                try:
                    run.succeeded(await self._do(operation))
                except grpc.RpcError as error:
                    run.failed(error)
        finally:
            run.close()

    async def _do(self, operation: _calls.Operation) -> Any:
        if isinstance(operation, Sleep):
            return await asyncio.sleep(operation.seconds)
        if isinstance(operation, ReadStream):
            message = await operation.stream.read()
            return None if message is grpc.aio.EOF else message
        rpc = getattr(self._stub, operation.method)
        call = rpc(operation.request, timeout=operation.timeout, metadata=self._settings.metadata)
        # A unary call is awaited for its response; a stream is returned to read from.
        return call if isinstance(operation, OpenStream) else await call
