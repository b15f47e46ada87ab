"""Settings fail loudly at start-up, naming the variable."""

import json
from pathlib import Path

import pytest
import yaml

from rtc_recording.api.fields import REGIONS
from rtc_recording.cli import main
from rtc_recording.cloud.aliyun import ENDPOINTS


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"RTCREC_DEFAULT_REGION": "mars"}, "RTCREC_DEFAULT_REGION"),
        ({"RTCREC_QUOTA_PER_SECOND": "0"}, "RTCREC_QUOTA_PER_SECOND"),
        ({"RTCREC_CALLBACK_URL": "https://cb.example.com"}, "RTCREC_CALLBACK_AUTH_KEY is required"),
        (
            {"RTCREC_CALLBACK_URL": "https://cb.example.com", "RTCREC_CALLBACK_AUTH_KEY": "short"},
            "RTCREC_CALLBACK_AUTH_KEY: Value error, must be 16 to 64 letters and digits",
        ),
        ({"RTCREC_SHARDING": "true"}, "RTCREC_SHARDING needs RTCREC_POD_NAME"),
        ({"RTCREC_SHARDING": "true", "RTCREC_POD_NAME": "Shard_0"}, "got 'Shard_0'"),
    ],
)
def test_bad_settings_stop_the_operator_with_a_clear_message(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert "invalid operator settings" in str(exit_.value) and expected in str(exit_.value)
    assert "RTCREC_:" not in str(exit_.value)


def test_the_regions_are_one_list():
    """resource.REGIONS is the home; the CRDs, the chart's values schema and the endpoints agree."""
    repo = Path(__file__).resolve().parents[2]
    for crd in ("rtcrecordings", "rtcrecordingclasses", "rtcrecordingschedules"):
        text = (repo / "crds" / f"{crd}.yaml").read_text()
        enums = [n["enum"] for n in _nodes(yaml.safe_load(text)) if "enum" in n and "us-east-1" in n["enum"]]
        assert enums and all(tuple(e) == REGIONS for e in enums), crd
    schema = json.loads((repo / "charts" / "rtc-recording-operator" / "values.schema.json").read_text())
    assert tuple(schema["properties"]["settings"]["properties"]["defaultRegion"]["enum"]) == REGIONS
    assert tuple(ENDPOINTS) == REGIONS


def _nodes(node):
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _nodes(child)
    elif isinstance(node, list):
        for child in node:
            yield from _nodes(child)


def test_the_ownership_key_is_its_own_or_derived_from_the_callback_key_and_never_either_key_itself(monkeypatch):
    from rtc_recording.api.keys import derive_key
    from rtc_recording.settings import Settings

    for name in ("RTCREC_OWNERSHIP_KEY", "RTCREC_CALLBACK_AUTH_KEY", "RTCREC_CALLBACK_URL"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().ownership_secret() is None  # `rtcrec run` refuses to start then
    monkeypatch.setenv("RTCREC_CALLBACK_AUTH_KEY", "callbackKey0123456789")
    derived = Settings().ownership_secret()
    assert derived == derive_key("callbackKey0123456789") and b"callbackKey" not in derived
    monkeypatch.setenv("RTCREC_OWNERSHIP_KEY", "ownershipKey0123456789abcdefghijkl")
    assert Settings().ownership_secret() == derive_key("ownershipKey0123456789abcdefghijkl") != derived
