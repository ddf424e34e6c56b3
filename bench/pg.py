"""A private PostgreSQL cluster for the benchmarks (Debian's `postgresql`), as
crates/mathrank-pgtest starts one for the tests: `initdb` in a scratch directory, the server on a
free loopback port, `trust` authentication for the user `mathrank`. As root, the server runs as
the `postgres` OS user through `runuser`. Standard library only."""

import glob
import os
import pwd
import socket
import subprocess
import sys
import time

USER = "mathrank"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_dir():
    if os.environ.get("MATHRANK_PG_BIN"):
        return os.environ["MATHRANK_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise SystemExit("PostgreSQL not found: apt-get install -y postgresql (or set MATHRANK_PG_BIN)")
    return found[-1]


class Cluster:
    def __init__(self, directory):
        self.bin = bin_dir()
        self.dir = os.path.abspath(directory)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        os.makedirs(self.dir, exist_ok=True)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.server("initdb", "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\n")
        self.start()

    def server(self, name, *args):
        command = [os.path.join(self.bin, name), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def start(self):
        self.server("pg_ctl", "-D", self.data, "-w", "-s", "-l", self.log, "-t", "120", "-o", f"-p {self.port}",
                    "start")

    def stop(self, mode="fast"):
        self.server("pg_ctl", "-D", self.data, "-w", "-s", "-m", mode, "stop")

    def create_database(self, name):
        subprocess.run([os.path.join(self.bin, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
                       check=True, stdin=subprocess.DEVNULL)
        return f"postgres://{USER}@127.0.0.1:{self.port}/{name}"

    def psql(self, url, sql):
        """Rows of a query as lists of strings (tab-separated output of psql)."""
        # A read-only query is retried when psql cannot connect (exit 2): the crash loops open a
        # connection per check while killed servers' backends are still exiting, and one refused
        # connection must not end a run that takes an hour.
        command = [os.path.join(self.bin, "psql"), "-X", "-At", "-F", "\t", "-d", url, "-c", sql]
        for attempt in range(6):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode == 0:
                return [line.split("\t") for line in done.stdout.splitlines() if line]
            if done.returncode != 2 or attempt == 5:
                raise RuntimeError(f"psql failed (exit {done.returncode}) on {sql!r}: {done.stderr.strip()}")
            print(f"psql could not connect (attempt {attempt + 1}), retrying: {done.stderr.strip()}",
                  file=sys.stderr, flush=True)
            time.sleep(1 + attempt)
