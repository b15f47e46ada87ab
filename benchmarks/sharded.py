"""Scenario (s), issue 29: the operator as three shards (RTCREC_SHARDING=true) over three accounts.

Every stack is a `harness.ShardedStack`: replicas shard-0, shard-1 and shard-2, and accounts
acct-0, acct-1 and acct-2, each with its namespace, its credentials Secret there and its own
AccessKey (50 calls/s each: 150 in all). Each run:

1. restart: `n` recordings at rest (n/3 an account, seeded as (c) seeds them, unlabelled: the
   sharder labels them at the first start, timed once), then all three shards SIGKILLed and
   started; per shard: until its share was handled, its RSS; new recordings created meanwhile.
   One stack for all runs, as (c).
2. throughput: `per_account` recordings of each account created with the shards down, then the
   shards started: aggregate Starts per second against the quotas' 150, CPU per Start per shard.
3. rebalance, on the same stack: a shard that is not the sharder SIGKILLed and left down, then
   started again; the same with the sharder.
4. chaos, on the same stack: creates and deletes of the three accounts' recordings while shards
   are killed, a fourth added and removed; the audit at settle, then delete-all.

A shard's share is what the driver's watch sees labelled for it (`rtc.recording.io/shard`); the
sharder is the holder of the release's Lease (RTCREC_LEASE_NAME).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rtc_recording.api.names import DRAIN_LABEL
from rtc_recording.cluster.processes import wait_for

from .harness import (
    Account,
    ShardedStack,
    manifest,
    median,
    others_cores,
    total,
)
from .scenarios import QUOTA, WRITES, _seed, api_detail, api_sum, audit, clean, log, seed_template

COMPLETED_EVERY = 20  # as (c): every 20th seeded recording Completed, the others Recording


def run(workdir: Path, runs: int, n: int = 10000, per_account: int = 300, chaos_seconds: float = 60) -> list[dict]:
    results = restart(workdir / "restart", runs, n)
    for r in range(runs):
        results[r].update(one_stack(workdir / str(r), r, per_account, chaos_seconds))
    return results


# -- what every part reads ---------------------------------------------------------------------
def shares(stack: ShardedStack) -> Counter:
    """Recordings of the accounts by the shard they are labelled for ("" unlabelled)."""
    out: Counter = Counter()
    for account in stack.accounts:
        out += stack.owners(account.name)
    return out


def owner(stack: ShardedStack, account: Account) -> str | None:
    """The shard every recording of the account is labelled for; None while they are not all on one."""
    owners = stack.owners(account.name)
    return next(iter(owners)) if len(owners) == 1 and "" not in owners else None


def draining(stack: ShardedStack) -> int:
    return sum(
        1
        for (ns, _), labels in stack.tracker.labels.copy().items()
        if DRAIN_LABEL in labels and ns in {a.name for a in stack.accounts}
    )


def placed(stack: ShardedStack) -> bool:
    """Every account's recordings labelled for one running shard, none draining."""
    running = stack.running()
    return all(owner(stack, a) in running for a in stack.accounts) and not draining(stack)


def balanced(stack: ShardedStack) -> bool:
    """No move to come: a sharder that counts every running shard as a member (rtcrec_shard_members),
    every account placed, and the accounts spread over the running shards within 1 of each other, as
    the sharder spreads them (decide/shards.py; these are all the accounts there are)."""
    sharder = stack.sharder()
    if not sharder or total(stack.shard_metrics(sharder), "rtcrec_shard_members") != len(stack.running()):
        return False
    per_shard = Counter({name: 0 for name in stack.running()}) + Counter(owner(stack, a) for a in stack.accounts)
    return placed(stack) and max(per_shard.values()) - min(per_shard.values()) <= 1


def starts(stack: ShardedStack) -> dict[str, int]:
    return {a.name: stack.calls(a)["StartRtcCloudRecording"] for a in stack.accounts}


