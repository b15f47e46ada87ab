"""Where the apiserver is and who we are to it: in a pod its service account, elsewhere a kubeconfig."""

from __future__ import annotations

import asyncio
import atexit
import base64
import json as jsonlib
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from rtc_recording.api import timestamps
from rtc_recording.kube.errors import ApiError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Connection:
    server: str
    ca_path: str | None = None
    token: str | None = None
    token_file: str | None = None  # re-read on every request: projected tokens rotate
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    namespace: str | None = None
    exec_plugin: ExecPlugin | None = None  # a kubeconfig `user.exec` credential plugin
    proxy: str | None = None  # a kubeconfig cluster's `proxy-url`: http or https (kubectl's socks5 is refused)

    def __post_init__(self) -> None:
        if self.proxy and not self.proxy.lower().startswith(("http://", "https://")):  # aiohttp has no socks5
            raise ValueError(f"proxy-url {self.proxy!r}: only http and https proxies are read")

    @classmethod
    def load(cls) -> Connection:
        """In a pod, the service account; elsewhere the current context of $KUBECONFIG."""
        if (SA_DIR / "token").exists():
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
            return cls(
                server=f"https://{host}:{port}",
                ca_path=str(SA_DIR / "ca.crt"),
                token_file=str(SA_DIR / "token"),
                namespace=(SA_DIR / "namespace").read_text().strip(),
            )
        return cls.from_kubeconfig(kubeconfig_paths())

    @classmethod
    def from_kubeconfig(cls, paths: str, context_name: str | None = None) -> Connection:
        """The current context of the kubeconfig, or the one named (kubectl's --context). `paths` may
        list several files, as $KUBECONFIG does: they are merged the way kubectl merges them."""
        config, where = merged_kubeconfig(paths)
        contexts = config["contexts"]
        name = context_name or config.get("current-context")
        if name not in contexts:
            raise ValueError(f"context {name!r} is not in {where}" if name else f"{where} has no current context")
        context = contexts[name]
        cluster, user = config["clusters"][context["cluster"]], config["users"][context["user"]]
        if user.get("auth-provider"):
            raise ValueError(
                f"user {context['user']!r} logs in with the {user['auth-provider'].get('name')!r} auth provider, "
                "which this loader does not read: give it a token or an exec credential plugin (kubectl rtcrec "
                "reads auth providers with the `kubernetes` package: pip install 'rtc-recording-operator[kubectl]')"
            )
        return cls(
            server=cluster["server"],
            ca_path=cluster.get("certificate-authority") or _materialise(cluster.get("certificate-authority-data")),
            token=user.get("token"),
            token_file=user.get("tokenFile"),
            cert_path=user.get("client-certificate") or _materialise(user.get("client-certificate-data")),
            key_path=user.get("client-key") or _materialise(user.get("client-key-data")),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            namespace=context.get("namespace"),
            exec_plugin=ExecPlugin.of(user["exec"]) if user.get("exec") else None,
            proxy=cluster.get("proxy-url"),
        )

    async def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        if self.exec_plugin:
            return await self.exec_plugin.token()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_path)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_path:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


