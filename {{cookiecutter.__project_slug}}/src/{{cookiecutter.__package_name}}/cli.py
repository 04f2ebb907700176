"""The project's command line: serve the service; make, list and revoke API keys; delete idle
sessions.

`{{ cookiecutter.__project_slug }} --help` lists the commands.
"""

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from .agent import check_model_provider
from .api.security import is_loopback
from .api_keys import create_api_key, list_api_keys, revoke_api_key
from .config import EngineSettings, Settings, get_settings, settings_or_exit
from .database import create_engine, migrate_if_embedded
from .logs import log_config
from .server import HeaderLimitsProtocol
from .session_store import InvalidIdError, validate_principal
from .session_store.records import LOCAL_PRINCIPAL
from .session_store.retention import delete_idle_sessions


def principal(text: str) -> str:
    """A principal named on the command line: refused by argparse, in one line, unless valid."""
    try:
        validate_principal(text)
    except InvalidIdError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if text == LOCAL_PRINCIPAL:
        raise argparse.ArgumentTypeError(
            f"{text!r} is AUTH_MODE=none's principal, which no key may prove: choose another name"
        )
    return text


def number(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high` named on the command line: refused by argparse, in
    one line, unless it is one (uvicorn would take a port past 65535 and listen on another)."""

    def parse(text: str) -> int:
        # isascii: int() also reads other scripts' digits, and isdigit() takes "²", which it cannot.
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number from {low} to {high}")
        return int(text)

    return parse


def trusts_every_proxy(forwarded_allow_ips: str) -> bool:
    """Whether uvicorn, given FORWARDED_ALLOW_IPS (which it reads from the environment only),
    believes the X-Forwarded-For of any client: "*", or a network of every address."""
    if forwarded_allow_ips.strip() == "*":
        return True
    for entry in forwarded_allow_ips.split(","):
        try:
            if ipaddress.ip_network(entry.strip()).prefixlen == 0:
                return True
        except ValueError:  # a name, or a Unix socket's path
            continue
    return False


def serve(settings: Settings, args: argparse.Namespace) -> None:
    # Here too, not only in main.py: with --reload (make dev), main.py's refusal would stop
    # uvicorn's reloading process only, and leave the watcher running.
    check_model_provider(settings)
    open_access = settings.auth_mode == "none" and not settings.allow_open_access
    if open_access and not is_loopback(args.host):
        sys.exit(
            f"AUTH_MODE=none on {args.host} would let anyone who reaches it read and delete "
            "every conversation: serve on 127.0.0.1, set AUTH_MODE=api_keys or jwt, or set "
            "ALLOW_OPEN_ACCESS=true if that is what you want."
        )
    if open_access and trusts_every_proxy(os.environ.get("FORWARDED_ALLOW_IPS", "")):
        sys.exit(
            "AUTH_MODE=none with FORWARDED_ALLOW_IPS trusting every address would take any "
            "client's X-Forwarded-For for its address, and one that names 127.0.0.1 for a client "
            "on this machine: name your proxy's address there, or set AUTH_MODE=api_keys or jwt."
        )
    # uvicorn answers 503 once the connections open reach the limit, the one it answers on
    # included: it serves one request fewer at once.
    if args.limit_concurrency - 1 <= settings.max_concurrent_turns:
        sys.exit(
            f"--limit-concurrency {args.limit_concurrency} leaves no room above "
            f"MAX_CONCURRENT_TURNS={settings.max_concurrent_turns}: each turn holds a "
            "connection, and past the limit uvicorn answers a plain 503 instead of the "
            "service's 429 overloaded. Raise it, or lower MAX_CONCURRENT_TURNS."
        )
    uvicorn.run(
        "{{ cookiecutter.__package_name }}.main:app",
        host=args.host,
        port=args.port,
        reload=args.reload,
        # The package's code only: SQLite's writes in .data/ are changes too, logged at every turn.
        reload_dirs=[str(Path(__file__).parent)] if args.reload else None,
        proxy_headers=True,  # from FORWARDED_ALLOW_IPS only (default 127.0.0.1)
        http=HeaderLimitsProtocol,  # bounds each request's headers in time and size (server.py)
        timeout_keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency,
        backlog=args.backlog,
        ws="none",  # no route is a WebSocket: an upgrade request is a plain request
        # Also for what uvicorn logs before it imports the app (main.py configures it again).
        log_config=log_config(settings),
        # A failure to start (an app that cannot be built) stops the process: with "auto",
        # uvicorn would take it for an app without lifespan, and serve 500s.
        lifespan="on",
        # One process: the turn limits, the pools and the metrics are a process's own (replicas
        # scale the service), whatever WEB_CONCURRENCY, which uvicorn reads, says.
        workers=1,
    )


def configured_auth_mode() -> str | None:
    """AUTH_MODE as the service reads it; None if the service's settings are invalid (it would
    not start: its refusal says why)."""
    try:
        return get_settings().auth_mode
    except (ValidationError, SettingsError):
        return None


def database() -> Engine:
    """The database of the commands but `serve`: they read its settings only."""
    engine = create_engine(settings_or_exit(EngineSettings))
    migrate_if_embedded(engine)
    return engine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.__project_slug }}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="run the service")
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument("--port", type=number(0, 65535), default=8000)
    serve_command.add_argument("--reload", action="store_true", help="restart on code changes")
    # Connection limits (see "Operating" in the README). What a client may send, and how slowly,
    # is bounded by settings: REQUEST_HEADER_TIMEOUT and MAX_HEADER_BYTES here (server.py),
    # REQUEST_BODY_TIMEOUT and MAX_BODY_BYTES in the app.
    serve_command.add_argument(
        "--timeout-keep-alive", type=number(1, 3600), default=5, help="idle seconds"
    )
    serve_command.add_argument("--limit-concurrency", type=number(1, 1_000_000), default=2000)
    serve_command.add_argument("--backlog", type=number(1, 65535), default=2048)
    create = commands.add_parser("create-api-key", help="make a key for PRINCIPAL and print it")
    create.add_argument(
        "principal", type=principal, help="who the key's holder is: their sessions are theirs"
    )
    commands.add_parser("list-api-keys", help="every key: id, principal, created, revoked")
    revoke = commands.add_parser("revoke-api-key", help="refuse a key from now on, everywhere")
    revoke.add_argument("key_id", help="the id that list-api-keys shows (the key's first part)")
    idle = commands.add_parser(
        "delete-idle-sessions", help="delete every principal's sessions idle for DAYS days"
    )
    idle.add_argument("days", type=number(1, 36_500), help="days since a turn last changed them")
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve(settings_or_exit(get_settings), args)
        return
    engine = None
    try:
        engine = database()
        # Named in what the key commands say: run elsewhere, DATABASE_URL may name another
        # database (SQLite's is a file of the current folder, created if missing).
        where = engine.url.render_as_string(hide_password=True)
        if args.command == "create-api-key":
            key = create_api_key(engine, args.principal)
            print(f"API key for {args.principal!r} in {where}; it is shown only this once:")
            print(key)
            if (mode := configured_auth_mode()) not in (None, "api_keys"):
                print(
                    f"AUTH_MODE={mode}: the service takes no API key until AUTH_MODE=api_keys.",
                    file=sys.stderr,
                )
        elif args.command == "list-api-keys":
            api_keys = list_api_keys(engine)
            if not api_keys:
                print(f"no API keys in {where}", file=sys.stderr)
            for api_key in api_keys:
                # Quoted, as principals may hold spaces; escaped beyond ASCII, as they may look
                # alike (é, and e followed by U+0301).
                holder = ascii(api_key.principal)
                line = f"{api_key.key_id}  {holder}  created {api_key.created_at:%F %R}"
                if api_key.revoked_at:
                    line += f"  revoked {api_key.revoked_at:%F %R}"
                print(line)
        elif args.command == "delete-idle-sessions":
            deleted = delete_idle_sessions(engine, timedelta(days=args.days))
            print(f"deleted {deleted} sessions idle for more than {args.days} days")
        elif not revoke_api_key(engine, args.key_id):
            sys.exit(f"no unrevoked key {args.key_id!r} in {where}: list-api-keys shows the keys")
        else:
            print(f"revoked {args.key_id}")
    except (SQLAlchemyError, OSError) as error:  # OSError: a SQLite file's folder
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        sys.exit(
            f"could not use the database of DATABASE_URL ({reason}): is it up, and migrated "
            "(make migrate)?"
        )
    finally:
        if engine is not None:
            engine.dispose()
