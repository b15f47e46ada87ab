"""The kubeconfig as kubectl reads it, for `kubectl rtcrec`.

With the `kubernetes` package importable (the `kubectl` extra; the krew archive carries it) its kube_config
loader resolves the context: every $KUBECONFIG file merged, exec credential plugins, the OIDC auth provider
(refreshing an expired id-token and writing it back, as kubectl does), `proxy-url`. Without it (a pip install
without the extra, the project's own venv) the operator's loader (kube/config.py) resolves the same merge, exec
plugins and `proxy-url`, and refuses an auth provider saying what to install: the plugin still works wherever
the operator's own client does. The operator never imports `kubernetes`: the import alone costs about 35 MB.
"""

from __future__ import annotations

from types import SimpleNamespace

from rtc_recording.kube.config import Connection, kubeconfig_paths, merged_kubeconfig


def connection(paths: str | None, context: str | None) -> Connection:
    """The connection of `context` (default: the current one) in `paths` (default: $KUBECONFIG, ~/.kube/config)."""
    paths = paths or kubeconfig_paths()
    try:
        from kubernetes.config import ConfigException, kube_config
    except ImportError:
        return Connection.from_kubeconfig(paths, context)
    # kubernetes' merge lets the last file that sets current-context win; kubectl, the first (kube/config.py).
    context = context or merged_kubeconfig(paths)[0].get("current-context")
    resolved = SimpleNamespace(
        api_key={}, host="", verify_ssl=True, ssl_ca_cert=None, cert_file=None, key_file=None, proxy=None
    )
    try:
        # Fills the attributes of a client configuration; the token is resolved once, all a command needs.
        kube_config.load_kube_config(config_file=paths, context=context, client_configuration=resolved)
        contexts, _ = kube_config.list_kube_config_contexts(paths)
    except ConfigException as exc:
        raise ValueError(f"kubeconfig {paths}: {exc}") from None
    (chosen,) = [c for c in contexts if c["name"] == context]
    authorization = resolved.api_key.get("BearerToken") or ""
    return Connection(
        server=resolved.host,
        ca_path=resolved.ssl_ca_cert,
        token=authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None,
        cert_path=resolved.cert_file,
        key_path=resolved.key_file,
        insecure=not resolved.verify_ssl,
        namespace=chosen["context"].get("namespace"),
        proxy=resolved.proxy,
    )
