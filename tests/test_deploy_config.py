"""The deployment configuration agrees with itself and with the code.

docker-compose.yml, the service Dockerfiles and infra/terraform are checked
without a network, a Docker engine or `terraform init`: Debian's docker-compose
validates and resolves the compose file, python-hcl2 parses the Terraform, and
the environment variable names are compared with the settings classes the
services build at start-up.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from ragrun_common.settings import CommonSettings
from ragrun_common.telemetry import TelemetrySettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
TF_DIR = ROOT / "infra" / "terraform"
SERVICES = ("chunker", "embedder", "writer", "query")

# Variables a container may get besides its settings fields: the HTTP port that
# Cloud Run, functions-framework and gunicorn read.
EXTRA_ENV = {"PORT"}

# The settings field behind each pipeline name, e.g. objects_topic -> RAGRUN_OBJECTS_TOPIC.
PIPELINE_FIELDS = (
    "objects_topic",
    "chunks_topic",
    "vectors_topic",
    "chunker_subscription",
    "embedder_subscription",
    "writer_subscription",
)


# --- settings ------------------------------------------------------------------


def _aliases(model: type[BaseSettings]) -> set[str]:
    names: set[str] = set()
    for field in model.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        for choice in choices:
            if isinstance(choice, str):
                names.add(choice)
            elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                names.add(choice.path[0])
    return names


@cache
def _settings_classes(service: str) -> tuple[type[BaseSettings], ...]:
    """The settings classes a service builds, loaded from its settings module's file.

    Loading the file (not the package) keeps this test to ragrun_common's
    dependencies; ``setup`` is the CLI, which reads CommonSettings.
    """
    if service == "setup":
        return (CommonSettings,)
    path = ROOT / "services" / service / "src" / f"ragrun_{service}" / "settings.py"
    name = f"_deploy_config_settings_{service}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    found = tuple(
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, CommonSettings) and obj.__module__ == name
    )
    assert found, f"{path} defines no CommonSettings subclass"
    return found


# Services that also read ragrun_common.telemetry.TelemetrySettings at start-up.
TRACED = ("chunker", "embedder", "writer", "query")


def _readable_env(service: str) -> set[str]:
    names = set(EXTRA_ENV)
    if service in TRACED:
        names |= _aliases(TelemetrySettings)
    for model in _settings_classes(service):
        names |= _aliases(model)
    return names


def _pipeline_defaults() -> dict[str, str]:
    """RAGRUN_* variable -> default name, for every topic and subscription."""
    out: dict[str, str] = {}
    for field_name in PIPELINE_FIELDS:
        field = CommonSettings.model_fields[field_name]
        (alias,) = _aliases_of_field(field_name)
        assert isinstance(field.default, str)
        out[alias] = field.default
    return out


def _aliases_of_field(field_name: str) -> list[str]:
    alias = CommonSettings.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return [c for c in alias.choices if isinstance(c, str)]


# --- docker-compose ------------------------------------------------------------


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "docker-compose is not installed; scripts/bootstrap installs it "
            "(apt-get install docker-compose)"
        )
    return exe


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    # Interpolate with the file's own defaults, not whatever this shell exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGRUN_", "COMPOSE_"))}
    return subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The resolved compose file (anchors merged, variables interpolated)."""
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_builds_each_service_from_its_dockerfile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        build = services[name]["build"]
        assert build["dockerfile"] == f"services/{name}/Dockerfile"
        assert Path(build["context"]).resolve() == ROOT
    assert services["setup"]["build"]["target"] == "setup"


@pytest.mark.parametrize("service", [*SERVICES, "setup"])
def test_compose_sets_only_variables_the_service_reads(
    compose: dict[str, Any], service: str
) -> None:
    env = compose["services"][service].get("environment") or {}
    unknown = set(env) - _readable_env(service)
    assert not unknown, f"{service} gets variables no settings field reads: {sorted(unknown)}"


