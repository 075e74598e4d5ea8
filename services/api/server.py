"""Assembles the api process: the gRPC server (JobService, health, reflection) and the REST shim."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from opentelemetry import trace

from services.api import metrics
from services.api.auth import TokenChecker
from services.api.instrumentation import InstrumentedServer
from services.api.rest import RestLimits, build_rest_app
from services.api.servicer import BULK_METHODS, JobServicer
from services.api.settings import ApiSettings, is_loopback
from shared.database import Database
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1 import job_service_pb2_grpc as pb_grpc
from shared.runtime import wait_for_schema
from shared.telemetry import JOB_TYPE_LABEL

__all__ = ["serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JobService"].full_name
SHUTDOWN_GRACE_SECONDS = 5.0


async def serve(settings: ApiSettings, stop: asyncio.Event, traced: bool = False) -> None:
    """Serve gRPC and REST until ``stop`` is set, then drain in-flight calls briefly.

    Waits for the database first; SchemaOutOfDate propagates: running on an old schema would corrupt
    nothing but fail every call.
    """
    # group_writer: group commit's connection, which writes one group of unary submits at a time.
    db = Database(
        settings.database_url,
        "jobservice-api",
        pool_size=settings.db_pool_size,
        group_writer=True,
        tracer=trace.get_tracer("shared.database") if traced else None,
        pooler=settings.database_pooler,
    )
    try:
        if await wait_for_schema(db.check_schema, stop):
            await _serve(settings, db, stop)
    finally:
        db.close()


async def _serve(settings: ApiSettings, db: Database, stop: asyncio.Event) -> None:
    metrics.QUEUE_DEPTH.attach(db.count_jobs_by_status)
    message_options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    tokens = TokenChecker(
        settings.api_tokens,
        rate_limit=settings.token_rate_limit,
        rate_burst=settings.token_rate_burst,
        failure_limit=settings.auth_failure_limit,
        failure_window_seconds=settings.auth_failure_window_seconds,
    )
    JOB_TYPE_LABEL.cap = settings.metrics_max_label_values
    server = grpc.aio.server(options=message_options)
    # Every service registers through it, so that each method is wrapped with auth, spans, errors and metrics.
    instrumented = InstrumentedServer(
        server,
        tokens,
        settings.request_timeout_seconds,
        dict.fromkeys(BULK_METHODS, settings.bulk_request_timeout_seconds),
    )
    servicer = JobServicer(db, settings)
    pb_grpc.add_JobServiceServicer_to_server(servicer, instrumented)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, instrumented)
    # What reflection.enable_server_reflection does for a grpc.aio server (it checks the server's type).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)), instrumented
    )
    grpc_address = f"{settings.bind_host}:{settings.grpc_port}"
    tls = load_tls(settings)
    if tls is None:
        server.add_insecure_port(grpc_address)
    else:
        server.add_secure_port(grpc_address, grpc.ssl_server_credentials([(tls.key, tls.cert)]))
    await server.start()
    for name in (SERVICE_NAME, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    # The REST shim calls the instrumented JobService methods in-process.
    app = build_rest_app(
        instrumented,
        pb.DESCRIPTOR.services_by_name["JobService"],
        RestLimits(settings.max_message_bytes, settings.http_body_timeout_seconds),
        metrics.exposition,
        tokens if settings.metrics_require_token else None,
    )
    # handler_cancellation: a REST watch whose client went away must not keep streaming.
    # keepalive_timeout: a connection gets this long to complete a request's headers, from its start or
    # from the previous reply (aiohttp closes one still waiting for them), and no longer to sit idle.
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        handler_cancellation=True,
        keepalive_timeout=settings.http_header_timeout_seconds,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.bind_host,
        settings.http_port,
        ssl_context=tls.ssl_context() if tls else None,
        # Several api processes share the port (gRPC's server sets SO_REUSEPORT by default).
        reuse_port=settings.processes > 1,
    )
    await site.start()
    log.info(
        "serving gRPC on %s and REST on %s:%d (%s, %s)",
        grpc_address,
        settings.bind_host,
        settings.http_port,
        "TLS" if tls else "plaintext",
        "token auth with roles" if tokens.enabled else "no auth",
    )
    if not tokens.enabled and not is_loopback(settings.bind_host):
        log.warning(
            "no API_TOKENS: anyone who can reach %s may call every method (ALLOW_UNAUTHENTICATED=true)",
            settings.bind_host,
        )

    # Everything built so far lives as long as the process: out of the collector's way, so that the
    # full collections a busy api triggers do not walk it again each time.
    gc.freeze()
    await stop.wait()
    log.info("shutting down")
    await health_servicer.enter_graceful_shutdown()
    await runner.cleanup()
    await server.stop(SHUTDOWN_GRACE_SECONDS)
    await servicer.close()


@dataclass(frozen=True)
class TlsFiles:
    cert: bytes
    key: bytes
    cert_file: str
    key_file: str

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def load_tls(settings: ApiSettings) -> TlsFiles | None:
    if not settings.tls_cert_file:
        return None
    return TlsFiles(
        cert=Path(settings.tls_cert_file).read_bytes(),
        key=Path(settings.tls_key_file).read_bytes(),
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
    )
