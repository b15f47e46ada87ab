"""The API's names: group, version, kinds, labels, annotations, finalizers and paths.

One place, so that the operator, the receiver, the plugin and the tests spell them alike.
"""

from __future__ import annotations

from urllib.parse import quote

GROUP = "rtc.recording.io"
VERSION = "v1alpha1"
PLURAL = "rtcrecordings"
CLASS_PLURAL = "rtcrecordingclasses"
SCHEDULE_PLURAL = "rtcrecordingschedules"
COMPONENT = "rtc-recording-operator"  # Events' source and reporting controller
TROUBLESHOOTING = "docs/troubleshooting.md"  # in the operator's repository: every phase and reason


def troubleshooting(reason: str) -> str:
    """The section of docs/troubleshooting.md on a phase or reason: its headings are the operator's
    reasons, one each; a vendor's code (InvalidParameter.AppId) is in the section on them all."""
    return f"{TROUBLESHOOTING}#{reason.lower() if reason.isalnum() else 'cloud-error-codes'}"


# Annotations a user writes
ADOPT_ANNOTATION = f"{GROUP}/adopt-task-id"
DEFAULT_CLASS_ANNOTATION = f"{GROUP}/is-default-class"

# Labels and annotations the operator writes
SCHEDULE_LABEL = f"{GROUP}/schedule"
SCHEDULED_AT_ANNOTATION = f"{GROUP}/scheduled-at"
EVIDENCE_LABEL = f"{GROUP}/evidence"
RELAY_LABEL = f"{GROUP}/relay"
REPLAY_LABEL = f"{GROUP}/replay"  # on a ConfigMap: a callback header pair admitted by some receiver replica
DELETION_LABEL = f"{GROUP}/deletion"  # on a ConfigMap: what a deletion did with its task (orphaned, stopped)
TASK_LABEL = f"{GROUP}/task"  # ... and which task
USAGE_LABEL = f"{GROUP}/usage"  # on a Secret: what it consents to be read for
SHARD_LABEL = f"{GROUP}/shard"  # on an RtcRecording or a schedule: the shard that acts on it (docs/sharding.md)
DRAIN_LABEL = f"{GROUP}/drain"  # ... and the shard it moves to once its owner has let go
# On a Lease, or an object handed to another shard: every Event pending in a status stamped before it was posted
EVENTS_MARK = f"{GROUP}/events-posted-before"
RING_LABEL = f"{GROUP}/ring"  # on a shard's Lease: the ring (the release's Lease name) it is a member of

# Finalizers
STOP_FINALIZER = f"{GROUP}/stop-task"  # on an RtcRecording: its task is stopped before it goes
CREDENTIALS_FINALIZER = f"{GROUP}/credentials-in-use"  # on a Secret a recording may still need


def segment(value: str) -> str:
    """One URL path segment: whatever a caller passes can never become `/`, `.` or `..` (which the
    apiserver's path cleaning would resolve, making a Secret's name read the Namespace above it)."""
    if value in (".", ".."):
        raise ValueError(f"{value!r} is not a name")
    return quote(value, safe="")


def _path(plural: str, namespace: str | None, name: str, sub: str) -> str:
    if namespace is None:  # every namespace
        return f"/apis/{GROUP}/{VERSION}/{plural}"
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{segment(namespace)}/{plural}"
    return path + (f"/{segment(name)}" if name else "") + (f"/{sub}" if sub else "")


def recording_path(namespace: str | None, name: str = "", sub: str = "") -> str:
    return _path(PLURAL, namespace, name, sub)


def schedule_path(namespace: str | None, name: str = "", sub: str = "") -> str:
    return _path(SCHEDULE_PLURAL, namespace, name, sub)


def class_path(name: str = "", sub: str = "") -> str:
    """RtcRecordingClasses are cluster-scoped."""
    return (
        f"/apis/{GROUP}/{VERSION}/{CLASS_PLURAL}" + (f"/{segment(name)}" if name else "") + (f"/{sub}" if sub else "")
    )
