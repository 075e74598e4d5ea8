"""Talking to a running api process over REST, the way curl would."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.support.processes import ServiceProcess


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class ApiServer:
    process: ServiceProcess
    grpc_port: int
    http_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        """One HTTP call; JSON bodies are decoded, error statuses are returned, not raised."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload, reply_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, payload, reply_headers = error.code, error.read(), dict(error.headers)
        text = payload.decode()
        content_type = reply_headers.get("Content-Type", "")
        if "ndjson" in content_type:
            decoded: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif "json" in content_type:
            decoded = json.loads(text)
        else:
            decoded = text
        return Reply(status, decoded, reply_headers)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)