def join_and_make(stack: ShardedStack, account: Account, names: list[str]) -> list[dict]:
    """Billed recordings of `account` (its namespace), each its own channel, someone in each."""
    made = [manifest(name, f"{account.name}-{name}", billed=True) for name in names]
    stack.join([m["spec"]["channelId"] for m in made])
    return made


# -- 1. restart with n at rest -----------------------------------------------------------------
def restart(workdir: Path, runs: int, n: int) -> list[dict[str, Any]]:
    stack = ShardedStack(workdir)
    results: list[dict[str, Any]] = [{} for _ in range(runs)]
    try:
        stack.tracker.start()
        per = n // len(stack.accounts)
        log(f"s: seeding {per} recordings in each of {len(stack.accounts)} accounts")
        for k, account in enumerate(stack.accounts):
            template = seed_template(stack, account.name, account)
            _seed(stack, template, 1 + k * per, per - 1, COMPLETED_EVERY, key=account.seeder)
        present = per * len(stack.accounts)
        wait_for(lambda: sum(shares(stack).values()) >= present, 120, what=f"{present} listed")

        log("s: first start, the sharder labels them all")
        api_before = stack.apiserver_requests()
        started = stack.start_shards()
        stack.receiver.start()
        wait_for(lambda: not shares(stack)[""], 600, interval=0.5, what="every recording labelled")
        results[0]["assign_seconds"] = time.monotonic() - started
        # A shard whose Lease the sharder had not seen yet when it placed the accounts gets one now (a drain).
        wait_for(lambda: balanced(stack), 600, interval=0.5, what="the accounts spread over the shards")
        results[0]["assign_balanced_seconds"] = time.monotonic() - started
        api = stack.apiserver_requests()
        api.subtract(api_before)
        results[0]["assign_writes"] = api_sum(api, WRITES, ("rtcrecordings",))
        results[0]["assign_api_detail"] = api_detail(api)
        share, first = shares(stack), {}
        results[0]["assign_shares"] = dict(share)
        log(
            f"s: {present} labelled in {results[0]['assign_seconds']:.1f} s, spread in "
            f"{results[0]['assign_balanced_seconds']:.1f} s: {dict(share)}"
        )
        wait_for(lambda: _note_handled(stack, share, started, first), 600, what="every shard's share handled")
        results[0]["assign_handled_seconds"] = max(first.values())

        for run in range(runs):
            log(f"s: all shards SIGKILLed and started with {present} present, run {run + 1}")
            new = [
                (offset, account, made)
                for k, offset in enumerate((1.0, 3.0, 5.0))
                for account in stack.accounts
                for made in join_and_make(stack, account, [f"new-{run}-{k}"])
            ]
            result = _restart_once(stack, new)
            results[run].update({f"restart_{k}": v for k, v in result.items()})
            present += len(new)
            log(
                f"s: shares resumed in {result['resumed_seconds']:.1f} s (slowest shard), new ones "
                f"Recording within {result['new_recording_max']:.1f} s"
            )
    finally:
        stack.close()
    return results


def _note_handled(stack: ShardedStack, share: Counter, started: float, done: dict[str, float]) -> bool:
    """Note the shards that have handled their share by now (resumes at rest decide "nothing", as in
    (c)); True once all have."""
    for name in stack.shards:
        if name in done or not share[name]:
            continue
        handled = total(stack.shard_metrics(name), "rtcrec_reconciles_total", action="nothing")
        if handled >= share[name]:
            done[name] = time.monotonic() - started
    return all(name in done for name in share if name)


