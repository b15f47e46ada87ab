"""The anchor: a minimal Kopf operator doing for each RtcRecording the writes a Start needs at the
least, and nothing else: Kopf's finalizer (a delete handler requires it), one status patch naming a
task, and one Event. No cloud call, no decision, no receiver. `python -m benchmarks.run` runs it
beside the operator on the same machine, in the same run: what Kopf itself costs per object is
then measured, not assumed.

    kopf run --standalone --all-namespaces benchmarks/anchor_operator.py
"""

import logging

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    # As the operator did before it had its own dispatcher: progress and diff-base in status, one
    # /status PATCH per handled change; Kopf's own Events off (one Event per object is ours).
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.lastHandled")
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


@kopf.on.create("rtc.recording.io", "v1alpha1", "rtcrecordings")
def started(body: kopf.Body, patch: kopf.Patch, **_) -> None:
    patch.status["phase"] = "Recording"
    patch.status["taskId"] = f"anchor-{body['metadata']['uid']}"
    kopf.event(body, type="Normal", reason="Started", message="anchor")


@kopf.on.delete("rtc.recording.io", "v1alpha1", "rtcrecordings")
def stopped(**_) -> None:
    pass
