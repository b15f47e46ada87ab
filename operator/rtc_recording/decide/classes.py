"""RtcRecordingClass: pure decisions (which class applies, the merged spec, the status pin).

No I/O here: `controller/classresolver.py` reads the class and the namespace and asks these functions.

The merge (`merge`), exactly:
- A class's value applies only where it is valid for the resource's mode and media, so that a class
  never breaks a recording that is valid on its own: transcode only in Mixed mode, and its video
  settings (video*) only with video output; layout (its background) only in Mixed mode with video;
  in Individual mode, a file or slice name pattern only if it has {UserId} and {SourceType} (the CRD
  asks a resource's own names for {SourceType} only while a user is subscribed twice, which an
  Update may change; a class's names apply whatever the subscribers); a callback format
  (notify.fileUploadedFormats) only if it is recorded (none with VOD, MP4 and MP3 only with their
  files entry).
- spec.dropClassDefaults names fields the resource takes nothing of from its class (like a
  container's capabilities.drop, which removes what the runtime would otherwise grant).
- The RtcRecording's own value wins, field by field. Objects merge key by key, recursively, so a
  resource may set part of one (one transcode field, only storage.files), which the CRD accepts
  when it names a class; the merged spec is checked whole.
- Lists are replaced whole (the resource's list, if it sets one, is the list), with one exception:
  storage.files, a list keyed by format in the CRD, merges by format: the class's entries come
  first in the class's order, an entry for a format in both is merged key by key (so a resource can
  change only the fileNamePattern of the class's HLS entry), and the resource's other entries follow
  in its order. (pathPrefix inside an entry is a list: replaced whole.)
- storage.oss and storage.vod are one choice: a resource that sets either takes neither from the
  class, and with vod none of the class's files either (files are OSS only).
- The class sets only the fields in DEFAULT_FIELDS (layout: background; notify: url and
  fileUploadedFormats); credentials are not a spec field but the class's Secret reference. A
  notify.authKeySecretRef needs the resource's own notify.url (the CRD says so): a key signs the
  callbacks to that url, whose receiver knows it, not to the class's.

A resource that names no class gets the default class (annotation DEFAULT_CLASS_ANNOTATION "true",
whose selector matches its namespace; the newest if several are). Without a name the CRD checked
every field at apply, and the default class fills in only what is valid there.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from pydantic import ValidationError

from rtc_recording.api.names import DEFAULT_CLASS_ANNOTATION
from rtc_recording.api.recording import ClassDefault, Phase, RtcRecordingSpec, RtcRecordingStatus, spec_errors
from rtc_recording.decide import conditions, patches

DEFAULT_FIELDS: tuple[str, ...] = get_args(ClassDefault)


class Reason:
    """Why an RtcRecording waits or fails for its class, and a class's own Ready reasons (docs/troubleshooting.md)."""

    NOT_FOUND = "ClassNotFound"
    NOT_ALLOWED = "ClassNotAllowed"
    INVALID = "InvalidSpec"
    VALID = "ClassValid"
    INVALID_CLASS = "InvalidClass"


