"""Real servers for tests and benchmarks: a PostgreSQL server and a one-node SLURM cluster, on loopback only.

Nothing here is mocked. Each server runs from Debian's packages (installed by ``scripts/install_extras.sh``) with all
of its state in a temporary folder, listens on free ports of 127.0.0.1 only, and is stopped (every process it
started killed, the folder deleted) when its fixture ends.

- :class:`PostgresServer`: ``initdb`` + ``pg_ctl`` of ``/usr/lib/postgresql/<version>/bin`` (as the ``postgres``
  user when run as root: initdb refuses root), password authentication, one database per test.
- :class:`SlurmTestCluster`: ``munged`` (own socket), ``slurmctld -D -f CONF`` and ``slurmd -D -f CONF``; the
  recipe of STACK.md "Clusters that users start". Needs root (slurmd starts jobs as their user).

Fixtures (imported by ``tests/conftest.py``): ``postgres_server`` (session), ``postgres_url`` (a fresh database per
test) and ``slurm_cluster`` (session; exports ``SLURM_CONF`` while it runs). When a binary is missing they skip with
the reason and the command that installs it.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from db.runs import pid_alive

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
INSTALL_HINT = "install it with `sudo bash scripts/install_extras.sh` (Debian/Ubuntu, as root)"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid``, then SIGKILL if it is still there after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap our own children; others raise ChildProcessError
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                return
            time.sleep(0.05)


@dataclass(frozen=True)
class _OsUser:
    """Who a server's processes run as: ``postgres``/``munge`` when we are root, else ourselves."""

    name: str
    uid: int
    gid: int

    @classmethod
    def named(cls, name: str) -> _OsUser:
        pw = pwd.getpwnam(name)
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)

    @classmethod
    def me(cls) -> _OsUser:
        return cls(pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid())

    def popen_kwargs(self) -> dict[str, object]:
        if self.uid == os.getuid():
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path, mode: int) -> None:
        if self.uid != os.getuid():
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)


