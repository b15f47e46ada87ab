"""A credentials Secret stays while a recording may still need it to stop its task.

Deleting a namespace deletes its Secrets and its RtcRecordings in no set order. A Secret is
gone at once, while an RtcRecording waits for the operator's finalizer: the Stop that
finalizer waits for then has no credentials, and the task would run on while the namespace
hangs in Terminating. So, like the PVC protection finalizer, the operator puts the finalizer
`rtc.recording.io/credentials-in-use` on a credentials Secret (one that opted in, see
cloud/secrets.py) before a recording starts with it, and takes it off once no RtcRecording of
that namespace that names the Secret is left but Completed, Failed or Suspended ones. A deleted Secret
then stays readable, Terminating, until the last Stop that needs it is done; after that
the namespace controller finishes.

What is left, and the fallback (`Stopper.stop (controller/executor/stop.py)`): a Secret that is gone anyway (its
finalizer removed by hand, or deleted before an operator with pins ran) while its namespace
is being deleted. Stop is then tried with the operator's own credentials, and if that cannot
stop it the task is given up on (logged, counted in rtcrec_tasks_abandoned_total, said in
status since Events cannot be created in a terminating namespace): the namespace goes, and
the task ends by itself after maxIdleSeconds of silence, or 72 hours.
"""

from __future__ import annotations

import asyncio
import logging

from rtc_recording.api.names import CREDENTIALS_FINALIZER
from rtc_recording.api.recording import SETTLED
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.secrets import CREDENTIALS, SecretCache
from rtc_recording.controller.index import Tracked
from rtc_recording.kube.client import Kube, secret_path
from rtc_recording.kube.errors import Conflict, NotFound

log = logging.getLogger(__name__)

TRIES = 5
Key = tuple[str, str]


class Pins:
    def __init__(self, kube: Kube, secrets: SecretCache):
        self.kube, self.secrets = kube, secrets
        self.users: dict[Key, set[str]] = {}  # Secret -> uids of unfinished recordings naming it
        self._uses: dict[str, Key] = {}  # uid -> the Secret it is counted for
        self.unpinned: set[Key] = set()  # Secrets known to be without our finalizer
        self._locks: dict[Key, asyncio.Lock] = {}  # one per credentials Secret pinned

    def saw(self, uid: str, tracked: Tracked | None, gone: Tracked | None = None) -> Key | None:
        """Every watch event (`tracked` None: deleted, `gone` the last seen of it). Returns a Secret
        that may have lost its last unfinished recording: worth a `release`."""
        old = self.forget(uid)
        if tracked is not None and tracked.secret and tracked.secret_namespace is None and tracked.phase not in SETTLED:
            key = (tracked.namespace, tracked.secret)
            self._uses[uid] = key
            self.users.setdefault(key, set()).add(uid)
            return None
        last = tracked or gone  # a class's Secret in another namespace is not pinned: nothing to release
        freed = old or (
            (last.namespace, last.secret)
            if last is not None and last.secret and last.secret_namespace is None
            else None
        )
        return freed if freed is not None and freed not in self.users and freed not in self.unpinned else None

    def forget(self, uid: str) -> Key | None:
        """Not counted any more (deleted, or moved to another shard with every user of its Secret)."""
        key = self._uses.pop(uid, None)
        if key is not None:
            users = self.users.get(key, set())
            users.discard(uid)
            if not users:
                self.users.pop(key, None)
        return key

    async def pin(self, obj: dict) -> None:
        """Before a recording may start: its credentials Secret (if it names one that opted in)
        carries our finalizer. A Secret that did not opt in is left alone: the Start is refused."""
        name = ((obj.get("spec") or {}).get("credentialsSecretRef") or {}).get("name")
        if not name:
            return
        namespace = obj["metadata"]["namespace"]
        # One at a time per Secret: a burst's Starts of one account would each PATCH the same finalizer
        # list at once, and all but one fail their compare-and-swap and read the Secret again.
        async with self._locks.setdefault((namespace, name), asyncio.Lock()):
            await self._pin(obj, namespace, name)

    async def _pin(self, obj: dict, namespace: str, name: str) -> None:
        for _ in range(TRIES):
            try:
                secret = await self.secrets.consented(namespace, name, "spec.credentialsSecretRef", CREDENTIALS)
            except CredentialsUnavailable:
                return
            meta = secret["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if CREDENTIALS_FINALIZER in finalizers:
                self.unpinned.discard((namespace, name))
                return
            if meta.get("deletionTimestamp"):
                return  # being deleted: no finalizer can be added any more (and none is needed for a Start)
            try:
                self.secrets.remember(
                    await self.kube.patch_finalizers(
                        secret_path(namespace, name), [*finalizers, CREDENTIALS_FINALIZER], meta["resourceVersion"]
                    )
                )
                self.unpinned.discard((namespace, name))
                log.info(
                    "%s/%s: Secret %s is in use (finalizer %s)",
                    namespace,
                    obj["metadata"]["name"],
                    name,
                    CREDENTIALS_FINALIZER,
                )
                return
            except Conflict:
                self.secrets.forget(namespace, name)
            except NotFound:
                return
        raise Conflict(f"Secret {namespace}/{name} kept changing")

    async def release(self, namespace: str, name: str | None, but: str | None = None) -> None:
        """Take our finalizer off the Secret if no unfinished recording names it any more; `but`:
        the uid of a recording whose deletion has just stopped its task (the watch may still show
        it for a moment)."""
        if but is not None:
            self.forget(but)
        if not name or self.users.get((namespace, name)):
            return
        for _ in range(TRIES):
            try:
                secret = await self.kube.get_secret(namespace, name)  # fresh: a finalizer is not cached business
            except NotFound:
                self.unpinned.add((namespace, name))
                return
            meta = secret["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if CREDENTIALS_FINALIZER not in finalizers:
                self.unpinned.add((namespace, name))
                return
            try:
                await self.kube.patch_finalizers(
                    secret_path(namespace, name),
                    [f for f in finalizers if f != CREDENTIALS_FINALIZER],
                    meta["resourceVersion"],
                )
                self.secrets.forget(namespace, name)
                self.unpinned.add((namespace, name))
                log.info("Secret %s/%s is no longer in use (finalizer removed)", namespace, name)
                return
            except Conflict:
                continue
            except NotFound:
                return
        raise Conflict(f"Secret {namespace}/{name} kept changing")
