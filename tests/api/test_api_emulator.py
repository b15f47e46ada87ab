"""The valid corpus and the examples through the emulator's rules: what the CRD and the model accept,
the vendor's page (as the emulator encodes it) must accept too.

The other direction, what the page accepts and the CRD refuses, is recorded item by item in the
corpus (the PAGE annotation: "ignores" and "silent" refusals are decisions of ours) and tested in
tests/emulator/test_validation.py.
"""

from __future__ import annotations

import pytest
import yaml
from api_corpus import EXAMPLES, effective, load

from rtc_recording.api.recording import RtcRecordingSpec
from rtc_recording.cloud.params import start_params, update_params
from rtc_recording.emulator.validation import Account, validate_start, validate_update

DOCS = [(f"corpus/{i.name}", i.docs[0]) for i in load("valid")] + [
    (f"examples/{p.name}", doc)
    for p in sorted(EXAMPLES.glob("*.yaml"))
    for doc in yaml.safe_load_all(p.read_text())
    if doc["kind"] == "RtcRecording"
]


@pytest.mark.parametrize("doc", [d for _, d in DOCS], ids=[n for n, _ in DOCS])
def test_what_the_crd_accepts_the_page_accepts(doc):
    spec = RtcRecordingSpec.model_validate(effective(doc))  # as started: merged with the class it names
    params = start_params(spec, region_default="cn-shanghai", notify_url=None, notify_auth_key=None)
    buckets = frozenset({spec.storage.oss.bucket} if spec.storage.oss else ())
    validate_start(params, Account(spec.region or "cn-shanghai", frozenset({spec.app_id}), buckets))


def _with_streams(doc: dict, n: int, preset: str) -> RtcRecordingSpec:
    """The corpus's Grid item with n streams with video (and a listener, while there is room), laid out by the
    preset (u0 shown large)."""
    first = {"userId": "u0", "media": "Video", "source": "Screen"} if preset == "ScreenShare" else {"userId": "u0"}
    listener = [{"userId": "listener", "media": "Audio"}] if n < 17 else []
    subscribers = [first] + [{"userId": f"u{i}"} for i in range(1, n)] + listener
    layout = {"preset": preset, **({"largeUserId": "u0"} if preset != "Grid" else {})}
    return RtcRecordingSpec.model_validate({**doc["spec"], "subscribers": subscribers, "layout": layout})


@pytest.mark.parametrize("preset", ["Grid", "Speaker", "ScreenShare"])
def test_the_page_accepts_the_panes_of_every_preset_and_the_update_to_one_more(preset):
    (grid,) = [i.docs[0] for i in load("valid") if i.name == "layout-preset-grid"]
    account = Account("cn-shanghai", frozenset({"demo-app"}), frozenset({"demo-recordings"}))
    for n in range(1, 17):
        spec = _with_streams(grid, n, preset)
        params = start_params(spec, region_default="cn-shanghai", notify_url=None, notify_auth_key=None)
        assert len(params["MixLayoutParams"]["UserPanes"]) == n
        task = validate_start(params, account)
        update = update_params(_with_streams(grid, n + 1, preset))
        assert len(update["MixLayoutParams"]["UserPanes"]) == n + 1
        validate_update(update, task, account)