def _restart_once(stack: ShardedStack, new: list[tuple[float, Account, dict]]) -> dict[str, Any]:
    wait_for(lambda: balanced(stack), 120, what="the accounts spread over the shards")  # nothing will move
    share = shares(stack)
    exits_before = sum(len(k.exits) for k in stack.shards.values())
    for kubelet in stack.shards.values():
        kubelet.kill()
    usage_before = stack.usage()
    started = stack.start_shards()
    created: dict[tuple[str, str], float] = {}
    pending = sorted(new, key=lambda item: item[0])
    resumed: dict[str, float] = {}

    def new_ones() -> bool:
        while pending and pending[0][0] <= time.monotonic() - started:
            _, account, made = pending.pop(0)
            at = stack.create(account.name, [made])[made["metadata"]["name"]][0]
            created[(account.name, made["metadata"]["name"])] = at
        return not pending and all(key in stack.tracker.recording_at for key in created)

    wait_for(
        lambda: all([new_ones(), _note_handled(stack, share, started, resumed)]),  # both polled every time
        600,
        interval=0.25,  # as (c): each poll scrapes every shard's /metrics
        what="every share handled and the new recordings Recording",
        details=lambda: f"handled: {resumed} of {dict(share)}; new: {len(created)} created",
    )
    at_settle = stack.usage()
    others = others_cores(usage_before, at_settle, time.monotonic() - started)
    time.sleep(20)  # settled: Kopf's idle workers gone
    settled = stack.usage()
    sharder = stack.sharder()
    out: dict[str, Any] = {
        "resumed_seconds": max(resumed.values()),
        "new_recording_max": max(stack.tracker.recording_at[key] - at for key, at in created.items()),
        "others_cores": others,
        "sharder": sharder,
        "exits": sum(len(k.exits) for k in stack.shards.values()) - exits_before,
    }
    gone = {"hwm": None, "rss": None, "cpu": None}  # a shard that is not running (it exited)
    for name in stack.shards:
        out[f"share_{name}"] = share[name]
        out[f"resumed_seconds_{name}"] = resumed.get(name)
        out[f"peak_mb_{name}"] = settled.get(name, gone)["hwm"]
        out[f"settled_mb_{name}"] = settled.get(name, gone)["rss"]
        out[f"cpu_s_{name}"] = at_settle.get(name, gone)["cpu"]
    others_mb = [settled[name]["rss"] for name in stack.shards if name != sharder and name in settled]
    out["sharder_extra_mb"] = settled[sharder]["rss"] - median(others_mb) if sharder and others_mb else None
    return out


# -- 2-4. one stack: throughput, rebalance, chaos ------------------------------------------------
def one_stack(workdir: Path, run: int, per_account: int, chaos_seconds: float) -> dict[str, Any]:
    stack = ShardedStack(workdir, seed=run)
    try:
        stack.tracker.start()
        out = throughput(stack, per_account)
        for variant in ("shard", "sharder"):
            out.update({f"{variant}_{k}": v for k, v in rebalance(stack, variant == "sharder").items()})
        out.update(chaos(stack, random.Random(run), chaos_seconds))
        out["exits"] = sum(len(k.exits) for k in stack.shards.values())  # by themselves: our kills not counted
        return out
    finally:
        stack.close()


