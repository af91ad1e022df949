"""One way to build the google-genai client in Vertex AI mode, for every caller."""

from __future__ import annotations

from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials


def make_vertex_client(
    *,
    project: str,
    location: str,
    base_url: str | None,
    access_token: str | None,
    timeout_s: float,
) -> genai.Client:
    """A client that makes exactly one try per call (callers own their retries).

    ``base_url`` points it at another endpoint (a private one, or a local
    stand-in in tests); ``access_token`` is a static bearer token that needs no
    refresh; without it the SDK loads Application Default Credentials.
    """
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        # Caught here because the SDK would fail on every request instead.
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    credentials = (
        Credentials(token=access_token)  # type: ignore[no-untyped-call]
        if access_token
        else None
    )
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=credentials,
        http_options=types.HttpOptions(
            base_url=base_url,
            api_version="v1",
            timeout=max(1, round(timeout_s * 1000)),
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
