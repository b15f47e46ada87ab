"""A shard's side of sharding (controller/shard.py): it acts only on what its index holds, counts what is
under way, and hands an object over only when nothing is; the sharder's plan (controller/sharder.py)."""

import asyncio

from rtc_recording.api.names import DRAIN_LABEL, EVENTS_MARK, SHARD_LABEL
from rtc_recording.controller.index import Index
from rtc_recording.controller.membership import Membership
from rtc_recording.controller.shard import Shard
from rtc_recording.controller.sharder import Seen, Sharder
from rtc_recording.decide.ownership import Sealer
from rtc_recording.decide.shards import Relabel

from .fakes import NS, FakeKube


def setup(labels=None):
    kube = FakeKube()
    obj = kube.add_recording({"metadata": {"name": "r", "labels": labels or {SHARD_LABEL: "a"}}, "spec": {}})
    index = Index(Sealer(b"k" * 32))
    index.saw("ADDED", obj)
    return kube, index, Shard("a", kube, index, lambda o: "2026-12-07T00:00:00.000000Z", 10), obj


async def drained_while_busy(kube, shard):
    """Something under way for r (until `gate` is set), then the sharder's drain label on it, as written."""
    gate = asyncio.Event()
    busy = asyncio.create_task(shard.act((NS, "r"), gate.wait()))
    await asyncio.sleep(0)
    drained = kube.edit(NS, "r", lambda o: o["metadata"]["labels"].update({DRAIN_LABEL: "b"}))
    return gate, busy, drained


def test_a_shard_acts_only_on_what_its_index_holds():
    async def main():
        kube, index, shard, obj = setup()
        ran = []

        async def act(name):
            ran.append(name)

        await shard.act((NS, "r"), act("r"))
        await shard.act((NS, "elsewhere"), act("elsewhere"))  # not ours: dropped, never awaited
        index.forget((NS, "r"))
        await shard.act((NS, "r"), act("moved"))
        await shard.act((NS, "gone"), act("evidence"), anyway=True)
        return ran

    assert asyncio.run(main()) == ["r", "evidence"]


def test_the_handover_waits_for_what_is_under_way_then_writes_the_next_owner_and_its_mark():
    async def main():
        kube, index, shard, obj = setup()
        gate, busy, drained = await drained_while_busy(kube, shard)
        index.forget((NS, "r"))
        shard.hand_over(drained)
        await asyncio.sleep(0.1)
        assert kube.recording("r")["metadata"]["labels"] == {SHARD_LABEL: "a", DRAIN_LABEL: "b"}  # not yet
        # What is under way writes meanwhile: the handover reads again and still hands over.
        kube.poke_status(NS, "r", {"phase": "Recording"})
        gate.set()
        await busy
        await asyncio.sleep(0.1)
        got = kube.recording("r")["metadata"]
        assert got["labels"] == {SHARD_LABEL: "b"}
        assert got["annotations"][EVENTS_MARK] == "2026-12-07T00:00:00.000000Z"
        assert shard.left({"metadata": {"namespace": NS, "name": "r", "deletionTimestamp": "x"}})  # ours handed over

    asyncio.run(main())


def test_a_move_called_off_before_the_handover_keeps_the_object():
    async def main():
        kube, index, shard, obj = setup()
        gate, busy, drained = await drained_while_busy(kube, shard)
        shard.hand_over(drained)
        kube.edit(NS, "r", lambda o: o["metadata"]["labels"].pop(DRAIN_LABEL))  # the sharder changed its mind
        gate.set()
        await busy
        await asyncio.sleep(0.1)
        return kube.recording("r")["metadata"]["labels"]

    assert asyncio.run(main()) == {SHARD_LABEL: "a"}


def test_a_deleted_event_is_a_deletion_only_for_an_object_that_went_through_one():
    _, _, shard, _ = setup()
    assert shard.left({"metadata": {"namespace": NS, "name": "r"}})  # left the selector (or never had a task)
    assert not shard.left({"metadata": {"namespace": NS, "name": "r", "deletionTimestamp": "2026-12-07T00:00:00Z"}})


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def sharder(leases):
    clock = Clock()
    members = Membership(10, clock)
    members.observe([{"metadata": {"name": n}, "spec": {"holderIdentity": n}} for n in leases])
    s = Sharder(None, None, [], members, 2)  # type: ignore[arg-type]  # plan() needs neither
    clock.now += 2  # its first retry period, in which it places no new account, is over
    return s, clock


