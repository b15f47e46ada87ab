"""`python -m rtc_recording.emulator`: serve an emulator until interrupted.

The first line on stdout is the URL it listens on (useful with --port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

from .config import ACTIONS, DEFAULT_REGION, EmulatorConfig
from .runner import serve


def _pair(text: str, parts: int, what: str) -> list[str]:
    fields = text.split(":", parts - 1)
    if len(fields) != parts or not all(fields):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return fields


def _error_rate(text: str) -> tuple[str, float]:
    action, _, rate = text.rpartition("=")
    if action and action not in ACTIONS:
        raise argparse.ArgumentTypeError(f"unknown action {action!r}")
    return action or "*", float(rate)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rtc_recording.emulator",
        description="A local stand-in for the ApsaraVideo Live cloud recording API.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--time-scale", type=float, default=1.0, help="emulated seconds per real second")
    p.add_argument(
        "--access-key", action="append", default=[], metavar="ID:SECRET", type=lambda t: _pair(t, 2, "ID:SECRET")
    )
    p.add_argument(
        "--sts-token",
        action="append",
        default=[],
        metavar="ID:SECRET:TOKEN",
        type=lambda t: _pair(t, 3, "ID:SECRET:TOKEN"),
    )
    p.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="KEYID:ACCOUNT",
        type=lambda t: _pair(t, 2, "KEYID:ACCOUNT"),
        help="the account a key belongs to (repeatable; default: account 'default')",
    )
    p.add_argument("--app", action="append", default=[], help="an AppId that exists (repeatable)")
    p.add_argument("--bucket", action="append", default=[], help="an OSS bucket that exists (repeatable)")
    p.add_argument("--open-channels", action="store_true", help="accept Start on channels nobody joined")
    p.add_argument(
        "--strict-ids",
        action="store_true",
        help="refuse channel and user ids outside [A-Za-z0-9_-]{1,64} (not a rule of the vendor's page)",
    )
    p.add_argument("--quota", type=int, default=50, help="calls per second per AccessKey (0: unlimited)")
    p.add_argument("--throttle-status", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-callbacks", action="store_true")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    p.add_argument(
        "--error-rate",
        action="append",
        default=[],
        metavar="[ACTION=]RATE",
        type=_error_rate,
        help="share of calls answered with a 5xx (repeatable)",
    )
    p.add_argument("--drop-start-rate", type=float, default=0.0, help="share of Starts that run but lose their answer")
    p.add_argument("--stopping-seconds", type=float, default=1.0)
    return p


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        access_keys=dict(args.access_key),
        sts_tokens={key_id: (secret, token) for key_id, secret, token in args.sts_token},
        accounts=dict(args.account),
        apps=set(args.app),
        oss_buckets=set(args.bucket),
        open_channels=args.open_channels,
        strict_ids=args.strict_ids,
        region=args.region,
        time_scale=args.time_scale,
        quota_per_second=args.quota,
        throttle_status=args.throttle_status,
        seed=args.seed,
        callbacks=not args.no_callbacks,
        latency_seconds=args.latency,
        error_rates=dict(args.error_rate),
        drop_start_rate=args.drop_start_rate,
        stopping_seconds=args.stopping_seconds,
    )


async def _serve_until_signalled(config: EmulatorConfig, host: str, port: int) -> None:
    runner, url = await serve(config, host, port)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    asyncio.run(_serve_until_signalled(config_from(args), args.host, args.port))
    return 0