def throughput(stack: ShardedStack, per_account: int) -> dict[str, Any]:
    accounts = stack.accounts
    n = per_account * len(accounts)
    log(f"s: {per_account} recordings of each of {len(accounts)} accounts created with the shards down")
    keys: list[tuple[str, str]] = []
    for account in accounts:
        made = join_and_make(stack, account, [f"pre-{i}" for i in range(per_account)])
        stack.create(account.name, made)
        keys += [(account.name, m["metadata"]["name"]) for m in made]
    usage_before, starts_before, api_before = stack.usage(), starts(stack), stack.apiserver_requests()
    started = stack.start_shards()
    stack.receiver.start()
    labelled: list[float] = []

    def all_recording() -> bool:
        if not labelled and not shares(stack)[""]:
            labelled.append(time.monotonic() - started)
        return all(key in stack.tracker.recording_at for key in keys)

    wait_for(all_recording, 600, interval=0.1, what=f"{n} Recording")
    seconds = max(stack.tracker.recording_at[k] for k in keys) - started
    usage = stack.usage()
    api = stack.apiserver_requests()
    api.subtract(api_before)
    made = {name: count - starts_before[name] for name, count in starts(stack).items()}
    first, last = min(stack.tracker.task_at[k] for k in keys), max(stack.tracker.task_at[k] for k in keys)
    ours = sum(
        usage[name]["cpu"] - usage_before.get(name, {"cpu": 0.0})["cpu"]
        for name in usage
        if name not in ("machine", "niced")
    )
    out: dict[str, Any] = {
        "throughput_seconds": seconds,
        "throughput_labelled_seconds": labelled[0] if labelled else None,
        "throughput_first_task_seconds": first - started,
        "throughput_starts_per_s": n / seconds,
        "throughput_window_starts_per_s": (n - 1) / (last - first) if last > first else None,
        "throughput_quota_per_s": QUOTA * len(accounts),
        "throughput_throttled": stack.throttled(),
        "throughput_starts": sum(made.values()),
        "throughput_writes_per_start": api_sum(api, WRITES) / n,  # the sharder's label writes included
        "throughput_api_detail": api_detail(api),
        "throughput_cores_ours": ours / seconds,
        "throughput_others_cores": others_cores(usage_before, usage, seconds),
        "throughput_apiserver_cpu_s": usage["kube-apiserver"]["cpu"] - usage_before["kube-apiserver"]["cpu"],
        "throughput_etcd_cpu_s": usage["etcd"]["cpu"] - usage_before["etcd"]["cpu"],
        "throughput_emulator_cpu_s": usage["emulator"]["cpu"] - usage_before["emulator"]["cpu"],
        "throughput_receiver_cpu_s": usage["receiver"]["cpu"],
    }
    out["throughput_ratio"] = out["throughput_starts_per_s"] / out["throughput_quota_per_s"]
    sharder = stack.sharder()
    for account in accounts:
        shard = owner(stack, account)
        last_one = max(stack.tracker.recording_at[k] for k in keys if k[0] == account.name)
        out[f"throughput_seconds_{account.name}"] = last_one - started
        out[f"throughput_shard_{account.name}"] = shard
    for name in stack.shards:
        owned = sum(made[a.name] for a in accounts if owner(stack, a) == name)
        cpu = usage[name]["cpu"] if name in usage else None  # started with the run: all of it, start-up too, as (a)
        out[f"throughput_cpu_s_{name}"] = cpu
        out[f"throughput_cpu_ms_per_start_{name}"] = cpu * 1000 / owned if owned and cpu is not None else None
        out[f"throughput_sharder_{name}"] = name == sharder
    log(
        f"s: {n} Recording {seconds:.1f} s after the start ({out['throughput_starts_per_s']:.0f} Starts/s overall, "
        f"{out['throughput_window_starts_per_s'] or 0:.0f}/s from the first to the last; quotas "
        f"{out['throughput_quota_per_s']}/s); our processes {out['throughput_cores_ours']:.2f} cores"
    )
    return out


