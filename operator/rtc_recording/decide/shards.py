"""Which shard acts on which account, and what the sharder writes to get there (docs/sharding.md).

The unit is the account, the credentials a recording bills: its own Secret, else its class's, else the
operator's own. All of an account's objects live on one shard, so its quota budget (cloud/budget.py)
lives in exactly one process and no shard coordinates quota with another.

Accounts are placed by rendezvous hashing (each account ranks the shards by a hash of the pair),
bounded so that shard loads differ by at most one account, and sticky: an account stays where it is
unless its shard died, or its shard holds more than its share and the account ranks it lowest among
the ones kept there. So a shard added takes about 1/N of the accounts, mostly those that rank it first,
and a shard lost hands only its own accounts to the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rtc_recording.decide.classes import RecordingClass, credentials_of, default_class

OPERATOR_ACCOUNT = ""  # the operator's own credentials (RTCREC_ACCESS_KEY_ID or the pod's RAM role)


def score(shard: str, account: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{shard}\0{account}".encode(), digest_size=8).digest(), "big")


def preference(account: str, shards: Iterable[str]) -> list[str]:
    """The shards in the order `account` prefers them (highest score first; names break ties)."""
    return sorted(shards, key=lambda s: (-score(s, account), s))


def account_of(obj: dict, classes: Mapping[str, RecordingClass], labels: Mapping[str, str] | None) -> str:
    """The account of an RtcRecording, or of a schedule's template (`obj` is then the template, with the
    schedule's namespace): `<namespace>/<Secret>` or OPERATOR_ACCOUNT. A class pinned in status decides
    for a started recording; before that the class it names, or the namespace's default class
    (`labels`: the namespace's labels, None when there is no default class to choose)."""
    namespace, name = credentials_of(obj)
    if name:
        return f"{namespace}/{name}"
    if (obj.get("status") or {}).get("recordingClass") is not None:
        return OPERATOR_ACCOUNT  # started from a class without a Secret
    named = (obj.get("spec") or {}).get("recordingClassName")
    chosen = classes.get(named) if named else default_class(list(classes.values()), dict(labels or {}))
    if chosen is not None and chosen.credentials is not None:
        return "/".join(chosen.credentials)
    return OPERATOR_ACCOUNT


def assign(accounts: Iterable[str], shards: Iterable[str], current: Mapping[str, str]) -> dict[str, str]:
    """account -> shard over the live `shards`, from `current` (account -> shard, as now labelled)."""
    live = sorted(set(shards))
    wanted = sorted(set(accounts))
    if not live:
        return {}
    floor, extra = divmod(len(wanted), len(live))
    ranks = {a: {s: i for i, s in enumerate(preference(a, live))} for a in wanted}
    kept: dict[str, list[str]] = {s: [] for s in live}
    for account in wanted:
        if (shard := current.get(account)) is not None and shard in kept:
            kept[shard].append(account)
    for home, held in kept.items():  # the accounts most at home stay: those ranking this shard highest
        held.sort(key=lambda a: (ranks[a][home], -score(home, a), a))
        del held[floor + 1 :]
    # Only `extra` shards may hold one more than the floor: those whose extra account is most at home.
    full = sorted((s for s in live if len(kept[s]) > floor), key=lambda s: (ranks[kept[s][-1]][s], s))
    for shard in full[extra:]:
        kept[shard].pop()
    placed = {a: s for s, held in kept.items() for a in held}
    load = {s: len(kept[s]) for s in live}
    extra -= sum(1 for s in live if load[s] > floor)
    for account in (a for a in wanted if a not in placed):
        for shard in preference(account, live):
            if load[shard] < floor or (load[shard] == floor and extra > 0):
                extra -= load[shard] == floor
                load[shard] += 1
                placed[account] = shard
                break
    return placed


@dataclass(frozen=True)
class Relabel:
    """The labels to write on one object: `shard` (None: leave it) and `drain` (None: remove it)."""

    shard: str | None
    drain: str | None


def relabel(shard: str | None, drain: str | None, target: str | None, acting: bool) -> Relabel | None:
    """What the sharder writes on an object labelled `shard` (and `drain`) whose account belongs on
    `target`. `acting`: its owner may still act on it (its Lease is alive, or not yet seen dead).
    A live owner is asked to let go (the drain label) and hands over itself; only a dead one's
    objects are relabelled here."""
    if target is None:
        return None  # no live shard: nobody to give it to
    if shard is None or not acting:
        return Relabel(target, None) if (shard, drain) != (target, None) else None
    if shard == target:
        return Relabel(None, None) if drain is not None else None  # it moves no more: it stays
    return Relabel(None, target) if drain != target else None
