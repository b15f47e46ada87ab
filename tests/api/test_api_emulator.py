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
from rtc_recording.cloud.params import start_params
from rtc_recording.emulator.validation import Account, validate_start

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