class ExecPlugin:
    """A kubeconfig credential plugin (`users[].user.exec`, client.authentication.k8s.io): how
    most managed clusters authenticate a laptop. The token it prints is cached until shortly
    before its `expirationTimestamp` (or for EXEC_TTL_SECONDS if it gives none). Written here
    rather than taken from the `kubernetes` package, whose import alone costs about 35 MB."""

    EXEC_TTL_SECONDS = 300.0
    MARGIN_SECONDS = 30.0
    TIMEOUT_SECONDS = 60.0

    def __init__(self, command: str, args: list[str], env: dict[str, str], api_version: str):
        self.command, self.args, self.env, self.api_version = command, args, env, api_version
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, config: dict) -> ExecPlugin:
        return cls(
            config["command"],
            list(config.get("args") or []),
            {e["name"]: e["value"] for e in config.get("env") or []},
            config.get("apiVersion", "client.authentication.k8s.io/v1"),
        )

    async def token(self) -> str:
        async with self._lock:  # one run for all the requests that find the token expired
            if self._token is None or time.time() >= self._valid_until:
                self._token, self._valid_until = await self._run()
            return self._token

    async def _run(self) -> tuple[str, float]:
        """Run the plugin without blocking the event loop (it may take seconds: a browser login, a cloud CLI)."""
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
        proc = await asyncio.create_subprocess_exec(
            self.command,
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.env, "KUBERNETES_EXEC_INFO": jsonlib.dumps(info)},
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), self.TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ApiError(
                401, f"credential plugin {self.command} did not answer in {self.TIMEOUT_SECONDS:.0f} s"
            ) from None
        if proc.returncode != 0:
            raise ApiError(401, f"credential plugin {self.command} failed: {stderr.decode().strip()[:300]}")
        status = jsonlib.loads(stdout).get("status") or {}
        if not status.get("token"):
            raise ApiError(
                401,
                f"credential plugin {self.command} returned no token (client certificates from "
                "a plugin are not supported)",
            )
        expiry = status.get("expirationTimestamp")
        until = (
            timestamps.parse(expiry).timestamp() - self.MARGIN_SECONDS
            if expiry
            else time.time() + self.EXEC_TTL_SECONDS
        )
        return status["token"], until


_MATERIALISED: dict[str, str] = {}


def _materialise(data_b64: str | None) -> str | None:
    """Kubeconfigs may embed certificates and keys; ssl wants files. One private file per
    content for the life of the process, removed at exit."""
    if not data_b64:
        return None
    if data_b64 not in _MATERIALISED:
        if not _MATERIALISED:

            def remove() -> None:
                for path in _MATERIALISED.values():
                    if os.path.exists(path):
                        os.unlink(path)

            atexit.register(remove)
        f = tempfile.NamedTemporaryFile(prefix="rtcrec-kube-", delete=False)  # mode 0600
        f.write(base64.b64decode(data_b64))
        f.close()
        _MATERIALISED[data_b64] = f.name
    return _MATERIALISED[data_b64]


# Fields of a kubeconfig that name files: relative to the file that sets them (as kubectl reads them).
_FILE_FIELDS = {"clusters": ("certificate-authority",), "users": ("client-certificate", "client-key", "tokenFile")}


def kubeconfig_paths() -> str:
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def merged_kubeconfig(paths: str) -> tuple[dict, str]:
    """Every file of a $KUBECONFIG-style list merged as kubectl merges them: the first file to set a
    cluster, user or context by name wins it, and the first to set current-context sets it. Missing
    files are skipped; none at all is an error. Returns the clusters, users and contexts by name."""
    files = [Path(p) for p in paths.split(os.pathsep) if p]
    present = [f for f in files if f.exists()]
    if not present:
        raise ValueError(f"no kubeconfig at {paths}")
    merged: dict = {"clusters": {}, "users": {}, "contexts": {}}
    for path in present:
        config = yaml.safe_load(path.read_text()) or {}
        if not merged.get("current-context") and config.get("current-context"):
            merged["current-context"] = config["current-context"]
        for kind in ("clusters", "users", "contexts"):
            for item in config.get(kind) or []:
                if item["name"] in merged[kind]:
                    continue
                entry = dict(item.get(kind[:-1]) or {})
                for field in _FILE_FIELDS.get(kind, ()):
                    if entry.get(field):
                        entry[field] = str(path.parent / entry[field])  # an absolute path stays as it is
                if kind == "users" and entry.get("exec") and os.sep in entry["exec"]["command"]:
                    entry["exec"] = {**entry["exec"], "command": str(path.parent / entry["exec"]["command"])}
                merged[kind][item["name"]] = entry
    return merged, os.pathsep.join(map(str, present))
