"""The credentials Secret's finalizer: on before a Start, off when the last recording that needs it is done."""

from rtc_recording.api.names import CREDENTIALS_FINALIZER
from rtc_recording.cloud.secrets import SecretCache
from rtc_recording.controller.index import Tracked
from rtc_recording.controller.pins import Pins
from rtc_recording.kube.errors import Conflict, NotFound


class FakeKube:
    def __init__(self, labels=None):
        self.secret = {
            "metadata": {
                "namespace": "ns",
                "name": "key",
                "resourceVersion": "1",
                "labels": labels if labels is not None else {"rtc.recording.io/usage": "credentials"},
                "finalizers": ["someone.else/keep"],
            },
            "data": {},
        }
        self.patches = 0
        self.conflicts = 0

    async def get_secret(self, namespace, name):
        if self.secret is None:
            raise NotFound(name)
        return self.secret

    async def patch_finalizers(self, path, finalizers, resource_version):
        if self.conflicts:
            self.conflicts -= 1
            self.secret = {**self.secret, "metadata": {**self.secret["metadata"], "resourceVersion": "2"}}
            raise Conflict(path)
        assert resource_version == self.secret["metadata"]["resourceVersion"]
        self.patches += 1
        self.secret = {**self.secret, "metadata": {**self.secret["metadata"], "finalizers": finalizers}}
        return self.secret


def recording(name, uid, phase="Recording", secret="key"):
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": uid},
        "spec": {"credentialsSecretRef": {"name": secret}},
        "status": {"phase": phase},
    }


def pins(kube, *objs):
    p = Pins(kube, SecretCache(kube))
    for obj in objs:
        p.saw(obj["metadata"]["uid"], Tracked.of(obj))
    return p


async def test_pinned_once_and_released_by_the_last_user():
    kube = FakeKube()
    kube.conflicts = 1
    a, b = recording("a", "uid-a"), recording("b", "uid-b")
    p = pins(kube, a, b)
    await p.pin(a)
    await p.pin(b)
    assert kube.secret["metadata"]["finalizers"] == ["someone.else/keep", CREDENTIALS_FINALIZER] and kube.patches == 1
    await p.release("ns", "key", but="uid-a")  # b still records
    assert CREDENTIALS_FINALIZER in kube.secret["metadata"]["finalizers"]
    assert p.saw("uid-a", Tracked.of(a)) is None  # the watch still shows a for a moment: it counts again
    await p.release("ns", "key", but="uid-b")
    assert CREDENTIALS_FINALIZER in kube.secret["metadata"]["finalizers"]
    assert p.saw("uid-b", None, Tracked.of(b)) is None  # b is gone, a is not yet
    assert p.saw("uid-a", None, Tracked.of(a)) == ("ns", "key")  # the last one went
    await p.release("ns", "key")
    assert kube.secret["metadata"]["finalizers"] == ["someone.else/keep"]
    assert p.saw("uid-c", Tracked.of(recording("c", "uid-c", phase="Completed"))) is None  # known unpinned


async def test_finishing_releases_and_others_are_left_alone():
    kube = FakeKube()
    a = recording("a", "uid-a")
    p = pins(kube, a, recording("c", "uid-c", secret="other"))
    await p.pin(a)
    for phase in ("Completed", "Suspended", "Failed"):
        kube.secret["metadata"]["finalizers"].append(CREDENTIALS_FINALIZER) if CREDENTIALS_FINALIZER not in kube.secret[
            "metadata"
        ]["finalizers"] else None
        p.unpinned.clear()
        p.saw("uid-a", Tracked.of(recording("a", "uid-a")))
        assert p.saw("uid-a", Tracked.of(recording("a", "uid-a", phase=phase))) == ("ns", "key")
        await p.release("ns", "key")
        assert CREDENTIALS_FINALIZER not in kube.secret["metadata"]["finalizers"]
    unlabelled = FakeKube(labels={})
    p = pins(unlabelled)
    await p.pin(recording("a", "uid-a"))  # not consented: never touched
    assert unlabelled.patches == 0
    kube.secret = None
    await pins(kube).release("ns", "key")  # gone: nothing to do
