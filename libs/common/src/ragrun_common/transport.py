"""Exception types that mean "the request got no complete answer" (worth retrying).

google-genai 3.x sends through ``httpx2`` (older releases through ``httpx``),
and through ``requests`` when it uses google-auth's mTLS session, so each
transport's root error is included when that library is installed; a stream
cut mid-answer (``StreamError``) counts too.
"""

from __future__ import annotations

import importlib

import google.auth.exceptions


def _network_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [
        TimeoutError,
        ConnectionError,
        google.auth.exceptions.TransportError,
    ]
    for module_name, attribute in (
        ("httpx2", "RequestError"),
        ("httpx", "RequestError"),
        ("httpx2", "StreamError"),
        ("httpx", "StreamError"),
        ("requests", "RequestException"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        error_type = getattr(module, attribute, None)
        if isinstance(error_type, type) and issubclass(error_type, BaseException):
            found.append(error_type)
    return tuple(found)


NETWORK_ERRORS: tuple[type[BaseException], ...] = _network_errors()
