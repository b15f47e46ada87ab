"""handlers.SlimDiffBase builds Kopf's diff-base essence without deep-copying status: the essence
must be exactly Kopf's own, or every object would look changed after an upgrade."""

import kopf

from rtc_recording.controller.handlers import SlimDiffBase

BODY = {
    "apiVersion": "rtc.recording.io/v1alpha1",
    "kind": "RtcRecording",
    "metadata": {
        "name": "rec",
        "namespace": "ns",
        "uid": "u",
        "generation": 3,
        "labels": {"team": "a"},
        "annotations": {
            "rtc.recording.io/adopt-task-id": "t-9",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "kopf.zalando.org/last-handled-configuration": "{}",
        },
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        "finalizers": ["rtc.recording.io/stop-task"],
    },
    "spec": {"appId": "a", "channelId": "c", "subscribers": [{"userId": "u1"}], "suspend": None},
    "status": {"phase": "Recording", "kopf": {"lastHandled": "{}"}, "history": [{"taskId": "t"}]},
}


def test_the_essence_is_kopfs_own():
    for body in (BODY, {**BODY, "metadata": {"name": "bare", "namespace": "ns"}}, {**BODY, "status": {}}):
        for extra in (None, ["spec"], ["spec.subscribers"]):
            ours = SlimDiffBase(field="status.kopf.lastHandled").build(body=kopf.Body(body), extra_fields=extra)
            kopfs = kopf.StatusDiffBaseStorage(field="status.kopf.lastHandled").build(
                body=kopf.Body(body), extra_fields=extra
            )
            assert ours == kopfs
    assert "status" not in ours and ours["metadata"]["labels"] == {"team": "a"}
