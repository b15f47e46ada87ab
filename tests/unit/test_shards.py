"""Sharding's pure parts: the account of an object, the placement of accounts on shards, what the
sharder writes on one object, and how it judges a shard's Lease (decide/shards.py, membership.py)."""

from collections import Counter

import pytest

from rtc_recording.controller.membership import Membership
from rtc_recording.decide.classes import RecordingClass
from rtc_recording.decide.shards import OPERATOR_ACCOUNT, Relabel, account_of, assign, relabel


def recording(spec=None, status=None, namespace="team"):
    return {"metadata": {"namespace": namespace, "name": "r"}, "spec": spec or {}, "status": status or {}}


def cls(name, credentials=None, default=False, selector=None):
    return RecordingClass(name, 1, {}, credentials, selector or {}, default, "2026-01-01T00:00:00Z")


CLASSES = {
    "gold": cls("gold", ("platform", "gold-key")),
    "plain": cls("plain"),
    "house": cls("house", ("platform", "house-key"), default=True, selector={"matchLabels": {"tier": "house"}}),
}


@pytest.mark.parametrize(
    ("obj", "labels", "account"),
    [
        (recording({"credentialsSecretRef": {"name": "mine"}, "recordingClassName": "gold"}), None, "team/mine"),
        (recording({"recordingClassName": "gold"}), None, "platform/gold-key"),
        (recording({"recordingClassName": "plain"}), None, OPERATOR_ACCOUNT),
        (recording({"recordingClassName": "missing"}), None, OPERATOR_ACCOUNT),
        (recording(), {"tier": "house"}, "platform/house-key"),
        (recording(), {"tier": "other"}, OPERATOR_ACCOUNT),
        # Started: the pinned class decides, whatever the class says now.
        (
            recording(
                {"recordingClassName": "gold"},
                {"recordingClass": {"name": "gold", "credentialsSecretRef": {"namespace": "old", "name": "k"}}},
            ),
            None,
            "old/k",
        ),
        (recording({"recordingClassName": "gold"}, {"recordingClass": {"name": "gold"}}), None, OPERATOR_ACCOUNT),
    ],
)
def test_the_account_is_the_credentials_a_recording_bills(obj, labels, account):
    assert account_of(obj, CLASSES, labels) == account


def loads(placed, shards):
    counts = Counter(placed.values())
    return [counts[s] for s in shards]


@pytest.mark.parametrize("n_accounts", [0, 1, 2, 3, 4, 7, 10, 31])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 5])
def test_every_account_is_placed_and_loads_differ_by_one_at_most(n_accounts, n_shards):
    accounts = [f"ns/a{i}" for i in range(n_accounts)]
    shards = [f"s{i}" for i in range(n_shards)]
    placed = assign(accounts, shards, {})
    assert set(placed) == set(accounts)
    assert set(placed.values()) <= set(shards)
    counts = loads(placed, shards)
    assert max(counts) - min(counts) <= 1


def test_three_accounts_on_three_shards_each_get_their_own():
    placed = assign(["a/x", "b/y", "c/z"], ["shard-0", "shard-1", "shard-2"], {})
    assert sorted(placed.values()) == ["shard-0", "shard-1", "shard-2"]


def test_placement_is_sticky_and_a_placement_repeated_moves_nothing():
    accounts = [f"ns/a{i}" for i in range(40)]
    shards = ["s0", "s1", "s2"]
    first = assign(accounts, shards, {})
    assert assign(accounts, shards, first) == first
    # Whatever the accounts sat on before, a balanced current placement is kept as it is.
    rotated = {a: shards[(shards.index(s) + 1) % 3] for a, s in first.items()}
    assert assign(accounts, shards, rotated) == rotated


