"""The two error roots every stage maps to a delivery outcome.

A :class:`RetryableError` means "try again later": the adapter nacks (or answers
5xx) and Pub/Sub redelivers, dead-lettering after the configured attempts.
A :class:`PermanentError` means "this input will never work": the adapter acks
and records the reason where a person can see it.
"""


class RagrunError(Exception):
    """Base class of ragrun's own errors."""


class RetryableError(RagrunError):
    """A transient failure: the same input may succeed later."""


class ThrottledError(RetryableError):
    """The service refused for quota or rate (HTTP 429): slow down, then retry."""


class PermanentError(RagrunError):
    """A failure that retrying cannot fix (bad input, unsupported format, ...)."""


class ContractError(PermanentError):
    """A message that does not follow a ragrun message contract."""
