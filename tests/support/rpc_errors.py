"""Reading the rich error details the api attaches to a failed RPC."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(error: grpc.RpcError) -> list[str]:
    """The fields named by the error's google.rpc.BadRequest details, in order."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no rich status"
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
    return fields
