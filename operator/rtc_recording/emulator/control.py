"""A small synchronous client of the control API, for tests and scripts."""

from __future__ import annotations

from typing import Any

import requests


class EmulatorError(RuntimeError):
    def __init__(self, status: int, body: Any):
        super().__init__(f"control API answered {status}: {body}")
        self.status = status
        self.body = body


def _tracks(audio: bool, camera: bool, screen: bool) -> list[str]:
    return [name for name, on in (("audio", audio), ("camera", camera), ("screen", screen)) if on]


class EmulatorControl:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # the emulator is local: never via a proxy

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> Any:
        response = self._session.request(
            method, f"{self.url}/_emulator{path}", json=body, params=params, timeout=self._timeout
        )
        if response.status_code >= 400:
            raise EmulatorError(response.status_code, response.json())
        return response.json()

    # channel activity
    def join(
        self,
        app_id: str,
        channel_id: str,
        user_id: str,
        publish: bool = True,
        *,
        audio: bool = True,
        camera: bool = True,
        screen: bool = False,
    ) -> None:
        tracks = _tracks(audio, camera, screen) if publish else []
        self._call(
            "POST", "/channels/join", {"appId": app_id, "channelId": channel_id, "userId": user_id, "tracks": tracks}
        )

    def leave(self, app_id: str, channel_id: str, user_id: str) -> None:
        self._call("POST", "/channels/leave", {"appId": app_id, "channelId": channel_id, "userId": user_id})

    def publish(
        self,
        app_id: str,
        channel_id: str,
        user_id: str,
        *,
        audio: bool = True,
        camera: bool = True,
        screen: bool = False,
    ) -> None:
        """Start publishing the chosen tracks (others are left as they are)."""
        self._call(
            "POST",
            "/channels/publish",
            {"appId": app_id, "channelId": channel_id, "userId": user_id, "tracks": _tracks(audio, camera, screen)},
        )

    def unpublish(
        self,
        app_id: str,
        channel_id: str,
        user_id: str,
        *,
        audio: bool = True,
        camera: bool = True,
        screen: bool = True,
    ) -> None:
        """Stop publishing the chosen tracks (by default all of them)."""
        self._call(
            "POST",
            "/channels/unpublish",
            {"appId": app_id, "channelId": channel_id, "userId": user_id, "tracks": _tracks(audio, camera, screen)},
        )

    def channels(self) -> list[dict[str, Any]]:
        return self._call("GET", "/channels")["channels"]

    # introspection
    def tasks(
        self,
        app_id: str | None = None,
        channel_id: str | None = None,
        status: str | None = None,
        *,
        account: str | None = None,
        access_key_id: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            k: v
            for k, v in (
                ("appId", app_id),
                ("channelId", channel_id),
                ("status", status),
                ("account", account),
                ("accessKeyId", access_key_id),
            )
            if v
        }
        return self._call("GET", "/tasks", params=params)["tasks"]

    def task(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tasks/{task_id}")

    def deliveries(self) -> list[dict[str, Any]]:
        """Every callback attempted (or suppressed), oldest first (the last 10 000)."""
        return self._call("GET", "/callbacks")["deliveries"]

    def callback_counts(self) -> dict[str, Any]:
        """queued, suppressed, delivered, failed, pending, attempts, byEventType (never truncated)."""
        return self._call("GET", "/callbacks")["counts"]

    def stats(self) -> dict[str, Any]:
        """calls (byAction, byAccessKeyId, byAccessKeyIdAndAction, byActionAndCode, byUserAgent), throttled,
        droppedStartAnswers, tooLarge, liveTasks {total, byAccount}, callbacks, hang."""
        return self._call("GET", "/stats")

    def reset_stats(self) -> dict[str, Any]:
        """Zero the counters (tasks, channels and knobs stay)."""
        return self._call("POST", "/stats/reset")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    # time and faults
    def advance(self, seconds: float) -> float:
        """Push emulated time forward; returns the new emulated now."""
        return self._call("POST", "/advance", {"seconds": seconds})["now"]

    def set_faults(self, *, revert_after_seconds: float | None = None, **knobs: Any) -> dict[str, Any]:
        """latency_seconds, error_rates, drop_start_rate, callbacks, quota_per_second, throttle_status.

        With `revert_after_seconds` the knobs given go back to their previous values after that many
        real seconds (unless changed again meanwhile): `set_faults(error_rates={"*": 1.0},
        revert_after_seconds=60)` is a 60 s outage."""
        if revert_after_seconds is not None:
            knobs["revert_after_seconds"] = revert_after_seconds
        return self._call("POST", "/faults", knobs)

    def hang(self, seconds: float) -> dict[str, Any]:
        """Hang the API for `seconds` real seconds from now (0 ends a hang now): calls get no answer until
        then, and are executed in arrival order when it ends. Returns the hang's state."""
        return self._call("POST", "/hang", {"seconds": seconds})

    def hang_state(self) -> dict[str, Any]:
        """{active, remainingSeconds, waiting (calls held now), held (calls held since the last stats reset)}."""
        return self._call("GET", "/hang")

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def recover(self, task_id: str, seconds: float) -> None:
        self._call("POST", f"/tasks/{task_id}/recover", {"seconds": seconds})

    def vanish(self, task_id: str) -> None:
        self._call("POST", f"/tasks/{task_id}/vanish")

    def callbacks(self, enabled: bool) -> None:
        self._call("POST", "/callbacks", {"enabled": enabled})

    def credentials(
        self,
        *,
        access_keys: dict[str, str] | None = None,
        sts_tokens: dict[str, tuple[str, str]] | None = None,
        sts_expires_at: dict[str, float] | None = None,
        revoke: list[str] | None = None,
        accounts: dict[str, str] | None = None,
    ) -> None:
        """Add or replace keys and tokens, set STS expiry (real Unix time), revoke key ids, and say which
        account a key belongs to (keys never named belong to account "default")."""
        self._call(
            "POST",
            "/credentials",
            {
                "access_keys": access_keys or {},
                "sts_tokens": sts_tokens or {},
                "sts_expires_at": sts_expires_at or {},
                "revoke": revoke or [],
                "accounts": accounts or {},
            },
        )

    def reset(self) -> None:
        self._call("POST", "/reset")

    def close(self) -> None:
        self._session.close()
