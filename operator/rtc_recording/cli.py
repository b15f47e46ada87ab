"""`rtcrec`: run the operator, the emulator, the demo, or a local control plane."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Development tools: in a source checkout (`pip install -e .`), not in the wheel or the image.
DEV_PACKAGES = ("cluster", "emulator")


def _dev(module: str, command: str):
    """Import a development module, or exit saying why it is missing from this installation."""
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name in {f"{__package__}.{p}" for p in DEV_PACKAGES}:
            sys.exit(
                f"`rtcrec {command}` is a development tool and not part of this installation (the wheel "
                "and the image carry the operator and the receiver only); run it from a source checkout."
            )
        raise


def _cluster(args: argparse.Namespace) -> int:
    binaries = _dev("cluster.binaries", "cluster")
    LocalCluster = _dev("cluster.launcher", "cluster").LocalCluster  # noqa: N806

    state = Path(args.dir or binaries.cache_root() / "cluster")
    if args.action == "up":
        if (state / "cluster.json").exists():
            print(f"a cluster already runs from {state}; `rtcrec cluster down` first", file=sys.stderr)
            return 1
        cluster = LocalCluster.start(state)
        print(f"kube-apiserver {binaries.KUBERNETES_VERSION} at {cluster.server}", file=sys.stderr)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"alias kubectl={cluster.info()['kubectl']}")
    elif args.action == "env":
        cluster = LocalCluster(state)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"alias kubectl={cluster.info()['kubectl']}")
    elif args.action == "down":
        LocalCluster(state).stop()
    return 0


def _settings():
    from pydantic import ValidationError

    from .settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  RTCREC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" if e["loc"] else f"  {e['msg']}"
            for e in exc.errors()
        ]
        sys.exit("invalid operator settings:\n" + "\n".join(lines))


def _run(args: argparse.Namespace) -> int:
    from rtc_recording.controller import handlers

    config = _settings()
    if config.ownership_secret() is None:
        sys.exit(
            "invalid operator settings:\n  RTCREC_OWNERSHIP_KEY: required (or RTCREC_CALLBACK_AUTH_KEY to derive it "
            "from): it seals each task to the resource that started it"
        )
    handlers.run(config)
    return 0


def _receiver(args: argparse.Namespace) -> int:
    from rtc_recording.receiver import main as receiver

    config = _settings()
    if not config.callback_auth_key:
        sys.exit("invalid operator settings:\n  RTCREC_CALLBACK_AUTH_KEY: required by the receiver")
    receiver.run(config, config.callback_auth_key.get_secret_value())
    return 0


def _demo(args: argparse.Namespace) -> int:
    return _dev("cluster.demo", "demo").run()


def _build(args: argparse.Namespace) -> int:
    binaries = _dev("cluster.binaries", "build-binaries")
    for name, path in binaries.ensure(*args.names).items():
        print(f"{name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtcrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cluster = sub.add_parser("cluster", help="a local etcd + kube-apiserver for kubectl, tests and the demo")
    cluster.add_argument("action", choices=["up", "down", "env"])
    cluster.add_argument("--dir", help="state directory (default: cluster/ in the binaries' cache)")
    cluster.set_defaults(func=_cluster)

    run = sub.add_parser("run", help="run the operator (settings from RTCREC_* environment variables)")
    run.set_defaults(func=_run)

    receiver = sub.add_parser("receiver", help="run the NotifyUrl callback receiver")
    receiver.set_defaults(func=_receiver)

    # The emulator parses its own flags: `rtcrec emulator --help` lists them.
    emulator = sub.add_parser("emulator", add_help=False, help="the cloud emulator (see `rtcrec emulator --help`)")
    emulator.set_defaults(func=None)

    demo = sub.add_parser("demo", help="the whole system on this machine, narrated (local control plane + emulator)")
    demo.set_defaults(func=_demo)

    build = sub.add_parser("build-binaries", help="compile the control plane and the test tools into the cache")
    build.add_argument(
        "names",
        nargs="*",
        help="etcd, kube-apiserver, kubectl, kube-controller-manager, helm, gitops-health, promtool, krew, "
        "registry, or kube-apiserver-<version> and kubectl-<version> of the other supported Kubernetes versions "
        "(default: all)",
    )
    build.set_defaults(func=_build)

    args, rest = parser.parse_known_args(argv)
    if args.command == "emulator":
        return _dev("emulator.cli", "emulator").main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
