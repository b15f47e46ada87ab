"""Run an emulator on a background thread (pytest fixtures, scripts)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from .config import EmulatorConfig
from .control import EmulatorControl
from .server import create_app


async def serve(config: EmulatorConfig, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"


class EmulatorHandle:
    """A running emulator: `.url`, `.control`, `.stop()`; a context manager."""

    def __init__(self, config: EmulatorConfig, host: str, port: int):
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(host, port), name="rtc-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self.control = EmulatorControl(self.url)

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self.url = self._loop.run_until_complete(serve(self.config, host, port))
        except BaseException as error:  # reported to the starting thread
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.control.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_in_thread(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> EmulatorHandle:
    return EmulatorHandle(config, host, port)
