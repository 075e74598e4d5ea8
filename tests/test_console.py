"""The web console (/ui) and the API docs (/docs, /openapi.json), without a browser: routes, content types,
assets, the OpenAPI document's validity and completeness, and that nothing is fetched from other hosts."""

from __future__ import annotations

import http.client
import json
import re
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from grpc_tools import protoc
from openapi_spec_validator import validate

from services.api.console import CONTENT_TYPES, OPENAPI_DOCUMENT, STATIC_DIR
from services.api.openapi import openapi_document, source_comments
from services.api.rest import routes_for_service
from shared.proto.jobs.v1 import job_service_pb2 as pb
from tests.support.api import ApiServer
from tests.support.processes import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
SERVICE = pb.DESCRIPTOR.services_by_name["JobService"]
TOKEN = "console-test-token-0123456789"
# XML namespace names are identifiers, never fetched: the only http:// strings an asset may contain.
NAMESPACES = {"http://www.w3.org/2000/svg"}


def fetch(server: ApiServer, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One GET that does not follow redirects; the body is read into ``.data``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.data = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


class References(HTMLParser):
    """Every src and href of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.found.append(value)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.found


def module_imports(source: str) -> list[str]:
    """The relative module specifiers of ``import ... from "./x.js"`` and ``import "./x.js"``."""
    return re.findall(r"""\b(?:from|import)\s*["'](\.{1,2}/[^"']+)["']""", source)


def test_root_redirects_to_the_console(api_server: ApiServer) -> None:
    reply = fetch(api_server, "/")
    assert reply.status == 302
    assert reply.getheader("Location") == "/ui"


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/docs"])
def test_pages_are_html_with_a_strict_content_security_policy(api_server: ApiServer, path: str) -> None:
    reply = fetch(api_server, path)
    assert reply.status == 200
    assert reply.getheader("Content-Type") == "text/html; charset=utf-8"
    policy = reply.getheader("Content-Security-Policy") or ""
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert reply.getheader("X-Content-Type-Options") == "nosniff"


def test_every_asset_a_page_references_is_served_with_its_content_type(api_server: ApiServer) -> None:
    """Follows the pages' src/href and the JavaScript modules' imports: everything loads, from here."""
    pending = [("/ui", "index.html"), ("/docs", "docs.html")]
    served: set[str] = set()
    while pending:
        url, name = pending.pop()
        if url in served:
            continue
        reply = fetch(api_server, url)
        assert reply.status == 200, url
        suffix = Path(name).suffix
        assert reply.getheader("Content-Type") == CONTENT_TYPES[suffix], url
        served.add(url)
        text = reply.data.decode()  # type: ignore[attr-defined]
        if suffix == ".html":
            for target in references(text):
                if target.startswith(("#", "/ui#", "/docs", "/openapi.json")) or target == "/ui":
                    continue
                assert target.startswith("/ui/static/"), f"{name} refers to {target}"
                pending.append((target, target.rsplit("/", 1)[1]))
        elif suffix == ".js":
            for module in module_imports(text):
                target = "/ui/static/" + module.removeprefix("./")
                pending.append((target, module.rsplit("/", 1)[1]))
    names = {url.rsplit("/", 1)[1] for url in served if url.startswith("/ui/static/")}
    assert {"app.js", "docs.js", "api.js", "console.css", "favicon.svg"} <= names
    # Nothing in static/ is dead weight: every file is reached from a page.
    assert names == {path.name for path in STATIC_DIR.iterdir() if path.suffix != ".html"}


def test_unknown_assets_and_path_tricks_are_404(api_server: ApiServer) -> None:
    for path in ["/ui/static/nope.js", "/ui/static/..%2F__init__.py", "/ui/static/%2e%2e/__init__.py"]:
        assert fetch(api_server, path).status == 404, path


def test_no_asset_refers_to_another_host() -> None:
    for path in sorted(STATIC_DIR.iterdir()):
        text = path.read_text()
        urls = set(re.findall(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s"'`)]*""", text, flags=re.IGNORECASE))
        urls -= NAMESPACES
        # "//" also starts comments in JS and CSS: only something shaped like a host counts.
        hosts = {url for url in urls if re.match(r"(?:https?:)?//[\w-]+(\.[\w-]+)+(/|$)", url, re.IGNORECASE)}
        assert not hosts, f"{path.name} refers to other hosts: {hosts}"
        assert "@import" not in text and "url(http" not in text, path.name


