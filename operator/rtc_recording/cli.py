"""`rtcrec`: run the operator, the emulator, the demo, or a local control plane."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cluster import binaries


def _cluster(args: argparse.Namespace) -> int:
    from .cluster.launcher import LocalCluster

    state = Path(args.dir)
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


def _build(args: argparse.Namespace) -> int:
    for name, path in binaries.ensure(*args.names).items():
        print(f"{name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtcrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    cluster = sub.add_parser("cluster", help="a local etcd + kube-apiserver for kubectl, tests and the demo")
    cluster.add_argument("action", choices=["up", "down", "env"])
    cluster.add_argument("--dir", default=str(binaries.cache_root() / "cluster"), help="state directory")
    cluster.set_defaults(func=_cluster)

    build = sub.add_parser("build-binaries", help="compile etcd, kube-apiserver, kubectl, helm into the cache")
    build.add_argument("names", nargs="*", help=f"any of {', '.join(binaries.BINARIES)} (default: all)")
    build.set_defaults(func=_build)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
