"""Which resource started which task: a seal that only the operator can make.

`status.taskId` is written by the operator, but whoever may `patch rtcrecordings/status` (CI
and GitOps tools often may) can write it too, and point it at another resource's task. So
whenever the operator writes a task id it also writes `status.taskSeal`: an HMAC-SHA256 over
(resource uid, Start attempt, task id, and the account its calls use: region and credentials
Secret, which a class's pin in status.recordingClass may name) with a key only the operator
holds. A task whose seal
does not verify is not the resource's: the operator does not Update it, Stop it, Describe it
for that resource, adopt it or count it as anyone's current task (`Index.owner`); it says so
once, with an Event and Synced=False (README, Security model).

The key: `RTCREC_OWNERSHIP_KEY` (the chart generates one into a Secret that only the operator
mounts). Without it the key is derived from the callback auth key (HKDF-SHA256), which the
receiver holds too; with neither the operator does not start.

The class pin (status.recordingClass) names the credentials Secret a resource's calls use, so it
carries its own seal, `status.recordingClass.seal`: an HMAC over (resource uid, class name,
generation, the class's region and credentials Secret), made when the operator pins a class it
has read and found to select the namespace (`controller/executor/pinning.py`), and written with
the attempt or the adoption. The account lookup (`account_proven`) takes a pin only with a seal
that verifies, or, for a pin without one (written before pin seals existed, or the operator's own
stand-in from its index), only while the task seal verifies over the same account. The pin seal
is not bound to an attempt: a pin this resource once had is one the operator chose for it, and
the task seal binds the account of the running task to its attempt.

Objects written by an operator that did not seal yet are sealed once, at the first start of
one that does (`migrate`): it trusts status as it is then, as the older operator did, except
for task ids that two resources claim (neither is sealed). A ConfigMap in the operator's
namespace records that this was done, so no later proof-less task id is ever sealed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import datetime
from typing import overload

from rtc_recording.api.recording import status_of
from rtc_recording.decide import patches
from rtc_recording.decide.classes import account_fields

log = logging.getLogger(__name__)

VERSION = "v1"
PIN_VERSION = "pin1"
REASON = "TaskNotProven"
Account = tuple[str, str, str]  # region, Secret namespace, Secret name ("" for none)
NO_ACCOUNT: Account = ("", "", "")


class Sealer:
    def __init__(self, key: bytes):
        if len(key) < 16:
            raise ValueError("an ownership key has at least 16 bytes")
        self._key = key

    def seal(self, uid: str, attempt: int | None, task_id: str, account: Account = NO_ACCOUNT) -> str:
        message = "\0".join((VERSION, uid, str(attempt or 0), task_id, *account)).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return f"{VERSION}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"

    def verify(
        self, uid: str, attempt: int | None, task_id: str | None, seal: str | None, account: Account = NO_ACCOUNT
    ) -> bool:
        if not task_id or not seal or not isinstance(seal, str):
            return False
        return hmac.compare_digest(self.seal(uid, attempt, task_id, account).encode(), seal.encode(errors="replace"))

    def pin_seal(self, uid: str, pin: dict) -> str:
        """The seal of a class pin, over what picks the account (and the class's name and generation)."""
        ref = pin.get("credentialsSecretRef") or {}
        fields = (
            PIN_VERSION,  # never equal to a task seal's message, which starts with VERSION
            uid,
            pin.get("name"),
            pin.get("generation"),
            (pin.get("defaults") or {}).get("region"),
            ref.get("namespace"),
            ref.get("name"),
        )
        message = "\0".join("" if f is None else str(f) for f in fields).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return f"{PIN_VERSION}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"

    def pin_proven(self, obj: dict) -> bool:
        """Does status.recordingClass carry our seal for this resource?"""
        pin = (obj.get("status") or {}).get("recordingClass")
        if not isinstance(pin, dict) or not isinstance(seal := pin.get("seal"), str):
            return False
        expected = self.pin_seal(obj["metadata"]["uid"], pin)
        return hmac.compare_digest(expected.encode(), seal.encode(errors="replace"))

    def account_proven(self, obj: dict) -> bool:
        """May the account that `account_of(obj)` names be used for this resource? Without a class pin
        it is the resource's own (spec) or the operator's; a pin needs its seal, or (a pin without one)
        the task seal over the same account."""
        pin = (obj.get("status") or {}).get("recordingClass")
        if not pin:
            return True
        if isinstance(pin, dict) and "seal" in pin:
            return self.pin_proven(obj)
        return self.proven(obj)

    def proven(self, obj: dict) -> bool:
        """Is status.taskId of this object sealed by us for this resource, attempt and account (and its
        class pin, if that carries a seal, ours)?"""
        status = obj.get("status") or {}
        pin = status.get("recordingClass")
        if isinstance(pin, dict) and "seal" in pin and not self.pin_proven(obj):
            return False
        return self.verify(
            obj["metadata"]["uid"], _attempt(status), status.get("taskId"), status.get("taskSeal"), account_of(obj)
        )

    @overload
    def sealed(self, obj: dict, patch: dict) -> dict: ...
    @overload
    def sealed(self, obj: dict, patch: None) -> None: ...
    def sealed(self, obj: dict, patch: dict | None) -> dict | None:
        """`patch` with taskSeal set for the task id it writes (cleared when it clears the task),
        over the status as the patch leaves it."""
        if patch is None or "taskId" not in patch:
            return patch
        if not patch["taskId"]:
            return {**patch, "taskSeal": None}
        after = {**obj, "status": _merged(obj.get("status") or {}, patch)}
        return {
            **patch,
            "taskSeal": self.seal(
                obj["metadata"]["uid"], _attempt(after["status"]), patch["taskId"], account_of(after)
            ),
        }


def account_of(obj: dict) -> Account:
    """The account a resource's calls use (classes.account_fields), as sealed."""
    region, namespace, name = account_fields(obj)
    return region or "", (namespace or "") if name else "", name or ""


def _merged(target: object, patch: object) -> object:
    """A JSON merge patch (RFC 7386) applied."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out.get(key), value)
    return out


def _attempt(status: dict) -> int | None:
    attempt = status.get("attempt")
    number = attempt.get("number") if isinstance(attempt, dict) else None
    return number if isinstance(number, int) else None


def refusal(obj: dict, now: datetime) -> dict | None:
    """The status patch that says the task is not proven (None: status says so already)."""
    status, generation = status_of(obj), obj["metadata"].get("generation", 0)
    message = (
        f"status.taskId {status.task_id} was not written by the operator (its seal does not match this "
        "resource): the operator neither updates, stops nor describes it. Delete this RtcRecording and "
        "create it again"
    )[:1024]
    synced = next((c for c in status.conditions if c.type == "Synced"), None)
    if (
        synced is not None
        and synced.status == "False"
        and synced.reason == REASON
        and synced.message == message
        and synced.observed_generation == generation
    ):
        return None
    # observedGeneration moves on, as for any refused Update: seen, and no retry will help (docs/gitops.md).
    return {
        "reason": REASON,
        "message": message,
        "observedGeneration": generation,
        "conditions": patches.condition(status, "Synced", False, REASON, message, generation, now),
    }
