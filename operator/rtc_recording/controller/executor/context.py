"""What every part of the executor shares: its collaborators, the clock, and how long to wait before trying again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rtc_recording.api import timestamps
from rtc_recording.api.task import Throttled, Transient
from rtc_recording.cloud.accounts import Account, CloudClients
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.controller.classresolver import ClassResolver
from rtc_recording.controller.deletions import Deletions
from rtc_recording.controller.index import Index
from rtc_recording.controller.pins import Pins
from rtc_recording.controller.waiting import WaitingRoom
from rtc_recording.decide.actions import CloudHealth
from rtc_recording.decide.backoff import backoff
from rtc_recording.kube.client import Kube
from rtc_recording.kube.events import EventRecorder
from rtc_recording.settings import Settings

PERSIST_TRIES = 6  # with the backoff settings' defaults: about a minute
CONFIRM_TRIES = 12  # then as long again to learn whether the last of them was taken after all
RECHECK_SECONDS = 2.0  # while waiting on the cloud or on evidence


class RetryLater(Exception):
    """Try this resource again after `delay` seconds; the handlers turn it into Kopf's TemporaryError."""

    def __init__(self, delay: float, message: str):
        super().__init__(message)
        self.delay = delay


class PinNotProven(CredentialsUnavailable):
    """status.recordingClass names an account the operator did not pin for this resource: nothing is sent."""


@dataclass
class Context:
    kube: Kube
    clients: CloudClients
    settings: Settings
    index: Index
    clock: Callable[[], datetime]
    events: EventRecorder = field(init=False)
    classes: ClassResolver = field(init=False)
    waiting: WaitingRoom = field(init=False)
    pins: Pins = field(init=False)
    deletions: Deletions = field(init=False)
    # Set by the evidence worker: is there unprocessed evidence of a live task for (uid, attempt)?
    evidence_waiting: Callable[[str, int], bool] = lambda uid, attempt: False
    started: str = field(init=False)  # a deletion from before, a previous operator began

    def __post_init__(self) -> None:
        self.started = timestamps.stamp(self.clock())
        self.events = EventRecorder(self.kube)
        self.classes = ClassResolver(self.kube)
        self.pins = Pins(self.kube, self.clients.secrets)
        self.deletions = Deletions(self.kube, self.settings.evidence_namespace)
        self.waiting = WaitingRoom(
            self.settings.backoff_base_seconds, self.settings.participant_retry_seconds, self.clock
        )

    async def account_for(self, obj: dict) -> Account:
        """The account of `obj`'s cloud calls: refused unless a class pin that names it is sealed for
        this resource (decide/ownership.py account_proven), before any cloud call."""
        if not self.index.sealer.account_proven(obj):
            meta = obj["metadata"]
            raise PinNotProven(
                f"status.recordingClass of {meta['namespace']}/{meta['name']} was not written by the operator "
                "(its seal does not match this resource): its credentials are not used"
            )
        return await self.clients.account_for(obj)

    @property
    def grace(self) -> float:
        """How long a lost Start answer may take to be named by a callback. Without a receiver
        no callback can name it: waiting would only delay the retry."""
        return self.settings.unknown_outcome_grace_seconds if self.settings.callback_url else 0

    def cloud_health(self) -> CloudHealth:
        reach = self.clients.reachability
        return CloudHealth(up=reach.up, back_since=reach.since, recheck=RECHECK_SECONDS)

    def backoff(self, retry: int) -> float:
        return backoff(retry, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)

    def delay(self, exc: Exception, retry: int) -> float:
        """A server-side failure is retried soon: a sustained outage is the circuit's business,
        so the delay does not grow through it. Quota and credentials problems back off."""
        if isinstance(exc, Transient) and not isinstance(exc, Throttled):
            return self.backoff(0)
        return self.backoff(retry)
