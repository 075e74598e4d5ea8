"""``JobClient``: the blocking client of ``jobs.v1.JobService``.

What each call does is written once in ``_calls.py``; this module only does its I/O with grpc's blocking
stubs (see ``JobClient._drive``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from jobclient import _calls
from jobclient._calls import DEFAULT_BULK_DEADLINE, DEFAULT_PAGE_SIZE, CallOptions, Emit, ReadStream, Run, Sleep
from jobclient._channel import BaseClient
from jobclient._proto.jobs.v1.job_service_pb2_grpc import JobServiceStub

__all__ = ["DEFAULT_BULK_DEADLINE", "DEFAULT_PAGE_SIZE", "JobClient"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


def blocking(
    call: Callable[Concatenate[CallOptions, P], _calls.Call[Any, R]],
) -> Callable[Concatenate[JobClient, P], R]:
    """A JobClient method that makes ``call`` and returns its result."""

    def method(self: JobClient, *args: P.args, **kwargs: P.kwargs) -> R:
        run = Run(call(self._options, *args, **kwargs))
        for _ in self._drive(run):
            pass
        return run.result

    _calls.method_signature(call, method)
    return method


def iterating(
    call: Callable[Concatenate[CallOptions, P], _calls.Call[T, None]],
) -> Callable[Concatenate[JobClient, P], Iterator[T]]:
    """A JobClient method that makes ``call`` and iterates over what it emits."""

    def method(self: JobClient, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._drive(Run(call(self._options, *args, **kwargs)))

    _calls.method_signature(call, method)
    return method


class JobClient(BaseClient):
    """A blocking client of the job service. Thread-safe; one per process is plenty.

    >>> with JobClient("localhost:50051") as client:
    ...     job = client.submit("send_email", {"to": "user@example.com"})
    ...     done = client.wait(job.job_id, timeout=60)

    Args:
        target: ``host:port`` of the api's gRPC port.
        token: a bearer token, sent as ``authorization: Bearer <token>`` with every call.
        tls: connect over TLS, trusting gRPC's default roots (or ``root_certificates``).
        root_certificates: PEM bytes, or the path of a PEM file, of the CA(s) to trust; implies ``tls``.
        deadline: seconds each try of a call may take (None: no limit). Streams (``watch``) have none.
        bulk_deadline: the same for ``cancel_jobs`` and ``retry_jobs``, which answer once every job of their
            filter is done (the server's own limit, BULK_REQUEST_TIMEOUT_SECONDS, is 600 s by default).
        retry: how UNAVAILABLE and DEADLINE_EXCEEDED are retried (``NO_RETRY`` turns retrying off).
        options: extra gRPC channel arguments.
    """

    def _connect(self) -> None:
        self._channel = self._settings.sync_channel()
        self._stub = JobServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    submit = blocking(_calls.submit)
    submit_many = blocking(_calls.submit_many)
    get = blocking(_calls.get)
    list = iterating(_calls.list)
    attempts = blocking(_calls.attempts)
    cancel_jobs = blocking(_calls.cancel_jobs)
    retry_jobs = blocking(_calls.retry_jobs)
    cancel = blocking(_calls.cancel)
    retry = blocking(_calls.retry)
    stats = blocking(_calls.stats)
    watch = iterating(_calls.watch)
    wait = blocking(_calls.wait)
    set_limits = blocking(_calls.set_limits)
    list_limits = blocking(_calls.list_limits)
    delete_limits = blocking(_calls.delete_limits)
    create_schedule = blocking(_calls.create_schedule)
    get_schedule = blocking(_calls.get_schedule)
    list_schedules = blocking(_calls.list_schedules)
    update_schedule = blocking(_calls.update_schedule)
    pause_schedule = blocking(_calls.pause_schedule)
    resume_schedule = blocking(_calls.resume_schedule)
    trigger_schedule = blocking(_calls.trigger_schedule)
    list_types = iterating(_calls.list_types)
    pause_type = blocking(_calls.pause_type)
    resume_type = blocking(_calls.resume_type)
    list_executors = blocking(_calls.list_executors)
    delete_schedule = blocking(_calls.delete_schedule)

    def _drive(self, run: Run[T, Any]) -> Iterator[T]:
        """Do the call's operations one by one, yielding what it emits; cancels its streams at the end."""
        try:
            for operation in run:
                if isinstance(operation, Emit):
                    yield operation.value
                    continue
                try:
                    run.succeeded(self._do(operation))
                except grpc.RpcError as error:
                    run.failed(error)
        finally:
            run.close()

    def _do(self, operation: _calls.Operation) -> Any:
        if isinstance(operation, Sleep):
            return time.sleep(operation.seconds)
        if isinstance(operation, ReadStream):
            return next(operation.stream, None)
        # Unary and OpenStream alike: a blocking stub returns the response, or the stream to iterate.
        rpc = getattr(self._stub, operation.method)
        return rpc(operation.request, timeout=operation.timeout, metadata=self._settings.metadata)
