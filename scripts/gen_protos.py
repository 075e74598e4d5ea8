"""Regenerate the committed Python code for proto/jobs/v1 into shared/proto.

protoc names imports after the proto package (``from jobs.v1 import ...``); this script
rewrites them to the project's package so the generated modules import from anywhere.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "shared" / "proto"
SOURCES = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "jobs").rglob("*.proto"))


def main() -> int:
    """Run protoc, then make the output importable as ``shared.proto.jobs.v1``."""
    generated = OUT_DIR / "jobs"
    if generated.exists():
        shutil.rmtree(generated)
    well_known = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={OUT_DIR}",
            f"--pyi_out={OUT_DIR}",
            f"--grpc_python_out={OUT_DIR}",
            *SOURCES,
        ]
    )
    if rc != 0:
        return rc
    for path in generated.rglob("*.py*"):
        text = re.sub(r"^from jobs\.", "from shared.proto.jobs.", path.read_text(), flags=re.MULTILINE)
        path.write_text(text)
    for folder in [generated, *[p for p in generated.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
