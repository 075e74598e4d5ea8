"""Bearer-token authentication for every RPC, and so for every REST call the shim forwards.

Tokens come from API_TOKENS (comma-separated) and/or API_TOKENS_FILE (one per line, # comments).
With no tokens configured the API is open. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

from shared.settings import SettingsError

__all__ = ["OPEN_METHODS", "TokenChecker", "load_tokens"]

# Health checks stay open so that load balancers and orchestrators need no token.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


def load_tokens(tokens: str, tokens_file: str) -> frozenset[str]:
    """The configured tokens; SettingsError names the variable when one is unusable."""
    found = [token.strip() for token in tokens.split(",") if token.strip()]
    if tokens_file:
        try:
            lines = Path(tokens_file).read_text().splitlines()
        except OSError as exc:
            raise SettingsError(f"API_TOKENS_FILE={tokens_file!r} cannot be read: {exc.strerror}") from None
        found += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for token in found:
        if len(token) < 16 or any(ch.isspace() for ch in token):
            raise SettingsError("API_TOKENS: every token must be at least 16 characters without spaces")
    return frozenset(found)


class TokenChecker:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [token.encode() for token in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def required_for(self, method: str) -> bool:
        """Whether calls of ``method`` (``/package.Service/Method``) need a token."""
        return bool(self._tokens) and method not in OPEN_METHODS

    def allows(self, method: str, authorization: str | None) -> bool:
        """True when auth is off, the method is open, or ``authorization`` is ``Bearer <a valid token>``."""
        if not self.required_for(method):
            return True
        if not authorization or not authorization.startswith("Bearer "):
            return False
        offered = authorization[len("Bearer ") :].strip().encode()
        # Compare against every token so the time taken says nothing about which one nearly matched.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(offered, token)
        return matched
