"""Counters of what reached the vendor API, for `GET /_emulator/stats`.

Every request to the API endpoint is one call, counted when it is answered (a call held
by a hang counts when the hang ends). Its code is "OK" for a success (a Start whose answer
was then dropped included; those are also counted apart) and the vendor's error code
otherwise. The AccessKeyId is the one the call was signed with once the signature checked
out, else "(unauthenticated)"; the action is the one asked for, "(none)" if none was.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

OK = "OK"
UNAUTHENTICATED = "(unauthenticated)"
NO_ACTION = "(none)"


class CallStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_action: Counter[str] = Counter()
        self.by_key: Counter[str] = Counter()
        self.by_key_action: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.by_action_code: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.by_user_agent: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()  # by AccessKeyId
        self.dropped_starts = 0
        self.too_large = 0

    def record(self, action: str | None, key: str | None, code: str, user_agent: str) -> None:
        action = action or NO_ACTION
        key = key or UNAUTHENTICATED
        self.by_action[action] += 1
        self.by_key[key] += 1
        self.by_key_action[key][action] += 1
        self.by_action_code[action][code] += 1
        self.by_user_agent[user_agent] += 1
        if code.startswith("Throttling"):
            self.throttled[key] += 1

    def view(self) -> dict[str, Any]:
        return {
            "calls": {
                "total": sum(self.by_action.values()),
                "byAction": dict(self.by_action),
                "byAccessKeyId": dict(self.by_key),
                "byAccessKeyIdAndAction": {k: dict(v) for k, v in self.by_key_action.items()},
                "byActionAndCode": {k: dict(v) for k, v in self.by_action_code.items()},
                "byUserAgent": dict(self.by_user_agent),
            },
            "throttled": {"total": sum(self.throttled.values()), "byAccessKeyId": dict(self.throttled)},
            "droppedStartAnswers": self.dropped_starts,
            "tooLarge": self.too_large,
        }
