"""Cloud Storage client construction (real GCS or an emulator)."""

from __future__ import annotations

import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage


def storage_client(project: str) -> storage.Client:
    """A client for real GCS, or for the emulator named by ``STORAGE_EMULATOR_HOST``."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    return storage.Client(project=project)