def rebalance(stack: ShardedStack, kill_sharder: bool) -> dict[str, Any]:
    """SIGKILL one shard (the sharder, or one that is not), left down: until its account's
    recordings are labelled for a live shard, and one of them created right after the kill is
    Recording; then the shard started again: until the accounts are spread over the three again."""
    wait_for(lambda: balanced(stack), 60, what="the accounts spread over the shards")  # one each
    sharder = stack.sharder()
    victim = sharder if kill_sharder else next(n for n in stack.running() if n != sharder)
    assert victim is not None
    account = next(a for a in stack.accounts if owner(stack, a) == victim)
    tag = "sharder" if kill_sharder else "shard"
    log(f"s: {victim} ({'the sharder' if kill_sharder else 'not the sharder'}, owner of {account.name}) SIGKILLed")
    [made] = join_and_make(stack, account, [f"after-{tag}-kill"])
    key = (account.name, made["metadata"]["name"])
    share = stack.owners(account.name)[victim]
    starts_before = starts(stack)
    stack.shards[victim].kill()
    killed = time.monotonic()
    expiry = stack.lease_expiry(victim)  # read after the kill: nobody renews it any more
    stack.create(account.name, [made])
    moved: list[float] = []

    def acted() -> bool:
        if not moved and owner(stack, account) not in (None, victim):
            moved.append(time.monotonic())
        return bool(moved) and key in stack.tracker.recording_at

    wait_for(acted, 120, interval=0.1, what=f"{account.name} on a live shard and acting")
    recording = stack.tracker.recording_at[key]
    out: dict[str, Any] = {
        "expiry_after_kill": expiry - killed,
        "moved_recordings": share,
        "moved_seconds": moved[0] - killed,
        "moved_after_expiry": moved[0] - expiry,
        "new_recording_seconds": recording - killed,
        "new_recording_after_expiry": recording - expiry,
        # The new one's Start only: the moved ones are resumed from their status.
        "extra_starts": starts(stack)[account.name] - starts_before[account.name] - 1,
        "moved_to": owner(stack, account),
    }
    started = stack.start_shards([victim])
    wait_for(lambda: balanced(stack), 120, interval=0.1, what=f"{victim} back with an account")
    out["back_seconds"] = time.monotonic() - started
    log(
        f"s: {account.name} on {out['moved_to']} {out['moved_seconds']:.1f} s after the kill; its new "
        f"recording Recording {out['new_recording_seconds']:.1f} s after the kill "
        f"({out['new_recording_after_expiry']:.1f} s after the Lease expired); {victim} back with an account "
        f"{out['back_seconds']:.1f} s after its start"
    )
    return out


# Chaos events, as fractions of the chaos window: (when, what).
CHAOS_EVENTS = (
    (0.05, "restart"),  # a shard SIGKILLed and started at once (a container restart): nothing moves
    (0.10, "kill"),  # another one SIGKILLed and left down: its account reassigned once its Lease expired (10 s)
    (0.45, "add"),  # shard-3 added (a StatefulSet scaled up), after that reassignment: an account drained to it
    (0.60, "back"),  # the killed one started again: 4 shards for 3 accounts, nothing moves
    (0.72, "remove"),  # shard-3 stopped (SIGTERM, scaled down): its Lease is kept, so reassigned after it
    (0.88, "restart-sharder"),  # the sharder SIGKILLed and started at once
)
CREATES_PER_SECOND = 4.0  # the load: creates of the three accounts' recordings; every third a delete too


def _target(stack: ShardedStack, rng: random.Random, what: str, down: str | None) -> str | None:
    """The shard a chaos event acts on."""
    if what in ("restart", "kill"):
        return rng.choice(stack.running())
    if what in ("add", "remove"):
        return "shard-3"
    if what == "back":
        return down
    return stack.sharder()


