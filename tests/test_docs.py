"""The README documents every setting the services and the CLI read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from ragrun_chunker.settings import ChunkerSettings
from ragrun_cli.settings import CliSettings, ReindexSettings
from ragrun_common.telemetry import TelemetrySettings
from ragrun_embedder.settings import EmbedderSettings
from ragrun_query.settings import QuerySettings
from ragrun_writer.settings import WriterSettings

README = Path(__file__).resolve().parents[1] / "README.md"
SETTINGS: list[type[BaseSettings]] = [
    ChunkerSettings, EmbedderSettings, WriterSettings, QuerySettings,
    CliSettings, ReindexSettings, TelemetrySettings,
]  # fmt: skip


def variables(settings: type[BaseSettings]) -> set[str]:
    names: set[str] = set()
    for field in settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
    return names


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_every_variable_is_in_the_configuration_table(settings: type[BaseSettings]) -> None:
    table = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README.read_text(), flags=re.MULTILINE))
    missing = variables(settings) - table
    assert not missing, f"not in the README's configuration table: {sorted(missing)}"