@dataclass(frozen=True)
class RecordingClass:
    name: str
    generation: int
    defaults: dict[str, Any]
    credentials: tuple[str, str] | None  # (namespace, name) of the Secret
    selector: dict[str, Any]
    default: bool
    created: str

    @classmethod
    def of(cls, obj: dict) -> RecordingClass:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ref = spec.get("credentialsSecretRef")
        return cls(
            meta["name"],
            int(meta.get("generation") or 1),
            {k: copy.deepcopy(spec[k]) for k in DEFAULT_FIELDS if k in spec},
            (ref["namespace"], ref["name"]) if ref else None,
            spec.get("namespaceSelector") or {},
            (meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true",
            meta.get("creationTimestamp") or "",
        )

    def pin(self) -> dict[str, Any]:
        """status.recordingClass: what a task started now is started from."""
        pin: dict[str, Any] = {"name": self.name, "generation": self.generation, "defaults": self.defaults}
        if self.credentials:
            pin["credentialsSecretRef"] = {"namespace": self.credentials[0], "name": self.credentials[1]}
        return pin


# -- which class ----------------------------------------------------------------------------------
def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector over a namespace's labels ({} matches every namespace)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, op, values = requirement["key"], requirement["operator"], requirement.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def default_class(classes: list[RecordingClass], labels: dict[str, str]) -> RecordingClass | None:
    """The default class for a namespace: annotated, selector matching; the newest if several (as StorageClass)."""
    candidates = [c for c in classes if c.default and selector_matches(c.selector, labels)]
    return max(candidates, key=lambda c: (c.created, c.name)) if candidates else None


@dataclass(frozen=True)
class Use:
    recording_class: RecordingClass


@dataclass(frozen=True)
class NoClass:
    pass


@dataclass(frozen=True)
class Refuse:
    """The class cannot be used (yet): `retry` says whether to wait (not found) or fail."""

    reason: str
    message: str
    retry: bool


Choice = Use | NoClass | Refuse


def choose(
    name: str | None,
    named: RecordingClass | None,
    classes: list[RecordingClass] | None,
    namespace: str,
    labels: dict[str, str],
) -> Choice:
    """The class of a resource in `namespace` (with `labels`) that names `name` (None: the default).
    `named` is the named class as read (None: it does not exist); `classes` all classes (for the default)."""
    if name is None:
        found = default_class(classes or [], labels)
        return Use(found) if found else NoClass()
    if named is None:
        return Refuse(
            Reason.NOT_FOUND,
            f"RtcRecordingClass {name} (spec.recordingClassName) does not exist; waiting for it",
            retry=True,
        )
    if not selector_matches(named.selector, labels):
        return Refuse(
            Reason.NOT_ALLOWED,
            f"RtcRecordingClass {name} may not be used in namespace {namespace}: "
            "it does not match the class's namespaceSelector",
            retry=False,
        )
    return Use(named)


# -- the merge -------------------------------------------------------------------------------------
def merge(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The effective spec: `defaults` (a class's) under `own` (the resource's spec), by the rules above.
    recordingClassName and dropClassDefaults are dropped: the result is checked with every rule, as a
    classless spec."""
    out = _merge_maps(applicable(defaults, own), own, ())
    out.pop("recordingClassName", None)
    out.pop("dropClassDefaults", None)
    notify, own_notify = out.get("notify"), own.get("notify") or {}
    if notify and "fileUploadedFormats" in notify and "fileUploadedFormats" not in own_notify:
        recorded = [x for x in notify.pop("fileUploadedFormats") if _recorded(x, out.get("storage") or {})]
        if recorded:
            notify["fileUploadedFormats"] = recorded
    return out


def applicable(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A copy of the class's defaults that are valid for the resource `own`'s mode and media, less those
    its dropClassDefaults names."""
    dropped = set(own.get("dropClassDefaults") or ())
    out = {k: copy.deepcopy(v) for k, v in defaults.items() if k in DEFAULT_FIELDS and k not in dropped}
    mixed, video = own.get("mode") == "Mixed", own.get("media", "AudioVideo") != "Audio"
    if not (mixed and video):
        out.pop("layout", None)
    if not mixed:
        out.pop("transcode", None)
        for entry in (out.get("storage") or {}).get("files") or []:
            for key in ("fileNamePattern", "sliceNamePattern"):
                if key in entry and not ("{UserId}" in entry[key] and "{SourceType}" in entry[key]):
                    del entry[key]
    elif not video and "transcode" in out:
        out["transcode"] = {k: v for k, v in out["transcode"].items() if not k.startswith("video")}
    return out


def _recorded(upload_format: str, storage: dict[str, Any]) -> bool:
    """Whether callbacks of this format can come: none with VOD; HLS (and SLICE) always with OSS; MP4 and
    MP3 only with their files entry."""
    upper = upload_format.upper()
    formats = {f.get("format") for f in storage.get("files") or []}
    return "vod" not in storage and (upper not in ("MP4", "MP3") or upper in formats)


def _merge_maps(base: dict[str, Any], over: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    if path == ("storage",) and ("oss" in over or "vod" in over):
        base = {k: v for k, v in base.items() if k not in ("oss", "vod") and not (k == "files" and "vod" in over)}
    for key, value in over.items():
        old = base.get(key)
        if path + (key,) == ("storage", "files") and isinstance(old, list) and isinstance(value, list):
            base[key] = _merge_files(old, value)
        elif isinstance(old, dict) and isinstance(value, dict):
            base[key] = _merge_maps(old, value, path + (key,))
        else:
            base[key] = copy.deepcopy(value)
    return base


def _merge_files(base: list[dict], over: list[dict]) -> list[dict]:
    by_format = {f.get("format"): f for f in over}
    merged = [
        _merge_maps(dict(f), by_format[f.get("format")], ("storage", "files", "[]"))
        if f.get("format") in by_format
        else dict(f)
        for f in base
    ]
    known = {f.get("format") for f in base}
    return merged + [copy.deepcopy(f) for f in over if f.get("format") not in known]


def effective_spec(own: dict[str, Any], pin: dict[str, Any] | None) -> dict[str, Any]:
    """The spec a task records with: the resource's own merged with the pinned class's defaults."""
    return merge((pin or {}).get("defaults") or {}, own) if pin else own


def effective_notify(obj: dict) -> dict[str, Any]:
    """spec.notify as the task of `obj` has it: the pinned class's notify (status.recordingClass) under
    the resource's own, merged as `merge` does. The receiver relays to its url, and the relayer posts
    there (a class's url is relayed exactly like the resource's own)."""
    pin = (obj.get("status") or {}).get("recordingClass")
    return effective_spec(obj.get("spec") or {}, pin).get("notify") or {}


def validate(own: dict[str, Any], pin: dict[str, Any] | None) -> RtcRecordingSpec:
    """The effective spec as the model; raises InvalidClassSpec naming the class and each field (and
    whether the class or the resource set it)."""
    merged = effective_spec(own, pin)
    try:
        return RtcRecordingSpec.model_validate(merged)
    except ValidationError as exc:
        if not pin:
            raise InvalidClassSpec(spec_errors(exc)) from None
        lines = []
        for line in spec_errors(exc).splitlines():
            field, message = line.split(": ", 1)
            if field != "spec":
                lines.append(f"{line} ({_who(field, own, pin)})")
                continue
            # A cross-field rule: say who set each field its message names.
            named = list(dict.fromkeys(m.group(0).rstrip(".") for m in _FIELD.finditer(message)))
            lines.append(f"{message} ({'; '.join(f'{n}: {_who(n, own, pin)}' for n in named)})" if named else message)
        raise InvalidClassSpec(
            f"the spec merged with RtcRecordingClass {pin['name']} (generation "
            f"{pin.get('generation')}) is invalid: " + "; ".join(lines)
        ) from None


_FIELD = re.compile(r"spec(\.[A-Za-z]+)+")


class InvalidClassSpec(ValueError):
    pass


def _who(field: str, own: dict[str, Any], pin: dict[str, Any]) -> str:
    """Who set a field path such as spec.storage.oss.endpoint: the class, the resource, or neither."""
    parts = [p for p in field.removeprefix("spec").replace("[", ".[").split(".") if p]

    def has(tree: Any) -> bool:
        for part in parts:
            if part.startswith("["):
                index = int(part.strip("[]"))
                if not isinstance(tree, list) or index >= len(tree):
                    return False
                tree = tree[index]
            elif isinstance(tree, dict) and part in tree:
                tree = tree[part]
            else:
                return False
        return True

    defaults = pin.get("defaults") or {}
    if has(own):
        return "set by the RtcRecording"
    if has(applicable(defaults, own)):
        return f"set by RtcRecordingClass {pin['name']}"
    if has(defaults) and parts[0] in (own.get("dropClassDefaults") or ()):
        return f"set by neither: spec.dropClassDefaults drops RtcRecordingClass {pin['name']}'s"
    return f"set by neither the RtcRecording nor RtcRecordingClass {pin['name']}"


# -- status -----------------------------------------------------------------------------------------
def class_pending(status: RtcRecordingStatus, reason: str, message: str, generation: int, now: datetime) -> dict:
    """Waiting for a class that does not exist yet (as a PVC waits for its StorageClass)."""
    return patches.transition(status, Phase.PENDING, reason, message, generation, now)


def account_fields(obj: dict) -> tuple[str | None, str | None, str | None]:
    """(region, Secret namespace, Secret name) a resource's cloud calls use: its own, else its pinned class's
    (the region as the effective spec has it: unless dropped)."""
    spec, pin = obj.get("spec") or {}, (obj.get("status") or {}).get("recordingClass") or {}
    return effective_spec(spec, pin).get("region"), *credentials_of(obj)


def credentials_of(obj: dict) -> tuple[str | None, str | None]:
    """(namespace, name) of the credentials Secret a resource's cloud calls use: its own, else its pinned
    class's; no name: the operator's own."""
    if (own := (obj.get("spec") or {}).get("credentialsSecretRef")) and own.get("name"):
        return obj["metadata"].get("namespace"), own["name"]
    ref = ((obj.get("status") or {}).get("recordingClass") or {}).get("credentialsSecretRef") or {}
    return ref.get("namespace"), ref.get("name")


def class_of(obj: dict) -> str | None:
    """The class a resource was started from (pinned in status), else the one it names."""
    pinned = ((obj.get("status") or {}).get("recordingClass") or {}).get("name")
    return pinned or (obj.get("spec") or {}).get("recordingClassName")


def pin_patch(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON merge patch that makes status.recordingClass `new`: keys of `old` that `new` lacks are
    nulled (a merge patch would otherwise keep them, mixing two generations' defaults)."""
    if new is None:
        return None
    if not isinstance(old, dict):
        return copy.deepcopy(new)
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        out[key] = pin_patch(old.get(key), value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


# -- the class's own status ---------------------------------------------------------------------------
def problems(obj: dict) -> list[str]:
    """What is wrong with a class that its CRD cannot refuse (an annotation is not validated)."""
    value = (obj["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)
    if value is not None and value not in ("true", "false"):
        return [f'annotation {DEFAULT_CLASS_ANNOTATION} is "{value}": only "true" makes a default class']
    return []


def class_status(obj: dict, in_use: bool, now: datetime) -> dict[str, Any]:
    """status of an RtcRecordingClass: default, inUse, problems, observedGeneration and Ready (with
    Stalled while a problem waits on a person). The same inputs give the same status: nothing to write."""
    meta, status = obj["metadata"], obj.get("status") or {}
    generation = int(meta.get("generation") or 1)
    found = problems(obj)
    if found:
        ready = (False, Reason.INVALID_CLASS, "; ".join(found))
    else:
        ready = (True, Reason.VALID, "RtcRecordings may use it in the namespaces spec.namespaceSelector matches")
    return {
        "observedGeneration": generation,
        "default": (meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true",
        "inUse": in_use,
        "problems": found or None,
        "conditions": conditions.conditions(
            status.get("conditions"), conditions.ready_and_stalled(*ready, stalled=bool(found)), generation, now
        ),
    }