def chaos(stack: ShardedStack, rng: random.Random, seconds: float) -> dict[str, Any]:
    log(f"s: chaos for {seconds:.0f} s: {', '.join(what for _, what in CHAOS_EVENTS)} under creates and deletes")
    throttled_before, moves_before = stack.throttled(), stack.tracker.moves.copy()
    created: list[tuple[str, str]] = []
    deleted: set[tuple[str, str]] = set()
    stop = threading.Event()
    failures: list[BaseException] = []
    load_rng = random.Random(rng.random())  # the load's own: the events' choices stay the run's

    def load() -> None:
        try:
            while not stop.wait(1 / CREATES_PER_SECOND):
                account = load_rng.choice(stack.accounts)
                [made] = join_and_make(stack, account, [f"chaos-{len(created)}"])
                stack.create(account.name, [made])
                created.append((account.name, made["metadata"]["name"]))
                if len(created) % 3 == 0:
                    victim = load_rng.choice([k for k in created if k not in deleted])
                    stack.delete(*victim)
                    deleted.add(victim)
        except BaseException as exc:  # said after the run, not lost in a thread
            failures.append(exc)

    out: dict[str, Any] = {}
    worker = threading.Thread(target=load, name="chaos-load", daemon=True)
    began = time.monotonic()
    worker.start()
    down: str | None = None
    try:
        for at, what in CHAOS_EVENTS:
            time.sleep(max(0.0, began + at * seconds - time.monotonic()))
            name = _target(stack, rng, what, down)
            if name is None:  # no sharder at this moment (one is taking over)
                log(f"s: chaos {what}: none at {time.monotonic() - began:.0f} s")
                continue
            if what in ("restart", "kill", "restart-sharder"):
                stack.shards[name].kill()
            if what == "kill":
                down = name
            if what == "add":
                stack.add_shard(name)
            if what in ("restart", "add", "back", "restart-sharder"):
                stack.shards[name].start()
            if what == "remove":
                stopping = time.monotonic()
                stack.shards[name].stop()
                out["chaos_stop_seconds"] = time.monotonic() - stopping
            log(f"s: chaos {what} {name} at {time.monotonic() - began:.0f} s")
        time.sleep(max(0.0, began + seconds - time.monotonic()))
    finally:
        stop.set()
        worker.join(30)
    if failures:
        raise failures[0]
    ended = time.monotonic()
    kept = [k for k in created if k not in deleted]
    last: dict[str, Any] = {}

    def settled() -> bool:
        a = audit(stack)
        live = set(stack.running())
        labels = shares(stack)
        last.update(
            audit=a,
            off=sum(v for shard, v in labels.items() if shard not in live),
            draining=draining(stack),
            lingering=sum(1 for k in deleted if k in stack.tracker.phase),
            missing=sum(1 for k in kept if k not in stack.tracker.phase),
        )
        return clean(a) and not last["off"] and not last["draining"] and not last["lingering"] and not last["missing"]

    try:
        wait_for(settled, 240, interval=2, what="the chaos settled")
        settle_seconds: float | None = time.monotonic() - ended
    except AssertionError:
        settle_seconds = None
    a = last["audit"]
    out |= {
        "chaos_created": len(created),
        "chaos_deleted": len(deleted),
        "chaos_settle_seconds": settle_seconds,
        "chaos_duplicates": a["duplicates"],
        "chaos_leaks": a["leaks"],
        "chaos_lost": a["stuck"] + last["missing"],
        "chaos_wrong": a["wrong"],
        "chaos_over_quota": stack.throttled() - throttled_before,
        "chaos_off_live_shards": last["off"],
        "chaos_draining": last["draining"],
        "chaos_deleted_left": last["lingering"],
        "chaos_shards_running": len(stack.running()),
        "chaos_drained": stack.tracker.moves["drain"] - moves_before["drain"],
        "chaos_reassigned": stack.tracker.moves["reassign"] - moves_before["reassign"],
    }
    log(
        f"s: chaos settled in {settle_seconds} s: duplicates {out['chaos_duplicates']}, leaks {out['chaos_leaks']}, "
        f"lost {out['chaos_lost']}, over quota {out['chaos_over_quota']}; {out['chaos_off_live_shards']} labelled "
        "for a shard that is not running"
    )

    log("s: delete-all")
    began = time.monotonic()
    for account in stack.accounts:
        stack.delete_all(account.name)
    try:
        wait_for(
            lambda: not sum(shares(stack).values()) and not audit(stack)["live_tasks"],
            300,
            interval=1,
            what="every recording gone and no live task",
        )
        out["delete_seconds"] = time.monotonic() - began
    except AssertionError:
        out["delete_seconds"] = None
    a = audit(stack)
    out.update({"delete_resources_left": a["resources"], "delete_live_tasks": a["live_tasks"]})
    return out
