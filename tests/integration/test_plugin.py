"""`kubectl rtcrec` (the kubectl-rtcrec console script) against the local apiserver, with a
kubeconfig whose current context points nowhere: --context picks the working one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from .conftest import ACCESS_KEY, recording, wait_for
from .test_schedules import schedule
from .test_security import secret

pytestmark = pytest.mark.cluster
PLUGIN = str(Path(sys.executable).with_name("kubectl-rtcrec"))


@pytest.fixture
def kubeconfig(stack, tmp_path) -> Path:
    config = yaml.safe_load(Path(stack.cluster.kubeconfig).read_text())
    (context,) = config["contexts"]
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}})
    config["contexts"] = [
        {"name": "local", "context": context["context"]},
        {"name": "broken", "context": {**context["context"], "cluster": "nowhere"}},
    ]
    config["current-context"] = "broken"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def rtcrec(
    kubeconfig: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [PLUGIN, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60, env=env
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_stop_resume_history_and_files(stack, namespace, channel, kubeconfig):
    stack.apply(namespace, recording("talk", channel))
    first = stack.wait_phase(namespace, "talk", "Recording")["taskId"]
    assert rtcrec(kubeconfig, "-n", namespace, "history", "talk", check=False).returncode != 0  # the current context
    local = ["--context", "local", "-n", namespace]
    wait_for(lambda: (stack.status(namespace, "talk").get("files") or {}).get("hls"), timeout=30, what="files")
    out = rtcrec(kubeconfig, *local, "stop", "talk").stdout
    assert "rtcrecording.rtc.recording.io/talk suspended" in out
    stack.wait_phase(namespace, "talk", "Suspended")
    rtcrec(kubeconfig, *local, "resume", "talk")
    second = stack.wait_phase(namespace, "talk", "Recording")["taskId"]
    history = json.loads(rtcrec(kubeconfig, *local, "-o", "json", "history", "talk").stdout)
    assert [t["taskId"] for t in history["tasks"]] == [first, second]
    assert history["tasks"][0]["reason"] == "Suspended" and history["tasks"][1]["current"]
    table = rtcrec(kubeconfig, *local, "history", "talk").stdout
    assert table.splitlines()[0].split() == ["TASK", "START", "END", "STATE"] and first in table
    assert table.splitlines()[-1] == (
        "what each state means: docs/troubleshooting.md#suspended, docs/troubleshooting.md#recording"
    )
    files = yaml.safe_load(rtcrec(kubeconfig, *local, "-o", "yaml", "files", "talk").stdout)
    first_files = [f for f in files["files"] if f["taskId"] == first]
    assert first_files and all(f["url"].startswith("oss://demo-recordings/") for f in first_files)
    assert {f["kind"] for f in first_files} >= {"HLS"}
    assert first in rtcrec(kubeconfig, *local, "files", "talk").stdout


def test_run_now_and_stopping_a_schedule(stack, namespace, channel, kubeconfig):
    stack.apply(namespace, schedule("board", channel, "0 0 1 1 *"))
    local = ["--context", "local", "-n", namespace]
    created = json.loads(rtcrec(kubeconfig, *local, "-o", "json", "run-now", "board").stdout)
    name = created["metadata"]["name"]
    assert name.startswith("board-") and created["metadata"]["ownerReferences"][0]["name"] == "board"
    stack.wait_phase(namespace, name, "Recording")
    assert "rtcrecordingschedule.rtc.recording.io/board suspended" in rtcrec(kubeconfig, *local, "stop", "board").stdout
    got = json.loads(stack.cluster.kubectl("get", "rtcrecsched", "board", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["suspend"] is True
    missing = rtcrec(kubeconfig, *local, "files", "nothing-here", check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_files_url_links_play_until_they_expire(stack, namespace, channel, kubeconfig):
    """`files --url` signs with the recording's Secret (readable with this kubeconfig), or with the
    ALIBABA_CLOUD_* environment when the recording names none; the emulator's OSS endpoint serves the
    object behind a link, and refuses an altered link and one past its expiry (the clock advanced)."""
    secret(stack, namespace, "aliyun", "credentials", accessKeyId=ACCESS_KEY[0], accessKeySecret=ACCESS_KEY[1])
    stack.apply(namespace, recording("talk", channel, credentialsSecretRef={"name": "aliyun"}))
    stack.apply(namespace, recording("talk-env", channel))  # the operator's own credentials
    plugin_key = ("LTAIpluginUser", "plugin-user-secret")  # the caller's own AccessKey, not the operator's
    stack.emulator.control.credentials(access_keys=dict([plugin_key]))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    caller = {**clean, "ALIBABA_CLOUD_ACCESS_KEY_ID": plugin_key[0], "ALIBABA_CLOUD_ACCESS_KEY_SECRET": plugin_key[1]}
    local = ["--context", "local", "-n", namespace]
    oss = ["--url", "--oss-endpoint", stack.emulator.url]
    http = requests.Session()
    http.trust_env = False  # loopback only
    links = {}
    for name, env, extra in (("talk", clean, []), ("talk-env", caller, ["--expires", "10m"])):
        stack.wait_phase(namespace, name, "Recording")
        wait_for(lambda n=name: (stack.status(namespace, n).get("files") or {}).get("hls"), timeout=30, what="files")
        out = rtcrec(kubeconfig, *local, "-o", "json", "files", name, *oss, *extra, env=env)
        row = json.loads(out.stdout)["files"][0]
        assert row["kind"] == "HLS" and row["url"].startswith(f"{stack.emulator.url}/demo-recordings/"), row
        links[name] = row["url"]
        got = http.get(row["url"], timeout=10)
        assert got.status_code == 200, got.text
        assert got.text.startswith("#EXTM3U") and row["object"] in got.text
        if name == "talk":
            assert "signed with the AccessKey of Secret" in out.stderr and plugin_key[0] not in row["url"]
        else:
            assert "default credential chain" in out.stderr and f"x-oss-credential={plugin_key[0]}" in row["url"]

    altered = http.get(links["talk"].replace(".m3u8?", ".mp4?"), timeout=10)
    assert altered.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in altered.text
    stack.emulator.control.advance(11 * 60)  # past the 10-minute link, well within the hour
    expired = http.get(links["talk-env"], timeout=10)
    assert expired.status_code == 403 and "<Message>Request has expired.</Message>" in expired.text
    assert http.get(links["talk"], timeout=10).status_code == 200
