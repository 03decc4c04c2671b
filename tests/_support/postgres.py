"""A throwaway PostgreSQL server for the tests: initdb in a temporary directory, listening on
a Unix socket there only (no TCP), run as an unprivileged user when the tests run as root (the
server refuses root), stopped by its pid."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PG_BIN", "throwaway_postgres"]


def _newest_server() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


# Debian's layout (.ci/run installs the postgresql package when it is missing).
PG_BIN = (
    Path(os.environ["PYDISPATCH_PG_BIN"]) if "PYDISPATCH_PG_BIN" in os.environ else _newest_server()
)


def _as_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "nobody", "--", *command]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server; yield its DSN (a Unix socket); stop it (SIGINT: fast shutdown)."""
    root = Path(tempfile.mkdtemp(prefix="pydispatch-pg-"))
    data, socket_dir = root / "data", root / "s"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (root, socket_dir):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    process = None
    try:
        subprocess.run(
            _as_user([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "pydispatch",
                      "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        process = subprocess.Popen(
            _as_user([str(PG_BIN / "postgres"), "-D", str(data), "-k", str(socket_dir),
                      "-c", "listen_addresses=", "-c", "fsync=off"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        dsn = f"postgresql://pydispatch@/postgres?host={socket_dir}"
        deadline = time.monotonic() + 60
        while not (socket_dir / ".s.PGSQL.5432").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the throwaway PostgreSQL did not start")
            time.sleep(0.05)
        ready = [str(PG_BIN / "pg_isready"), "-h", str(socket_dir), "-U", "pydispatch"]
        while subprocess.run(ready, capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the throwaway PostgreSQL does not accept connections")
            time.sleep(0.05)
        yield dsn
    finally:
        if process is not None:
            _stop(process, data / "postmaster.pid")
        shutil.rmtree(root, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes], pid_file: Path) -> None:
    """SIGINT to the server's own pid (fast shutdown: it ends its backends), then wait."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        server = int(pid_file.read_text().split()[0])
        os.kill(server, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(server, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
