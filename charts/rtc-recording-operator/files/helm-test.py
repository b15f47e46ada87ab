"""`helm test`: the operator answers /healthz, and the apiserver serves the chart's three kinds.

Runs in the operator's image with python's standard library only, as a ServiceAccount of its own bound to
nothing (API discovery needs no more rights than any authenticated client has). Environment: HEALTH_URL (the
chart sets it), KUBERNETES_SERVICE_HOST and _PORT (the kubelet does) and the ServiceAccount's token and CA in
SERVICE_ACCOUNT_DIR (default: where the kubelet mounts them). Exits non-zero saying what failed.
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request

GROUP_VERSION = "rtc.recording.io/v1alpha1"
KINDS = {"rtcrecordings", "rtcrecordingschedules", "rtcrecordingclasses"}
account = os.environ.get("SERVICE_ACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
# In-cluster addresses: never through a proxy an environment may name.
tls = ssl.create_default_context(cafile=os.path.join(account, "ca.crt"))
http = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls))


def get(url, headers=None):
    try:
        with http.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.read().decode()
    except urllib.error.HTTPError as err:
        sys.exit(f"FAIL {url}: HTTP {err.code} {err.read().decode(errors='replace')[:500]}")
    except OSError as err:
        sys.exit(f"FAIL {url}: {err}")


print(f"ok   operator health: {get(os.environ['HEALTH_URL'])}")
host = os.environ["KUBERNETES_SERVICE_HOST"]
apiserver = f"https://[{host}]" if ":" in host else f"https://{host}"
with open(os.path.join(account, "token")) as f:
    token = f.read().strip()
served = json.loads(get(f"{apiserver}:{os.environ['KUBERNETES_SERVICE_PORT']}/apis/{GROUP_VERSION}",
                        {"Authorization": f"Bearer {token}"}))
missing = KINDS - {resource["name"] for resource in served["resources"]}
if missing:
    sys.exit(f"FAIL the apiserver does not serve {', '.join(sorted(missing))} ({GROUP_VERSION})")
print(f"ok   the apiserver serves {', '.join(sorted(KINDS))} ({GROUP_VERSION})")
