"""The query service's own errors, each mapped to one HTTP status by the adapter."""

from __future__ import annotations

from ragrun_common.errors import PermanentError, RetryableError


class RequestError(PermanentError):
    """A request that can never succeed as sent (400); ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotConfiguredError(PermanentError):
    """The request needs a feature this deployment has not configured (501)."""


class AnswerUnavailableError(RetryableError):
    """The answer model failed in a way worth retrying later (503)."""


class AnswerRejectedError(PermanentError):
    """The answer model refused the request or answered nothing usable (502)."""
