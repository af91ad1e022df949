"""``ragrun``: run the local stack, upload files, watch status, query, reprocess.

Commands that talk to a stack read its addresses from the environment
(``PUBSUB_EMULATOR_HOST``, ``STORAGE_EMULATOR_HOST``, ``DATABASE_URL``,
``RAGRUN_QUERY_URL``...) or, when unset, from the state file that a running
``ragrun up`` writes under ``RAGRUN_HOME`` (default ``./.ragrun``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from google.api_core import exceptions as gexc
from pydantic import ValidationError

from ragrun_cli import commands, replay
from ragrun_cli.components import ComponentError, EmulatorMissingError
from ragrun_cli.reindex import Source, SourceError
from ragrun_cli.stack import LocalStack, StackConfig, default_home, load_state
from ragrun_common.versions import FillProgress, VersionError


def _use_stack_env() -> None:
    """Fill unset variables from a running ``ragrun up`` (explicit env wins)."""
    for key, value in load_state().items():
        os.environ.setdefault(key, value)


def cmd_up(args: argparse.Namespace) -> int:
    home = default_home()
    config = StackConfig(
        home=home,
        project=os.environ.get("GOOGLE_CLOUD_PROJECT", "ragrun-local"),
        bucket=os.environ.get("RAGRUN_BUCKET", "ragrun-docs"),
        embeddings=args.embeddings or os.environ.get("RAGRUN_EMBEDDINGS", "local"),
        database_url=os.environ.get("DATABASE_URL"),
        query_port=args.port,
    )
    stack = LocalStack(config)
    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"ragrun: starting the local stack (state and logs in {home}) ...", flush=True)
    try:
        stack.start()
    except EmulatorMissingError as e:
        print(f"ragrun up: {e}", file=sys.stderr)
        return 3
    except ComponentError as e:
        print(f"ragrun up: {e} (logs in {stack.log_dir})", file=sys.stderr)
        return 1
    try:
        env = stack.env()
        os.environ.update(env)
        print(f"ragrun: query endpoint {stack.query_url}/v1/query (local stack: no auth)")
        print(f"ragrun: export RAGRUN_HOME={home} to use `ragrun put/status/query` elsewhere")
        if args.load:
            uploaded = commands.put([Path(p) for p in args.load], prefix="")
            print(f"ragrun: uploaded {uploaded} file(s); waiting until they are indexed ...")
            ok = commands.wait_indexed(timeout_s=args.wait, should_stop=lambda: stopping)
            commands.print_status(sys.stdout)
            if not ok and not stopping:
                print("ragrun: not everything was indexed in time; see `ragrun status`")
        print("ragrun: example query:")
        print(
            f"  curl -s {stack.query_url}/v1/query -H 'Content-Type: application/json' "
            """-d '{"query": "How do I replay a subscription?", "k": 3}'"""
        )
        print("ragrun: running; press Ctrl-C to stop.", flush=True)
        while not stopping:
            failed = stack.failed_services()
            if failed:
                print(f"ragrun: service(s) exited: {failed}; logs in {stack.log_dir}")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("ragrun: stopping ...", flush=True)
        stack.stop()


def cmd_setup(args: argparse.Namespace) -> int:
    from ragrun_cli.provision import provision
    from ragrun_cli.settings import CliSettings, format_duration
    from ragrun_common.settings import CommonSettings

    provision(CommonSettings(), chunker_endpoint=args.chunker_url)
    retention = format_duration(CliSettings().retention)
    print(f"ragrun: topics, subscriptions and bucket are in place (messages kept {retention})")
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    _use_stack_env()
    count = commands.put([Path(p) for p in args.paths], prefix=args.prefix)
    print(f"uploaded {count} file(s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _use_stack_env()
    rows = commands.print_status(sys.stdout, as_json=args.json)
    if args.wait:
        return 0 if commands.wait_indexed(timeout_s=args.wait) else 1
    return 0 if all(r.state != "failed" for r in rows) or not args.strict else 1


def cmd_query(args: argparse.Namespace) -> int:
    _use_stack_env()
    body = commands.query(" ".join(args.text), k=args.k)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    for rank, result in enumerate(body["results"], start=1):
        snippet = " ".join(result["content"].split())[:160]
        print(f"{rank:>2}. {result['score']:.3f}  {result['document']}  {snippet}")
    return 0


# What each stage's messages are, and what a replay of them does.
_REPLAYS = {
    "chunker": ("object events", "chunked again, with the chunker's current settings"),
    "embedder": ("chunk batches", "embedded again"),
    "writer": ("vector batches", "written again"),
}


def cmd_replay(args: argparse.Namespace) -> int:
    _use_stack_env()
    from google.cloud import pubsub_v1

    from ragrun_common.settings import CommonSettings

    settings = CommonSettings()
    path = replay.subscription_path(settings, args.subscription)
    when = None if args.snapshot else replay.parse_time(args.to)
    if when is not None:
        replay.check_past(when)
    subscriber = pubsub_v1.SubscriberClient()
    try:
        if when is None:
            snapshot = replay.snapshot_path(settings, args.snapshot)
            report = replay.seek_to_snapshot(subscriber, path, snapshot)
        else:
            report = replay.seek_to_time(subscriber, path, when)
    finally:
        subscriber.close()
    for warning in report.warnings:
        print(f"ragrun replay: warning: {warning}", file=sys.stderr)
    name = replay.short_name(path)
    print(f"ragrun replay: {name} (topic {replay.short_name(report.topic)}) -> {report.target}")
    stages = {getattr(settings, f"{stage}_subscription"): stage for stage in replay.STAGES}
    what, redone = _REPLAYS.get(stages.get(name, ""), ("messages", "delivered again"))
    since = (
        "unacked when the snapshot was taken or published since"
        if args.snapshot
        else "published since then"
    )
    print(f"ragrun replay: {what} {since} are {redone}")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    _use_stack_env()
    from google.cloud import pubsub_v1

    from ragrun_common.settings import CommonSettings

    settings = CommonSettings()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        if args.action == "create":
            subscription = replay.subscription_path(settings, args.subscription)
            info = replay.create_snapshot(
                subscriber, replay.snapshot_path(settings, args.name), subscription
            )
            print(
                f"ragrun snapshot: created {info.name} of {replay.short_name(subscription)} "
                f"(topic {info.topic}); expires {info.expires_text()}"
            )
            print(
                f"ragrun snapshot: `ragrun replay {args.subscription} --snapshot {info.name}` "
                "redelivers what arrives from now on"
            )
        elif args.action == "list":
            rows = replay.list_snapshots(subscriber, settings.project)
            width = max([len(r.name) for r in rows] + [8])
            topic_width = max([len(r.topic) for r in rows] + [5])
            print(f"{'SNAPSHOT':<{width}}  {'TOPIC':<{topic_width}}  EXPIRES")
            for r in rows:
                print(f"{r.name:<{width}}  {r.topic:<{topic_width}}  {r.expires_text()}")
            print(f"{len(rows)} snapshot(s)")
        else:
            replay.delete_snapshot(subscriber, replay.snapshot_path(settings, args.name))
            print(f"ragrun snapshot: deleted {args.name}")
    finally:
        subscriber.close()
    return 0


Printer = Callable[[int, int | None, float, int], None]


def _progress_printer(out: TextIO, verb: str) -> Printer:
    """A progress bar on a terminal, a line every few seconds elsewhere (CI logs).

    The printer takes (done, total or None, rate per second, failed).
    """
    tty = out.isatty()
    last = [0.0]

    def show(done: int, total: int | None, rate: float, failed: int) -> None:
        if total:
            filled = int(20 * min(done, total) / total)
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] {100 * done // total:3d}% "
            eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "-"
            line = f"{bar}{done}/{total} {verb}  {rate:.1f}/s  ETA {eta}"
        else:
            line = f"{done} {verb}  {rate:.1f}/s"
        if failed:
            line += f"  {failed} failed"
        if tty:
            out.write(f"\r{line}\x1b[K")
        elif time.monotonic() - last[0] >= 5 or (total is not None and done >= total):
            out.write(f"{line}\n")
            last[0] = time.monotonic()
        out.flush()

    return show


def cmd_reindex(args: argparse.Namespace) -> int:
    _use_stack_env()
    from ragrun_cli.reindex import run
    from ragrun_cli.settings import ReindexSettings

    overrides = {
        key: value
        for key, value in (
            ("reindex_rate", args.rate),
            ("task_index", args.task_index),
            ("task_count", args.task_count),
        )
        if value is not None
    }
    settings = ReindexSettings(**overrides)
    source = Source.parse(args.source or settings.reindex_source, settings.bucket)
    task = ""
    if settings.task_count > 1:
        task = f" (task {settings.task_index} of {settings.task_count})"
    print(f"ragrun reindex: listing {source}{task} ...", flush=True)
    show = _progress_printer(sys.stderr, "published")
    done = run(settings, source, on_progress=lambda p: show(p.done, p.total, p.rate, p.failed))
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(
        f"ragrun reindex: published {done.published} notification(s) for {source} to "
        f"{settings.objects_topic} in {done.elapsed:.1f} s ({done.rate:.1f}/s); "
        f"{done.listed} object(s) listed, {done.failed} failed"
    )
    if done.failed:
        print(f"ragrun reindex: first failure: {done.first_error}", file=sys.stderr)
        return 1
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from ragrun_cli import dlq
    from ragrun_cli.replay import STAGES
    from ragrun_common.settings import CommonSettings

    _use_stack_env()
    settings = CommonSettings()
    stages = (args.stage,) if args.stage else STAGES
    if args.dlq_command == "replay":
        counts = dlq.replay_dead_letters(settings, stages, limit=args.limit)
        for stage, count in counts.items():
            print(f"{stage}: sent {count} dead letter(s) back")
        return 0
    letters = dlq.list_dead_letters(settings, stages, limit=args.limit)
    if args.json:
        print(dlq.as_json(letters))
        return 0
    for letter in letters:
        attempts = letter.attempts if letter.attempts is not None else "?"
        print(
            f"{letter.stage:<8}  {letter.published}  attempts={attempts}  {letter.document}\n"
            f"          {letter.reason}"
        )
    print(f"{len(letters)} dead letter(s)")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from ragrun_cli import index
    from ragrun_cli.settings import IndexSettings

    _use_stack_env()
    settings = IndexSettings()
    try:
        if args.action == "list":
            index.print_listing(sys.stdout, index.listing(settings), as_json=args.json)
            return 0
        if args.action == "activate":
            vectors, chunks = index.activate_version(settings, args.version, force=args.force)
            print(f"ragrun index: version {args.version} is active ({vectors}/{chunks} chunks)")
            return 0
        if args.action == "defer":
            index.defer(settings, args.version)
            print(
                f"ragrun index: version {args.version} has no vector index now: loads run at "
                f"COPY speed, its searches scan exactly; `ragrun index sync {args.version}` "
                "builds the index again"
            )
            return 0
        if args.action == "drop":
            index.drop_version(settings, args.version)
            print(f"ragrun index: version {args.version} dropped")
            return 0
        show = _progress_printer(sys.stderr, "embedded")

        def progress(p: FillProgress, elapsed: float) -> None:
            show(p.done, p.total, p.done / elapsed if elapsed > 0 else 0.0, 0)

        started = time.monotonic()
        if args.action == "create":
            print(f"ragrun index: creating a version for {args.embeddings} ...", flush=True)
            version = index.create(settings, args.embeddings, args.dim, progress)
        else:
            version = index.sync(settings, args.version, progress)
    except (VersionError, ValueError) as e:
        print(f"ragrun index {args.action}: {e}", file=sys.stderr)
        return 2
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    [listed] = [row for row in index.listing(settings) if row.version.version == version.version]
    then = (
        "it is the active version"
        if version.active
        else f"activate it with `ragrun index activate {version.version}`"
    )
    print(
        f"ragrun index: version {version.version} ({listed.embeddings}, {version.dim} dimensions)"
        f" is {version.state}: {listed.vectors}/{listed.chunks} chunks in "
        f"{time.monotonic() - started:.1f} s; {then}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragrun", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the local stack in the foreground")
    up.add_argument("--load", nargs="*", default=[], help="files or folders to upload at start")
    up.add_argument("--wait", type=float, default=600, help="seconds to wait for --load")
    up.add_argument("--port", type=int, default=0, help="query port (default: a free one)")
    up.add_argument("--embeddings", help="local | hash | vertex:MODEL (default: local)")
    up.set_defaults(func=cmd_up)

    setup = sub.add_parser("setup", help="create topics, subscriptions and the bucket")
    setup.add_argument("--chunker-url", default=os.environ.get("RAGRUN_CHUNKER_URL"))
    setup.set_defaults(func=cmd_setup)

    put = sub.add_parser("put", help="upload files or folders into the bucket")
    put.add_argument("paths", nargs="+")
    put.add_argument("--prefix", default="", help="object name prefix")
    put.set_defaults(func=cmd_put)

    status = sub.add_parser("status", help="one line per document")
    status.add_argument("--json", action="store_true")
    status.add_argument("--wait", type=float, default=0, help="wait up to N s for all indexed")
    status.add_argument("--strict", action="store_true", help="exit 1 if any document failed")
    status.set_defaults(func=cmd_status)

    query = sub.add_parser("query", help="ranked passages for a question")
    query.add_argument("text", nargs="+")
    query.add_argument("-k", type=int, default=5)
    query.add_argument("--json", action="store_true")
    query.set_defaults(func=cmd_query)

    stages = "|".join(replay.STAGES)
    rp = sub.add_parser(
        "replay",
        help="redeliver a stage's messages from a time or a snapshot (seek)",
        description="Seek a subscription back: its stage processes those messages again.",
    )
    rp.add_argument("subscription", help=f"{stages}, or a subscription id")
    target = rp.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="ISO-8601 time, or a time ago: -2h, -30m, -1d")
    target.add_argument("--snapshot", help="a snapshot taken with `ragrun snapshot create`")
    rp.set_defaults(func=cmd_replay)

    snap = sub.add_parser("snapshot", help="create, list or delete Pub/Sub snapshots")
    snap_sub = snap.add_subparsers(dest="action", required=True)
    create = snap_sub.add_parser("create", help="record a subscription's acks now (<= 7 days)")
    create.add_argument("name")
    create.add_argument(
        "--subscription", default="chunker", help=f"{stages}, or an id (default: chunker)"
    )
    snap_sub.add_parser("list", help="snapshots in the project, with expiry")
    delete = snap_sub.add_parser("delete", help="delete a snapshot")
    delete.add_argument("name")
    snap.set_defaults(func=cmd_snapshot)

    dlq = sub.add_parser("dlq", help="list or replay dead-lettered messages")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    verbs = {
        "list": "what each stage gave up on, and why",
        "replay": "send dead letters back to their stage after a fix",
    }
    for verb, text in verbs.items():
        verb_parser = dlq_sub.add_parser(verb, help=text)
        verb_parser.add_argument("stage", nargs="?", choices=("chunker", "embedder", "writer"))
        verb_parser.add_argument("--limit", type=int, default=100)
        verb_parser.add_argument("--json", action="store_true")
        verb_parser.set_defaults(func=cmd_dlq)

    reindex = sub.add_parser(
        "reindex",
        help="publish a GCS notification for every object (re-emit the bucket)",
        description="Publish to the objects topic the OBJECT_FINALIZE notification of every "
        "existing object, as GCS would, throttled.",
    )
    reindex.add_argument("source", nargs="?", help="gs://BUCKET[/PREFIX] (default: the bucket)")
    reindex.add_argument("--rate", type=float, help="messages per second, 0 = no limit (100)")
    reindex.add_argument("--task-index", type=int, help="emit only this share (0-based)")
    reindex.add_argument("--task-count", type=int, help="of this many shares")
    reindex.set_defaults(func=cmd_reindex)

    idx = sub.add_parser(
        "index",
        help="index versions: re-embed with another model without downtime",
        description="Build a new index version from the stored chunk text, switch queries to "
        "it in one step, drop old ones.",
    )
    idx_sub = idx.add_subparsers(dest="action", required=True)
    listing = idx_sub.add_parser("list", help="versions, their vectors and which is active")
    listing.add_argument("--json", action="store_true")
    build = idx_sub.add_parser("create", help="fill and index a new version (not activated)")
    build.add_argument("--embeddings", required=True, help="local | hash | vertex:MODEL")
    build.add_argument("--dim", type=int, help="vector dimension (default: the model's)")
    sync = idx_sub.add_parser("sync", help="embed chunks a version lacks, build its index")
    sync.add_argument("version", type=int)
    act = idx_sub.add_parser("activate", help="make queries use this version, at once")
    act.add_argument("version", type=int)
    act.add_argument("--force", action="store_true", help="even if chunks lack vectors")
    later = idx_sub.add_parser(
        "defer", help="drop a version's vector index for a bulk load (`sync` rebuilds it)"
    )
    later.add_argument("version", type=int)
    gone = idx_sub.add_parser("drop", help="delete a version that is not active")
    gone.add_argument("version", type=int)
    idx.set_defaults(func=cmd_index)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--to -2h`` -> ``--to=-2h``: argparse would take ``-2h`` for an option."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--to":
            value = next(it, None)
            out.append(arg if value is None else f"--to={value}")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(
        _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    )
    try:
        code: int = args.func(args)
    except (commands.CliError, replay.ReplayError, SourceError) as e:
        print(f"ragrun {args.command}: {e}", file=sys.stderr)
        return 2
    except gexc.GoogleAPICallError as e:
        print(f"ragrun {args.command}: {e.code} {e.message}", file=sys.stderr)
        return 2
    except ValidationError as e:  # a setting from the environment is out of range
        for error in e.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            where = ".".join(str(part) for part in error["loc"])
            print(
                f"ragrun {args.command}: {where + ': ' if where else ''}{message}", file=sys.stderr
            )
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