def test_a_sharder_just_started_serves_placed_accounts_and_places_new_ones_a_retry_period_later():
    clock = Clock()
    members = Membership(10, clock)
    members.observe([{"metadata": {"name": n}, "spec": {"holderIdentity": n}} for n in ("a", "b")])
    s = Sharder(None, None, [], members, 2)  # type: ignore[arg-type]
    s.put("recordings", ("x", "old"), Seen("1", "x/key", "a", None, None))
    s.put("recordings", ("x", "new"), Seen("1", "x/key", None, None, None))
    s.put("recordings", ("y", "new"), Seen("1", "y/key", None, None, None))
    assert plan(s) == {("x", "new"): Relabel("a", None)}
    clock.now += 2
    assert plan(s) == {("y", "new"): Relabel("b", None)}


def plan(s):
    return {key: change for _, key, _, change in s.plan()}


def test_the_sharder_labels_the_new_asks_a_live_owner_to_let_go_and_relabels_a_dead_ones():
    s, clock = sharder(["a", "b"])
    s.put("recordings", ("t1", "new"), Seen("1", "t1/key", None, None, None))
    first = plan(s)
    target = first[("t1", "new")].shard
    other = ({"a", "b"} - {target}).pop()
    s.put("recordings", ("t1", "new"), Seen("2", "t1/key", other, None, None))  # labelled elsewhere by someone
    assert plan(s) == {("t1", "new"): Relabel(None, target)}  # the live owner hands over itself
    s.put("recordings", ("t1", "new"), Seen("3", "t1/key", other, target, None))
    assert plan(s) == {}  # asked once
    clock.now += 11  # the owner's Lease went unrenewed for the lease duration; the target's was renewed
    s.membership.observe(
        [
            {"metadata": {"name": other}, "spec": {"holderIdentity": other}},
            {"metadata": {"name": target}, "spec": {"holderIdentity": target, "renewTime": "t2"}},
        ]
    )
    assert plan(s) == {("t1", "new"): Relabel(target, None)}


def test_the_sharders_placement_holds_while_an_accounts_labels_are_split_by_a_move():
    s, _ = sharder(["a", "b"])
    for i in range(4):
        s.put("recordings", ("x", f"r{i}"), Seen("1", "x/key", "a", None, None))
        s.put("recordings", ("y", f"r{i}"), Seen("1", "y/key", "a", None, None))
    asked = plan(s)
    moving = {key[0] for key, change in asked.items() if change.drain == "b"}
    assert len(moving) == 1 and len(asked) == 4  # one account moves, all its objects are asked
    (account,) = moving
    for i in range(3):  # three of four handed over: the labels now say "b" more than "a"
        s.put("recordings", (account, f"r{i}"), Seen("2", f"{account}/key", "b", None, None))
    s.put("recordings", (account, "r3"), Seen("2", f"{account}/key", "a", "b", None))
    assert plan(s) == {}


def test_a_new_sharder_leaves_a_shard_it_has_not_seen_yet_its_accounts_until_it_is_known_dead():
    s, clock = sharder(["a"])  # b's Lease not listed yet: every shard was restarted, b comes up later
    for i in range(3):
        s.put("recordings", ("x", f"r{i}"), Seen("1", "x/key", "b", None, None))
        s.put("recordings", ("y", f"r{i}"), Seen("1", "y/key", "a", None, None))
    s.put("recordings", ("z", "new"), Seen("1", "z/key", None, None, None))
    assert {key: change for key, change in plan(s).items()} == {("z", "new"): Relabel(s.placed["z/key"], None)}
    assert s.placed["x/key"] == "b"
    clock.now += 11  # b never came
    s.membership.observe([{"metadata": {"name": "a"}, "spec": {"holderIdentity": "a", "renewTime": "t2"}}])
    assert {change for key, change in plan(s).items() if key[0] == "x"} == {Relabel("a", None)}
