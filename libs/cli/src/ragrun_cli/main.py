"""``ragrun``: run the local stack, upload files, watch status, query.

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
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ragrun_cli import commands
from ragrun_cli.components import ComponentError, EmulatorMissingError
from ragrun_cli.stack import LocalStack, StackConfig, default_home, load_state


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
    from ragrun_common.settings import CommonSettings

    provision(CommonSettings(), chunker_endpoint=args.chunker_url)
    print("ragrun: topics, subscriptions and bucket are in place")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except commands.CliError as e:
        print(f"ragrun {args.command}: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