def test_compose_stack_agrees_on_project_topics_and_subscriptions(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    defaults = _pipeline_defaults()
    for name in [*SERVICES, "setup"]:
        env = services[name]["environment"]
        for alias, default in defaults.items():
            assert env.get(alias, default) == default, (name, alias)
        assert (
            env["GOOGLE_CLOUD_PROJECT"]
            == services["chunker"]["environment"]["GOOGLE_CLOUD_PROJECT"]
        )

    # fake-gcs-server must notify the topic the chunker's subscription is on.
    args = services["gcs"]["command"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    chunker_env = services["chunker"]["environment"]
    assert flags["-event.pubsub-topic"] == chunker_env.get(
        "RAGRUN_OBJECTS_TOPIC", defaults["RAGRUN_OBJECTS_TOPIC"]
    )
    assert flags["-event.pubsub-project-id"] == chunker_env["GOOGLE_CLOUD_PROJECT"]
    assert set(flags["-event.list"].split(",")) == {"finalize", "delete"}

    # The push subscription `setup` creates must reach the chunker.
    setup_args = services["setup"]["command"]
    url = setup_args[setup_args.index("--chunker-url") + 1]
    assert re.fullmatch(r"http://chunker:8080/?", url), url
    assert "PORT" not in chunker_env or chunker_env["PORT"] == "8080"


def test_compose_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            wanted = condition["condition"]
            if wanted == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
            assert wanted in {"service_healthy", "service_completed_successfully"}, (
                name,
                dependency,
                wanted,
            )
    # The workers and the query service start once the subscriptions exist.
    for name in ("embedder", "writer", "query"):
        assert services[name]["depends_on"]["setup"] == {
            "condition": "service_completed_successfully"
        }
    for name in ("writer", "query"):
        assert services[name]["depends_on"]["db"] == {"condition": "service_healthy"}
        assert "DATABASE_URL" in services[name]["environment"]


# --- Dockerfiles ---------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_the_locked_package_as_non_root(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    assert "COPY --from=ghcr.io/astral-sh/uv:" in text
    syncs = re.findall(r"uv sync [^\n]*", text)
    assert any(f"--package ragrun-{service}" in s for s in syncs), syncs
    assert all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    # The dependency layer comes before the sources are copied in.
    first_sync = text.index("uv sync")
    assert text.index(f"COPY services/{service} services/{service}") > first_sync
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_embedder_image_leaves_torch_out_by_default() -> None:
    text = (ROOT / "services" / "embedder" / "Dockerfile").read_text()
    assert re.search(r'^ARG EXTRAS=""$', text, flags=re.MULTILINE)


# --- Terraform -----------------------------------------------------------------


def test_terraform_is_formatted() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed; `terraform fmt -check` not run")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"not formatted:\n{result.stdout}{result.stderr}"


_META_KEYS = {
    "__is_block__",
    "__comments__",
    "__inline_comments__",
    "__start_line__",
    "__end_line__",
}


def _clean(value: Any) -> Any:
    """python-hcl2 7 and 8 to one shape: no metadata keys, string literals unquoted."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in _META_KEYS}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


class Terraform:
    """All .tf files of the root module, merged by block kind."""

    def __init__(self, directory: Path) -> None:
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        files = sorted(directory.glob("*.tf"))
        assert files, f"no .tf files in {directory}"
        for path in files:
            with path.open() as f:
                doc = _clean(hcl2.load(f))
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert name not in self.resources.get(rtype, {}), (rtype, name)
                        self.resources.setdefault(rtype, {})[name] = body
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("variable", []):
                self.variables.update(block)

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def resolve(self, expr: Any) -> Any:
        """Follow `local.a.b` and `TYPE.NAME.name` references down to a literal."""
        if not isinstance(expr, str):
            return expr
        m = re.fullmatch(r"\$\{local\.([\w.]+)\}", expr)
        if m:
            value: Any = self.locals
            for part in m.group(1).split("."):
                value = value[part]
            return self.resolve(value)
        m = re.fullmatch(r"\$\{(\w+)\.(\w+)\.name\}", expr)
        if m and m.group(1) in self.resources:
            return self.resolve(self.resources[m.group(1)][m.group(2)]["name"])
        return expr

    def local_map(self, expr: str) -> dict[str, Any]:
        """The `local.X` maps an expression (a for_each, or a merge of them) draws from."""
        names = re.findall(r"\blocal\.(\w+)", expr)
        assert names, expr
        merged: dict[str, Any] = {}
        for name in names:
            value = self.locals[name]
            assert isinstance(value, dict), expr
            merged.update(value)
        return merged


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return Terraform(TF_DIR)


def _ref(expr: Any, rtype: str) -> str:
    """NAME of the `rtype.NAME[...]` an expression refers to."""
    assert isinstance(expr, str), expr
    m = re.search(rf"\b{rtype}\.(\w+)", expr)
    assert m, f"{expr!r} does not refer to a {rtype}"
    return m.group(1)


def _block(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    blocks = body.get(key)
    if not blocks:
        return None
    assert isinstance(blocks, list) and len(blocks) == 1, (key, blocks)
    block = blocks[0]
    assert isinstance(block, dict)
    return block


def _dead_letter_topics(tf: Terraform) -> set[str]:
    topics = set()
    for sub in tf.of_type("google_pubsub_subscription").values():
        policy = _block(sub, "dead_letter_policy")
        if policy:
            topics.add(_ref(policy["dead_letter_topic"], "google_pubsub_topic"))
    return topics


def _consumer_subscriptions(tf: Terraform) -> dict[str, dict[str, Any]]:
    """Subscriptions of pipeline topics (not the ones that hold dead letters)."""
    dead = _dead_letter_topics(tf)
    return {
        name: sub
        for name, sub in tf.of_type("google_pubsub_subscription").items()
        if _ref(sub["topic"], "google_pubsub_topic") not in dead
    }


def test_every_consumer_subscription_dead_letters(tf: Terraform) -> None:
    consumers = _consumer_subscriptions(tf)
    assert set(consumers) >= {"chunker", "embedder", "writer"}
    dead_topics = []
    for name, sub in consumers.items():
        policy = _block(sub, "dead_letter_policy")
        assert policy, f"subscription {name} has no dead_letter_policy"
        assert policy["max_delivery_attempts"] == "${var.max_delivery_attempts}"
        assert _block(sub, "retry_policy"), f"subscription {name} has no retry_policy"
        dead_topics.append(policy["dead_letter_topic"])
    assert len(set(dead_topics)) == len(dead_topics), "consumers share a dead-letter topic"
    assert tf.variables["max_delivery_attempts"]["default"] == 5


def test_every_topic_has_a_consumer(tf: Terraform) -> None:
    consumed = {
        _ref(sub["topic"], "google_pubsub_topic")
        for sub in tf.of_type("google_pubsub_subscription").values()
    }
    consumed |= {
        _ref(n["topic"], "google_pubsub_topic")
        for n in tf.of_type("google_storage_notification").values()
    }
    topics = set(tf.of_type("google_pubsub_topic"))
    assert topics - consumed == set(), "topics nobody subscribes to lose their messages"
    # A dead-letter topic's subscription is a for_each over the same keys.
    dl_subs = [
        s
        for s in tf.of_type("google_pubsub_subscription").values()
        if _ref(s["topic"], "google_pubsub_topic") in _dead_letter_topics(tf)
    ]
    for dead_topic in _dead_letter_topics(tf):
        body = tf.of_type("google_pubsub_topic")[dead_topic]
        if "for_each" in body:
            assert any(s.get("for_each") == body["for_each"] for s in dl_subs), dead_topic


def test_topics_and_subscriptions_keep_messages_for_replay(tf: Terraform) -> None:
    assert tf.variables["message_retention"]["default"] == "604800s"
    for name, topic in tf.of_type("google_pubsub_topic").items():
        assert topic.get("message_retention_duration") == "${var.message_retention}", name
    for name, sub in tf.of_type("google_pubsub_subscription").items():
        assert sub.get("message_retention_duration") == "${var.message_retention}", name
        assert sub.get("retain_acked_messages") is True, name
        assert "ack_deadline_seconds" in sub, name
        expiry = _block(sub, "expiration_policy")
        assert expiry is not None and expiry["ttl"] == "", f"{name} may expire when idle"


def test_pipeline_is_wired_topic_to_topic(tf: Terraform) -> None:
    subs = tf.of_type("google_pubsub_subscription")
    (notification,) = tf.of_type("google_storage_notification").values()
    assert notification["payload_format"] == "JSON_API_V1"
    assert set(notification["event_types"]) == {"OBJECT_FINALIZE", "OBJECT_DELETE"}
    assert _ref(notification["topic"], "google_pubsub_topic") == "objects"
    assert _ref(subs["chunker"]["topic"], "google_pubsub_topic") == "objects"
    assert _ref(subs["embedder"]["topic"], "google_pubsub_topic") == "chunks"
    assert _ref(subs["writer"]["topic"], "google_pubsub_topic") == "vectors"

    push = _block(subs["chunker"], "push_config")
    assert push is not None, "the chunker subscription must push"
    assert _ref(push["push_endpoint"], "google_cloud_run_v2_service") == "chunker"
    oidc = _block(push, "oidc_token")
    assert oidc is not None, "pushes must carry an OIDC token"
    invoker = _ref(oidc["service_account_email"], "google_service_account")
    for name in ("embedder", "writer"):
        assert _block(subs[name], "push_config") is None, f"{name} pulls"

    # The push identity may invoke the chunker and nothing else.
    grants = [
        m
        for m in tf.of_type("google_cloud_run_v2_service_iam_member").values()
        if f"google_service_account.{invoker}." in m["member"]
    ]
    assert grants, "the push identity cannot invoke the chunker"
    assert all(
        _ref(g["name"], "google_cloud_run_v2_service") == "chunker"
        and g["role"] == "roles/run.invoker"
        for g in grants
    )


def test_topic_and_subscription_names_are_the_settings_defaults(tf: Terraform) -> None:
    env = tf.locals["common_env"]
    for alias, default in _pipeline_defaults().items():
        assert alias in env, f"Cloud Run services do not get {alias}"
        assert tf.resolve(env[alias]) == default, alias
    # And the resources behind the references carry those names.
    resources = {
        "RAGRUN_OBJECTS_TOPIC": ("google_pubsub_topic", "objects"),
        "RAGRUN_CHUNKS_TOPIC": ("google_pubsub_topic", "chunks"),
        "RAGRUN_VECTORS_TOPIC": ("google_pubsub_topic", "vectors"),
        "RAGRUN_CHUNKER_SUBSCRIPTION": ("google_pubsub_subscription", "chunker"),
        "RAGRUN_EMBEDDER_SUBSCRIPTION": ("google_pubsub_subscription", "embedder"),
        "RAGRUN_WRITER_SUBSCRIPTION": ("google_pubsub_subscription", "writer"),
    }
    defaults = _pipeline_defaults()
    for alias, (rtype, name) in resources.items():
        assert tf.resolve(tf.of_type(rtype)[name]["name"]) == defaults[alias], (rtype, name)


def _cloud_run(tf: Terraform) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(resource address, logical service, resource body, for_each entry or {})."""
    for rtype in ("google_cloud_run_v2_service", "google_cloud_run_v2_worker_pool"):
        for name, body in tf.of_type(rtype).items():
            if "for_each" in body:
                for key, entry in tf.local_map(body["for_each"]).items():
                    yield f"{rtype}.{name}[{key}]", key, body, entry
            else:
                yield f"{rtype}.{name}", name, body, {}


def _each(expr: Any, entry: dict[str, Any]) -> Any:
    m = re.fullmatch(r"\$\{each\.value\.(\w+)\}", expr) if isinstance(expr, str) else None
    return entry[m.group(1)] if m else expr


def test_cloud_run_runs_each_service_from_its_image(tf: Terraform) -> None:
    services = set()
    for address, service, body, entry in _cloud_run(tf):
        services.add(service)
        template = _block(body, "template")
        assert template is not None, address
        (container,) = template["containers"]
        assert _each(container["image"], entry) == f"${{local.images.{service}}}", address
    assert services == set(SERVICES)


def test_every_cloud_run_service_has_its_own_identity(tf: Terraform) -> None:
    owner: dict[str, str] = {}
    for address, service, body, entry in _cloud_run(tf):
        template = _block(body, "template")
        assert template is not None, address
        account = _each(template.get("service_account"), entry)
        assert account, f"{address} runs as the default compute service account"
        sa = _ref(account, "google_service_account")
        assert owner.setdefault(sa, service) == service, (
            f"{address} shares google_service_account.{sa} with {owner[sa]}"
        )


def test_cloud_run_env_names_are_settings_fields(tf: Terraform) -> None:
    for address, service, body, _ in _cloud_run(tf):
        template = _block(body, "template")
        assert template is not None
        names: set[str] = set()
        for container in template["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
            for dynamic in container.get("dynamic", []):
                for kind, block in dynamic.items():
                    if kind != "env":
                        continue
                    (content,) = block["content"]
                    if content["name"] == "${env.key}":
                        names |= set(tf.local_map(block["for_each"]))
                    else:
                        names.add(content["name"])
        assert "PORT" not in names, f"{address}: Cloud Run sets PORT itself"
        unknown = names - _readable_env(service)
        assert not unknown, f"{address} sets variables no settings field reads: {unknown}"
        if service in ("writer", "query"):
            assert "DATABASE_URL" in names, address


def test_no_public_invoker_unless_query_public(tf: Terraform) -> None:
    assert tf.variables["query_public"]["default"] is False
    public = {"allUsers", "allAuthenticatedUsers"}
    for rtype, resources in tf.resources.items():
        if not rtype.endswith(("_iam_member", "_iam_binding")):
            continue
        for name, body in resources.items():
            members = body.get("members", [body.get("member")])
            if not public & set(members):
                continue
            assert rtype == "google_cloud_run_v2_service_iam_member", (rtype, name)
            assert _ref(body["name"], "google_cloud_run_v2_service") == "query", name
            assert body.get("count") == "${var.query_public ? 1 : 0}", (
                f"{rtype}.{name} grants {members} without var.query_public"
            )


def test_project_wide_roles_are_only_the_unavoidable_ones(tf: Terraform) -> None:
    allowed = {
        "roles/aiplatform.user",
        "roles/alloydb.client",
        "roles/cloudtrace.agent",  # exporting spans (traces_exporter = "gcp")
        "roles/eventarc.eventReceiver",  # event_route = "eventarc" only
        "roles/pubsub.publisher",  # the GCS agent, for Eventarc storage triggers only
        "roles/monitoring.metricWriter",  # exporting metrics (traces_exporter = "gcp")
    }
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in tf.of_type(rtype).items():
            assert body["role"] in allowed, f"{rtype}.{name} grants {body['role']} project-wide"
    assert not tf.of_type("google_project_iam_policy")


# --- checkov -------------------------------------------------------------------

# scripts/bootstrap installs checkov into its own venv (it pins many packages).
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def test_checkov_finds_no_failed_check() -> None:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}; run scripts/bootstrap")
    args = ["-d", str(TF_DIR), "--framework", "terraform", "--skip-download", "--output", "json"]
    result = subprocess.run(
        [str(CHECKOV), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), f"checkov crashed:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0 and summary["resource_count"] > 0, summary
    # Every deliberate skip says why, next to the resource.
    unexplained = [
        f"{c['check_id']} {c['resource']}"
        for c in report["results"]["skipped_checks"]
        if c["check_result"].get("suppress_comment", "No comment provided")
        in ("", "No comment provided")
    ]
    assert not unexplained, f"checkov skips without a reason: {unexplained}"


def test_eventarc_route_is_an_alternative_to_notifications(tf: Terraform) -> None:
    """event_route picks one route: GCS notifications (default, replayable) or Eventarc."""
    assert tf.variables["event_route"]["default"] == "pubsub"
    (notification,) = tf.of_type("google_storage_notification").values()
    assert notification["count"] == '${var.event_route == "pubsub" ? 1 : 0}'
    eventarc_events = tf.locals["eventarc_events"]
    assert "var.event_route" in str(eventarc_events)
    assert "google.cloud.storage.object.v1.finalized" in str(eventarc_events)
    assert "google.cloud.storage.object.v1.deleted" in str(eventarc_events)
    (trigger,) = tf.of_type("google_eventarc_trigger").values()
    (destination,) = trigger["destination"]
    (run,) = destination["cloud_run_service"]
    assert _ref(run["service"], "google_cloud_run_v2_service") == "chunker"
    assert "google_service_account.eventarc" in trigger["service_account"]
    # Eventarc's project-wide roles exist only when the route is chosen.
    for name in ("eventarc_receives", "gcs_publishes_for_eventarc"):
        role = tf.of_type("google_project_iam_member")[name]
        assert role["count"] == '${var.event_route == "eventarc" ? 1 : 0}', name


def test_query_reads_from_the_read_pool_when_there_is_one(tf: Terraform) -> None:
    pool = tf.of_type("google_alloydb_instance")["read_pool"]
    assert pool["instance_type"] == "READ_POOL"
    assert pool["count"] == "${var.alloydb_read_pool_nodes > 0 ? 1 : 0}"
    assert tf.variables["alloydb_read_pool_nodes"]["default"] == 0
    query = tf.of_type("google_cloud_run_v2_service")["query"]
    text = str(query)
    assert "google_secret_manager_secret.query_database_url.secret_id" in text
    assert "RAGRUN_QUERY_MIGRATE" in text
    url = tf.of_type("google_secret_manager_secret_version")["query_database_url"]
    assert "google_alloydb_instance.read_pool[0].ip_address" in url["secret_data"]