# ---- PostgreSQL ------------------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl (or ``$WORKBENCH_PG_BINDIR``)."""
    env = os.environ.get("WORKBENCH_PG_BINDIR")
    candidates = (
        [Path(env)]
        if env
        else sorted(
            (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


@dataclass
class PostgresServer:
    """A PostgreSQL server in a temporary folder, listening on ``127.0.0.1:port`` only.

    Build with :meth:`start`; :meth:`stop` shuts it down and deletes the folder. The superuser ``workbench``
    authenticates with a random password (scram-sha-256), as a team's server would.
    """

    root: Path
    bindir: Path
    port: int
    os_user: _OsUser
    user: str = "workbench"
    password: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    _names: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "log" / "postgres.log"

    @staticmethod
    def unavailable() -> str | None:
        """Why a server cannot be started here (None when it can)."""
        if postgres_bindir() is None:
            return (
                f"PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin; {INSTALL_HINT}"
            )
        if os.getuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root but there is no `postgres` user to run initdb as (initdb refuses root)"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "the PostgreSQL driver is missing; `pip install -r requirements.txt` installs psycopg"
        return None

    @classmethod
    def start(cls, base: Path | None = None, settings: dict[str, str] | None = None) -> PostgresServer:
        """initdb a fresh cluster under ``base`` (default: a new temp folder) and start it on a free port.

        Args:
            base: parent folder for the server's data (a fresh ``wb-pg-*`` folder is made in it).
            settings: extra ``postgresql.conf`` settings (``{"max_connections": "200"}``).

        Raises:
            RuntimeError: initdb or pg_ctl failed; the message holds the server log's tail.
        """
        reason = cls.unavailable()
        if reason:
            raise RuntimeError(reason)
        bindir = postgres_bindir()
        assert bindir is not None
        os_user = _OsUser.named("postgres") if os.getuid() == 0 else _OsUser.me()
        root = Path(tempfile.mkdtemp(prefix="wb-pg-", dir=base))
        root.chmod(0o755)  # the postgres user must reach its data folder
        server = cls(root=root, bindir=bindir, port=0, os_user=os_user)
        try:
            server._initdb(settings or {})
            server._pg_ctl_start()
        except BaseException:
            server.stop()
            raise
        log.info("PostgreSQL %s on %s:%d (data %s)", bindir.parent.name, LOOPBACK, server.port, root)
        return server

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(self.root)},
            **self.os_user.popen_kwargs(),
        )  # type: ignore[arg-type]
        return proc

    def _initdb(self, settings: dict[str, str]) -> None:
        for d in (self.datadir, self.root / "sock", self.logfile.parent):
            d.mkdir()
            self.os_user.own(d, 0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.os_user.own(pwfile, 0o600)
        proc = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        pwfile.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        conf = {
            "listen_addresses": f"'{LOOPBACK}'",
            "unix_socket_directories": f"'{self.root / 'sock'}'",
            "max_connections": "100",
            **settings,
        }
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write("\n# tests/servers.py\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))

    def _pg_ctl_start(self) -> None:
        last = ""
        for _attempt in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            proc = self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port}",
                "start",
            )
            if proc.returncode == 0:
                return
            last = f"pg_ctl start failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}\n{_tail(self.logfile)}"
        raise RuntimeError(last)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (default name: ``test_<n>``); returns its name."""
        name = name or f"test_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected."""
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown; SIGKILL if it hangs) and delete its folder."""
        if self.datadir.exists() and (self.datadir / "postmaster.pid").exists():
            pid = self._postmaster_pid()
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                    timeout=60,
                )
            except subprocess.TimeoutExpired:
                log.warning("pg_ctl stop timed out")
            if pid is not None and pid_alive(pid):
                _terminate(pid)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the test session (skips, with the reason, when it cannot be started)."""
    reason = PostgresServer.unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server; dropped (engines disposed) after the test."""
    from db.engine import dispose_engines

    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        dispose_engines()
        postgres_server.drop_database(name)


# ---- SLURM -----------------------------------------------------------------------------------------------------

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")


@dataclass
class SlurmTestCluster:
    """A one-node SLURM (munged + slurmctld + slurmd) whose state lives in ``root``.

    Attributes:
        conf: the slurm.conf; commands find the cluster through ``SLURM_CONF`` (see :attr:`env`).
        partition: the only partition (default, holds the node).
        node: the node's name (this machine's short hostname).
        cpus: CPUs the node offers.
    """

    root: Path
    conf: Path
    partition: str
    node: str
    cpus: int
    ctld_port: int
    slurmd_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM commands (``os.environ`` plus ``SLURM_CONF``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @staticmethod
    def unavailable() -> str | None:
        """Why the cluster cannot be started here (None when it can)."""
        missing = [b for b in SLURM_BINARIES if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin") is None]
        if missing:
            return f"SLURM/munge binaries missing: {', '.join(missing)}; {INSTALL_HINT}"
        if os.getuid() != 0:
            return "a test SLURM cluster needs root (slurmd starts jobs as their user and munged runs as `munge`)"
        if not Path("/etc/munge/munge.key").exists():
            return "no munge key at /etc/munge/munge.key (the munge package creates it); reinstall munge"
        try:
            pwd.getpwnam("munge")
        except KeyError:
            return "no `munge` user (the munge package creates it); reinstall munge"
        return None

    @classmethod
    def start(cls, cpus: int | None = None, memory_mb: int | None = None, timeout: float = 60.0) -> SlurmTestCluster:
        """Start munged, slurmctld and slurmd and wait until ``sinfo`` shows the node idle.

        Args:
            cpus: CPUs the node offers (default: this machine's).
            memory_mb: memory the node offers (default: 90 % of this machine's; more than the machine has would
                drain the node).

        Raises:
            RuntimeError: a daemon died or the node did not come up within ``timeout`` s (message: log tails).
        """
        reason = cls.unavailable()
        if reason:
            raise RuntimeError(reason)
        root = Path(tempfile.mkdtemp(prefix="wb-slurm-"))
        root.chmod(0o755)  # munged (as `munge`) checks every folder above its socket
        node = socket.gethostname().split(".")[0]
        cpus = cpus or os.cpu_count() or 1
        if memory_mb is None:
            memory_mb = int(0.9 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
        ctld_port = free_port()
        slurmd_port = free_port()
        while slurmd_port == ctld_port:
            slurmd_port = free_port()
        cluster = cls(
            root=root,
            conf=root / "slurm.conf",
            partition="debug",
            node=node,
            cpus=cpus,
            ctld_port=ctld_port,
            slurmd_port=slurmd_port,
        )
        try:
            cluster._start_munged()
            cluster._write_conf(memory_mb)
            for daemon in ("slurmctld", "slurmd"):
                with open(root / f"{daemon}.out", "wb") as out:  # the daemon keeps its own copy of the handle
                    cluster.procs[daemon] = subprocess.Popen(
                        [daemon, "-D", "-f", str(cluster.conf)],
                        cwd=root,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=cluster.env,
                    )
            cluster._wait_idle(timeout)
        except BaseException:
            cluster.stop()
            raise
        log.info(
            "SLURM test cluster: node %s (%d CPUs), slurmctld on %s:%d, conf %s",
            node,
            cpus,
            LOOPBACK,
            ctld_port,
            cluster.conf,
        )
        return cluster

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def _start_munged(self) -> None:
        mdir = self.root / "munge"
        mdir.mkdir()
        munge = _OsUser.named("munge")
        munge.own(mdir, 0o755)  # munged wants its socket folder owned by itself and readable by clients
        with open(self.root / "munged.out", "wb") as out:
            self.procs["munged"] = subprocess.Popen(
                [
                    "munged",
                    "-F",
                    f"--socket={self.munge_socket}",
                    f"--pid-file={mdir / 'munged.pid'}",
                    f"--log-file={mdir / 'munged.log'}",
                    f"--seed-file={mdir / 'munged.seed'}",
                    "--key-file=/etc/munge/munge.key",
                ],
                cwd=mdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                **munge.popen_kwargs(),
            )  # type: ignore[arg-type]
        deadline = time.monotonic() + 15
        while not self.munge_socket.exists():
            if self.procs["munged"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start:\n{_tail(self.root / 'munged.out')}")
            time.sleep(0.05)

    def _write_conf(self, memory_mb: int) -> None:
        r = self.root
        for d in ("state", "spool"):
            (r / d).mkdir()
        lines = {
            "ClusterName": f"wbtest{os.getpid()}",
            "SlurmctldHost": f"{self.node}({LOOPBACK})",
            "SlurmctldPort": self.ctld_port,
            "SlurmdPort": self.slurmd_port,
            "CommunicationParameters": "NoCtldInAddrAny,NoInAddrAny",  # bind 127.0.0.1, not every interface
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "MpiDefault": "none",
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "slurmctld.pid",
            "SlurmdPidFile": r / "slurmd.pid",
            "SlurmctldLogFile": r / "slurmctld.log",
            "SlurmdLogFile": r / "slurmd.log",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "ReturnToService": 2,
            "MinJobAge": 2,  # finished jobs leave squeue after 2 s
            "KillWait": 5,
            "NodeName": f"{self.node} NodeAddr={LOOPBACK} CPUs={self.cpus} RealMemory={memory_mb} State=UNKNOWN",
            "PartitionName": f"{self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        }
        self.conf.write_text("# written by tests/servers.py\n" + "".join(f"{k}={v}\n" for k, v in lines.items()))

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM command against this cluster; returns its stdout."""
        proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=10).strip()

    def job_ids(self) -> list[str]:
        """Ids of the jobs SLURM still lists (pending, running or completing)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {p.returncode}:\n{_tail(self.root / f'{name}.out')}\n"
                        f"{_tail(self.root / f'{name}.log')}"
                    )
            state = self.node_state()
            if state == "idle":
                return
            time.sleep(0.25)
        raise RuntimeError(
            f"node {self.node} not idle after {timeout:.0f} s (sinfo: {state!r}):\n"
            f"{_tail(self.root / 'slurmctld.log')}\n{_tail(self.root / 'slurmd.log')}"
        )

    def wait_empty(self, timeout: float = 30.0) -> list[str]:
        """Wait until squeue lists no job; returns the ids still listed at the end (empty on success)."""
        deadline = time.monotonic() + timeout
        ids = self.job_ids()
        while ids and time.monotonic() < deadline:
            time.sleep(0.25)
            ids = self.job_ids()
        return ids

    def _leftovers(self) -> list[int]:
        """Processes started on behalf of this cluster that are still alive: job steps (slurmstepd) and job
        processes whose environment names our slurm.conf, and anything whose command line names our folder."""
        me, found = os.getpid(), []
        marker_env, marker_cmd = f"SLURM_CONF={self.conf}".encode(), str(self.root).encode()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == me:
                continue
            try:
                env = (d / "environ").read_bytes()
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            entries = env.split(b"\0")
            ours = marker_env in entries and (
                cmd.startswith(b"slurmstepd") or any(e.startswith(b"SLURM_JOB_ID=") for e in entries)
            )
            if ours or marker_cmd in cmd:
                found.append(int(d.name))
        return found

    def stop(self) -> None:
        """Cancel every job, stop the daemons, kill whatever they left and delete the folder."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                ids = self.job_ids()
                if ids:
                    self.run("scancel", *ids, check=False)
                    left = self.wait_empty(20)
                    if left:
                        log.warning("jobs %s still listed after scancel", left)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log.warning("could not cancel the test cluster's jobs: %s", exc)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                _terminate(p.pid)
                p.wait(timeout=5)
        for pid in self._leftovers():
            log.warning("killing process %d left by the test SLURM cluster", pid)
            _terminate(pid, timeout=2)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmTestCluster]:
    """A real one-node SLURM for the session, with ``SLURM_CONF`` exported while it runs.

    Skips (with the reason) when the binaries or root are missing.
    """
    reason = SlurmTestCluster.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = SlurmTestCluster.start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