def test_a_shard_added_takes_about_one_nth_and_only_moves_onto_it():
    accounts = [f"ns/a{i}" for i in range(300)]
    before = assign(accounts, ["s0", "s1", "s2"], {})
    after = assign(accounts, ["s0", "s1", "s2", "s3"], before)
    moved = {a for a in accounts if after[a] != before[a]}
    assert len(moved) == 75  # 300 / 4: exactly its share, nothing more
    assert {after[a] for a in moved} == {"s3"}
    # Mostly the accounts that rank the new shard first (rendezvous hashing would move exactly those).
    fresh = assign(accounts, ["s0", "s1", "s2", "s3"], {})
    assert len({a for a in moved if fresh[a] == "s3"}) > 0.6 * len(moved)


def test_a_shard_lost_hands_only_its_own_accounts_to_the_others():
    accounts = [f"ns/a{i}" for i in range(30)]
    before = assign(accounts, ["s0", "s1", "s2"], {})
    after = assign(accounts, ["s0", "s2"], before)
    assert {a for a in accounts if after[a] != before[a]} == {a for a in accounts if before[a] == "s1"}
    assert max(loads(after, ["s0", "s2"])) - min(loads(after, ["s0", "s2"])) <= 1


def test_no_shard_no_placement():
    assert assign(["ns/a"], [], {"ns/a": "s0"}) == {}


@pytest.mark.parametrize(
    ("shard", "drain", "target", "acting", "write"),
    [
        (None, None, "s1", False, Relabel("s1", None)),  # new: labelled
        ("s1", None, "s1", True, None),  # at home
        ("s1", "s2", "s1", True, Relabel(None, None)),  # a move called off: the drain label goes
        ("s1", None, "s2", True, Relabel(None, "s2")),  # its live owner is asked to let go
        ("s1", "s2", "s2", True, None),  # ... once: then it hands over itself
        ("s1", "s3", "s2", True, Relabel(None, "s2")),  # the target changed meanwhile
        ("s1", None, "s2", False, Relabel("s2", None)),  # a dead owner's: relabelled at once
        ("s1", "s2", "s2", False, Relabel("s2", None)),  # ... even half-way through a handover
        ("s1", None, None, True, None),  # no live shard at all: left as it is
    ],
)
def test_what_the_sharder_writes_on_one_object(shard, drain, target, acting, write):
    assert relabel(shard, drain, target, acting) == write


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def lease(name, holder=None, renewed="t0", duration=10):
    holder = name if holder is None else holder
    return {
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder or None, "renewTime": renewed, "leaseDurationSeconds": duration},
    }


def test_a_shard_is_dead_once_its_lease_went_unrenewed_for_the_duration_on_the_sharders_clock():
    clock = Clock()
    members = Membership(10, clock)
    members.observe([lease("a"), lease("b")])
    clock.now += 9
    members.observe([lease("a", renewed="t1"), lease("b")])
    assert members.live() == {"a", "b"}
    clock.now += 1.5  # b: 10.5 s unchanged, a: 1.5 s
    members.observe([lease("a", renewed="t1"), lease("b")])
    assert members.live() == {"a"}
    assert members.acting("a") and not members.acting("b")
    assert {name for name in ("a", "b") if not members.acting(name)} == {"b"}


def test_a_longer_duration_announced_in_the_lease_is_honoured():
    clock = Clock()
    members = Membership(10, clock)
    members.observe([lease("a", duration=30)])
    clock.now += 20
    assert members.acting("a")


def test_a_released_lease_is_dead_at_once_and_a_lease_that_went_is_dead_after_the_duration():
    clock = Clock()
    members = Membership(10, clock)
    members.observe([lease("a", holder=""), lease("b")])
    assert not members.acting("a")
    members.observe([lease("a", holder="")])  # b's Lease was deleted: b exits at its next renewal
    clock.now += 5
    assert members.acting("b")
    clock.now += 6
    assert not members.acting("b")


def test_a_shard_only_named_by_a_label_is_given_the_duration_from_when_the_sharder_first_heard_of_it():
    clock = Clock()
    members = Membership(10, clock)
    members.observe([])
    assert members.acting("ghost")  # the sharder may have just started: its Lease may be on its way
    clock.now += 11
    assert not members.acting("ghost")
