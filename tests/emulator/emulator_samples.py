"""Request samples in the vendor's shape, and small helpers for the emulator's tests."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from rtc_recording.cluster import processes

APP = "app1"
CHANNEL = "room1"
BUCKET = "bucket1"
ENDPOINT = "oss-cn-shanghai.aliyuncs.com"
ACCESS_KEY = ("AK1", "secret1")
STS_KEY = ("STS.K1", "stssecret1", "token-1")


def oss(**extra: Any) -> dict[str, Any]:
    return {"StorageType": 1, "OSSParams": {"OSSEndpoint": ENDPOINT, "OSSBucket": BUCKET}, **extra}


def vod(**extra: Any) -> dict[str, Any]:
    return {"StorageType": 0, "VodParams": {**extra}}


def individual(*users: str, **top: Any) -> dict[str, Any]:
    raw = {
        "AppId": APP,
        "ChannelId": CHANNEL,
        "SubscribeParams": {"SubscribeUserIdList": [{"UserId": u} for u in users or ("alice",)]},
        "RecordParams": {"RecordMode": 0},
        "StorageParams": oss(),
    }
    raw.update(top)
    return copy.deepcopy(raw)


def mixed(*users: str, **top: Any) -> dict[str, Any]:
    users = users or ("alice", "bob")
    raw = {
        "AppId": APP,
        "ChannelId": CHANNEL,
        "SubscribeParams": {"SubscribeUserIdList": [{"UserId": u} for u in users]},
        "RecordParams": {"RecordMode": 1},
        "StorageParams": oss(),
        "MixTranscodeParams": {
            "AudioBitrate": 64,
            "AudioChannels": 2,
            "AudioSampleRate": 48000,
            "VideoBitrate": 1000,
            "VideoFramerate": 25,
            "VideoGop": 50,
            "VideoWidth": 1280,
            "VideoHeight": 720,
        },
        "MixLayoutParams": {
            "UserPanes": [
                {"UserId": u, "X": str(i / len(users)), "Y": "0", "Width": str(1 / len(users)), "Height": "1"}
                for i, u in enumerate(users)
            ]
        },
    }
    raw.update(top)
    return copy.deepcopy(raw)


def set_path(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """raw with the dotted path set ("a.b.0.c"); value DELETE removes it."""
    parts = path.split(".")
    node: Any = raw
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return raw


DELETE = object()


# The emulator answers in milliseconds: poll often, give up soon.
wait_for = partial(processes.wait_for, timeout=5.0, interval=0.01)


class Receiver:
    """A NotifyUrl receiver on loopback, on its own thread, that records every request.

    `respond(body)` decides the answer: an int status, or ("sleep", seconds) to stall.
    """

    def __init__(self, respond: Callable[[dict[str, Any]], Any] = lambda body: 200):
        self.requests: list[dict[str, Any]] = []
        self.respond = respond
        self.release = threading.Event()
        self.release.set()
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
            await asyncio.to_thread(self.release.wait, 10)
            answer = self.respond(body)
            if isinstance(answer, tuple):
                await asyncio.sleep(answer[1])
                answer = 200
            return web.json_response({"Code": 0, "Msg": "Success"}, status=answer)

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait()

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if event_type is None or r["body"]["eventType"] == event_type]

    def close(self) -> None:
        self.release.set()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