def test_console_statuses_match_the_proto() -> None:
    """The console's status filter lists exactly the statuses a job can have."""
    source = (STATIC_DIR / "util.js").read_text()
    listed = json.loads(re.search(r"export const STATUSES = (\[[^\]]*\]);", source).group(1))  # type: ignore[union-attr]
    expected = [value.name for value in pb.Job.DESCRIPTOR.enum_types_by_name["Status"].values if value.number]
    assert listed == expected


@pytest.fixture(scope="module")
def document(api_server: ApiServer) -> dict[str, Any]:
    reply = fetch(api_server, "/openapi.json")
    assert reply.status == 200
    assert reply.getheader("Content-Type", "").startswith("application/json")
    loaded: dict[str, Any] = json.loads(reply.data)  # type: ignore[attr-defined]
    return loaded


def test_openapi_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "jobs.v1.JobService"
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}


def test_openapi_has_every_annotated_route_with_its_method(document: dict[str, Any]) -> None:
    routes = routes_for_service(SERVICE)
    assert routes and len(routes) == len(SERVICE.methods)  # every RPC has a route
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    assert documented == {(route.template, route.http_method) for route in routes}
    for route in routes:
        operation = document["paths"][route.template][route.http_method.lower()]
        assert operation["operationId"] == route.rpc.name
        in_path = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert in_path == route.path_fields
    listing = document["paths"]["/jobs"]["get"]
    assert [p["name"] for p in listing["parameters"]] == [
        "status",
        "type",
        "page_size",
        "page_token",
        "idempotency_key",
        "unique_key",
        "concurrency_key",
        "schedule",
        "created_after",
        "created_before",
        "fairness_key",
    ]
    assert "requestBody" not in listing
    watch = document["paths"]["/jobs/{job_id}:watch"]["get"]["responses"]["200"]["content"]
    assert list(watch) == ["application/x-ndjson"]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    for option in schema.get("anyOf", [schema]):
        if "$ref" in option:
            resolved: dict[str, Any] = document["components"]["schemas"][option["$ref"].rsplit("/", 1)[1]]
            return resolved
    return schema


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_openapi_schemas_follow_the_message_descriptors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        section, name = ref.removeprefix("#/components/").split("/")
        assert name in document["components"][section], ref
    job = schemas["jobs.v1.Job"]["properties"]
    assert list(job) == [field.name for field in pb.Job.DESCRIPTOR.fields]
    assert job["job_id"] == {"type": "integer", "format": "int64"}
    assert job["created_at"]["type"] == ["string", "null"] and job["created_at"]["format"] == "date-time"
    assert job["payload"]["type"] == ["object", "null"] and job["payload"]["additionalProperties"] is True
    assert job["idempotency_key"]["type"] == ["string", "null"]  # optional: null when unset
    assert job["cancel_requested"]["type"] == "boolean"
    status = _resolve(document, job["status"])
    assert status["enum"] == [value.name for value in pb.Job.DESCRIPTOR.enum_types_by_name["Status"].values]
    stats = schemas["jobs.v1.GetStatsResponse"]["properties"]
    assert stats["status_breakdown"] == {
        "type": "object",
        "additionalProperties": {"type": "integer", "format": "int64"},
        "description": "Jobs per status name, every status present.",
    }
    assert stats["recent_failures"]["type"] == "array"
    assert _resolve(document, stats["recent_failures"]["items"])["title"] == "RecentFailure"
    batch = schemas["jobs.v1.SubmitJobsRequest"]["properties"]["jobs"]
    assert batch["items"] == {"$ref": "#/components/schemas/jobs.v1.SubmitJobRequest"}
    # SubmitJob answers with the job itself (response_body: "job"), never null.
    submit = document["paths"]["/jobs"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert submit == {"$ref": "#/components/schemas/jobs.v1.Job"}
    # Descriptions come from the .proto's comments.
    assert "newest first" in document["paths"]["/jobs"]["get"]["summary"]
    assert schemas["jobs.v1.SubmitJobRequest"]["properties"]["priority"]["description"].startswith("1 (highest)")


def compiled(source: str, directory: Path) -> FileDescriptorProto:
    """``source`` compiled by protoc with its source info (comments included), as make proto compiles."""
    (directory / "demo.proto").write_text(source)
    descriptors = directory / "demo.binpb"
    well_known = Path(protoc.__file__).parent / "_proto"
    arguments = [f"-I{directory}", f"-I{ROOT / 'proto'}", f"-I{well_known}", "--include_source_info"]
    assert protoc.main(["protoc", *arguments, f"--descriptor_set_out={descriptors}", "demo.proto"]) == 0
    (file,) = FileDescriptorSet.FromString(descriptors.read_bytes()).file
    return file


def test_the_served_document_is_the_generated_file_with_the_protos_comments(document: dict[str, Any]) -> None:
    assert document == json.loads(OPENAPI_DOCUMENT.read_text())
    assert document["info"]["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert "newest first" in document["paths"]["/jobs"]["get"]["description"]


def test_openapi_without_proto_comments_has_the_same_structure(document: dict[str, Any]) -> None:
    without = openapi_document(SERVICE, comments={}, version="1")
    validate(without)
    assert without["paths"].keys() == document["paths"].keys()
    assert without["components"]["schemas"].keys() == document["components"]["schemas"].keys()


def test_comments_come_from_protocs_source_info(tmp_path: Path) -> None:
    source = """
syntax = "proto3";
package demo.v1;

import "google/api/annotations.proto";

// The service.
service Things {
  // Gets a thing.
  // Second line.
  rpc Get(GetRequest) returns (Thing) {
    option (google.api.http) = {get: "/things/{id}"};  // braces in strings are not scopes
  }
  // Lists.
  //
  // - one item
  // - another
  rpc List(GetRequest) returns (Thing);
}

message GetRequest { int64 id = 1; }

// Detached comment.

message Thing {
  // Where it is.
  enum State {
    STATE_UNSPECIFIED = 0;
    // Ready.
    READY = 1;
  }
  // Its id.
  int64 id = 1;
  oneof kind {
    // A name.
    string name = 2;
  }
  map<string, int64> counts = 3 [deprecated = true];
  // Nested.
  message Inner {
    // Deep.
    string x = 1;
  }
}

// Top-level.
enum Colour {
  COLOUR_UNSPECIFIED = 0;
  // Red.
  RED = 1;
}
"""
    assert source_comments(compiled(source, tmp_path)) == {
        "demo.v1.Things": "The service.",
        "demo.v1.Things.Get": "Gets a thing. Second line.",
        "demo.v1.Things.List": "Lists.\n\n- one item\n\n- another",
        "demo.v1.Thing.State": "Where it is.",
        "demo.v1.Thing.READY": "Ready.",
        "demo.v1.Thing.id": "Its id.",
        "demo.v1.Thing.name": "A name.",
        "demo.v1.Thing.Inner": "Nested.",
        "demo.v1.Thing.Inner.x": "Deep.",
        "demo.v1.Colour": "Top-level.",
        "demo.v1.RED": "Red.",
    }


@pytest.fixture(scope="module")
def guarded_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    grpc_port, http_port = free_port(), free_port()
    log_dir = tmp_path_factory.mktemp("console-guarded")
    env = {"DATABASE_URL": database_url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port), "API_TOKENS": TOKEN}
    with ServiceProcess("services.api", env, log_dir=log_dir).start() as process:
        process.wait_for_port(http_port).wait_for_port(grpc_port)
        yield ApiServer(process, grpc_port, http_port)


def test_with_tokens_the_pages_load_but_the_data_needs_a_token(guarded_api: ApiServer) -> None:
    """The console can always load and ask for a token; what it shows comes from the guarded API."""
    for path in ["/ui", "/ui/static/app.js", "/docs", "/openapi.json"]:
        assert fetch(guarded_api, path).status == 200, path
    assert fetch(guarded_api, "/admin/stats").status == 401
    authorized = fetch(guarded_api, "/admin/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status == 200
