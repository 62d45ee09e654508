"""`arena demo` and `arena serve --workers 2` as a user runs them, in their own process:
stopping them leaves no process behind.

A SIGTERM or SIGINT ends the server and every process it started within 5 s; a SIGKILL of
the server (which runs no cleanup at all) makes its helper processes, and uvicorn's worker
processes with theirs, end on their own within 10 s (:mod:`arena.lifeline`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process tree on Linux"),
]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo arena built once (no simulated votes), reused by every run below."""
    from arena.demo.prepare import demo_settings, prepare_demo

    home = tmp_path_factory.mktemp("demo") / "arena-demo"
    prepare_demo(demo_settings(home), progress=False, votes=0)
    return home


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(
    demo_home: Path, tmp_path: Path, args: list[str], helpers: int
) -> Iterator[tuple[psutil.Process, list[psutil.Process]]]:
    """``arena ARGS --port N`` serving ``demo_home``, once at least ``helpers`` processes
    descend from it: the server and its descendants. Whatever a test leaves running is killed
    at the end."""
    port = free_port()
    env = {**os.environ, "ARENA_HOME": str(demo_home), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "arena.cli.main", *args,
         "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    server = psutil.Process(process.pid)
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        # The leaderboard worker starts with the UI, its refit pool with the first pass.
        deadline = time.monotonic() + 120
        while len(server.children(recursive=True)) < helpers and time.monotonic() < deadline:
            time.sleep(0.5)
        seen = server.children(recursive=True)
        assert len(seen) >= helpers, f"the server started {len(seen)} helper processes"
        yield server, seen
    finally:
        if server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
            server.send_signal(signal.SIGABRT)  # faulthandler: where it hangs, into the log
            time.sleep(1)
        for child in [server, *seen]:
            if child.is_running():
                child.kill()
        process.wait(timeout=30)
        log.close()
        print((tmp_path / "server.log").read_text())


@pytest.fixture
def running_demo(
    demo_home: Path, tmp_path: Path
) -> Iterator[tuple[psutil.Process, list[psutil.Process]]]:
    """`arena demo` serving ``demo_home`` with its helper processes up."""
    with running(demo_home, tmp_path, ["demo", "--votes", "0"], helpers=2) as started:
        yield started


def survivors(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of ``processes`` still running after up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in processes
                 if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_demo_ends_every_process_it_started(
    running_demo: tuple[psutil.Process, list[psutil.Process]], stop: signal.Signals
) -> None:
    server, helpers = running_demo
    server.send_signal(stop)
    assert survivors([server, *helpers], within=5.0) == []


def test_a_killed_demo_leaves_no_helper_running(
    running_demo: tuple[psutil.Process, list[psutil.Process]],
) -> None:
    server, helpers = running_demo
    server.kill()  # SIGKILL: no atexit, no pool shutdown
    assert survivors(helpers, within=10.0) == []


def test_a_killed_multi_worker_server_leaves_no_process_running(
    demo_home: Path, tmp_path: Path
) -> None:
    """`arena serve --workers 2`: uvicorn's worker processes and the leaderboard workers they
    start end on their own once the supervisor is killed."""
    with running(demo_home, tmp_path, ["serve", "--demo", "--workers", "2"],
                 helpers=4) as (server, helpers):
        server.kill()
        assert survivors(helpers, within=10.0) == []
