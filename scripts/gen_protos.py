"""Regenerate the committed code for proto/jobs/v1: the Python modules into shared/proto (the server's) and
into clients/python/jobclient/_proto (the client distribution's own copy, so the client needs nothing of the
server), and the REST shim's OpenAPI document (``python -m scripts.gen_protos``, which ``make proto`` runs).

protoc names imports after the proto package (``from jobs.v1 import ...``); this script rewrites them to each
copy's package so the generated modules import from anywhere. The OpenAPI document takes its
descriptions from the proto's comments, which protoc keeps in the source info of a descriptor set (the
generated Python carries none): that is why it is written here, at build time, and served as a file.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
# Output folder -> the package its modules are imported as.
OUTPUTS = {
    ROOT / "shared" / "proto": "shared.proto",
    ROOT / "clients" / "python" / "jobclient" / "_proto": "jobclient._proto",
}
SOURCES = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "jobs").rglob("*.proto"))
SERVICE_FILE = "jobs/v1/job_service.proto"


def main() -> int:
    """Generate every copy of the Python modules, then write the OpenAPI document."""
    files: list[FileDescriptorProto] = []
    for out_dir, package in OUTPUTS.items():
        generated = generate(out_dir, package)
        if generated is None:
            return 1
        files = generated
    write_openapi(next(file for file in files if file.name == SERVICE_FILE))
    return 0


def generate(out_dir: Path, package: str) -> list[FileDescriptorProto] | None:
    """Run protoc into ``out_dir`` and make the output importable as ``<package>.jobs.v1``; returns the
    descriptors with their source info, or None when protoc failed (it printed why)."""
    out_dir.mkdir(exist_ok=True)
    (out_dir / "__init__.py").touch()
    generated = out_dir / "jobs"
    if generated.exists():
        shutil.rmtree(generated)
    well_known = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        descriptor_set = Path(scratch) / "descriptors.binpb"
        rc = protoc.main(
            [
                "protoc",
                f"-I{PROTO_DIR}",
                f"-I{well_known}",
                f"--python_out={out_dir}",
                f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                f"--descriptor_set_out={descriptor_set}",
                "--include_source_info",
                *SOURCES,
            ]
        )
        if rc != 0:
            return None
        files = list(FileDescriptorSet.FromString(descriptor_set.read_bytes()).file)
    for path in generated.rglob("*.py*"):
        text = re.sub(r"^from jobs\.", f"from {package}.jobs.", path.read_text(), flags=re.MULTILINE)
        path.write_text(text)
    for folder in [generated, *[p for p in generated.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return files


def write_openapi(source: FileDescriptorProto) -> None:
    """The OpenAPI document of JobService, described by the comments in ``source`` (its FileDescriptorProto)."""
    # Imported only now: they import the modules generated above.
    from services.api.console import OPENAPI_DOCUMENT
    from services.api.openapi import openapi_document, source_comments
    from shared.proto.jobs.v1 import job_service_pb2

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    service = job_service_pb2.DESCRIPTOR.services_by_name["JobService"]
    document = openapi_document(service, source_comments(source), version)
    OPENAPI_DOCUMENT.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
