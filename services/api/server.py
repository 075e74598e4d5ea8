"""Assembles the api process: the gRPC server (JobService, health, reflection) and the REST shim."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from services.api import metrics
from services.api.auth import TokenChecker
from services.api.instrumentation import InstrumentedServer
from services.api.rest import build_rest_app
from services.api.servicer import JobServicer
from services.api.settings import ApiSettings
from shared.database.engine import create_database_engine
from shared.database.jobs import JobStore
from shared.database.maintenance import JobMaintenance
from shared.database.schema import check_schema
from shared.errors import DatabaseUnavailable
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1 import job_service_pb2_grpc as pb_grpc

__all__ = ["serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JobService"].full_name
SCHEMA_RETRY_SECONDS = 2.0
SHUTDOWN_GRACE_SECONDS = 5.0


async def wait_for_database(settings: ApiSettings, stop: asyncio.Event) -> JobStore | None:
    """Connect and check the schema, retrying while the database is unreachable.

    SchemaOutOfDate propagates: running on an old schema would corrupt nothing but fail every call.
    """
    engine = create_database_engine(settings.database_url, "jobservice-api", pool_size=settings.db_pool_size)
    while not stop.is_set():
        try:
            await asyncio.to_thread(check_schema, engine)
            # Group commit's connection: it writes one group of unary submits at a time.
            writer = create_database_engine(settings.database_url, "jobservice-api", pool_size=1, autocommit=True)
            return JobStore(engine, writer)
        except DatabaseUnavailable as exc:
            log.warning("waiting for the database: %s", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCHEMA_RETRY_SECONDS)
    return None


async def serve(settings: ApiSettings, stop: asyncio.Event) -> None:
    """Serve gRPC and REST until ``stop`` is set, then drain in-flight calls briefly."""
    store = await wait_for_database(settings, stop)
    if store is None:
        return
    metrics.QUEUE_DEPTH.attach(JobMaintenance(store.engine).count_jobs_by_status)
    message_options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    tokens = TokenChecker(settings.api_tokens)
    server = grpc.aio.server(options=message_options)
    # Every service registers through it, so that each method is wrapped with auth, spans, errors and metrics.
    instrumented = InstrumentedServer(server, tokens, settings.request_timeout_seconds)
    servicer = JobServicer(store, settings)
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
    # The REST shim reaches the gRPC server over a private unix socket: no TLS or port needed on loopback.
    socket_dir = tempfile.mkdtemp(prefix="jobs-api-")
    loopback = f"unix:{socket_dir}/grpc.sock"
    server.add_insecure_port(loopback)
    await server.start()
    for name in (SERVICE_NAME, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    channel = grpc.aio.insecure_channel(loopback, options=message_options)
    app = build_rest_app(
        channel,
        pb.DESCRIPTOR.services_by_name["JobService"],
        settings.max_message_bytes,
        metrics.exposition,
        tokens if settings.metrics_require_token else None,
    )
    # handler_cancellation: a REST watch whose client went away must not keep streaming.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
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
        "token auth" if tokens.enabled else "no auth",
    )

    # Everything built so far lives as long as the process: out of the collector's way, so that the
    # full collections a busy api triggers do not walk it again each time.
    gc.freeze()
    await stop.wait()
    log.info("shutting down")
    await health_servicer.enter_graceful_shutdown()
    await runner.cleanup()
    await server.stop(SHUTDOWN_GRACE_SECONDS)
    await channel.close()
    await servicer.close()
    store.engine.dispose()
    if store.autocommit_engine is not None:
        store.autocommit_engine.dispose()
    shutil.rmtree(socket_dir, ignore_errors=True)


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
