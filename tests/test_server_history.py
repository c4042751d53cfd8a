"""The history database, the same tests on SQLite and on a real PostgreSQL.

The PostgreSQL side starts a throwaway cluster of its own (``initdb`` into a temporary folder, ``pg_ctl
start`` on a free port, as the ``postgres`` user when the tests run as root), gives every test a fresh
database, and stops the cluster at the end. It is skipped, saying why, only when the PostgreSQL server
binaries (Debian: ``apt-get install postgresql``; ``setup.sh`` does it) or the ``psycopg`` driver are missing.

Oracles: exact values read back (floats to the bit, 2³²−1 seeds, Unicode), SQL ``LIKE`` wildcards taken
literally, the rows each filter must find, written by hand.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from glassforge.server.history import MIGRATIONS, History, parse_db, redact
from glassforge.server.jobs import Job

# ---------------------------------------------------------------- a throwaway PostgreSQL cluster


def _postgres_bin() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path.split("/")[-3]))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """URL of the ``postgres`` database of a cluster started for this module (superuser ``glassforge``)."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb or initdb on PATH); "
            "Debian: apt-get install postgresql (setup.sh installs it when run as root)"
        )
    pytest.importorskip("psycopg", reason="the psycopg driver is missing: pip install 'psycopg[binary]'")
    root = Path(tempfile.mkdtemp(prefix="glassforge-pg-"))
    su: str | None = None
    if os.geteuid() == 0:  # initdb refuses to run as root: the cluster belongs to the postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own a PostgreSQL cluster")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        su = "postgres"

    def run(*argv: str) -> None:
        if su is None:
            command = list(argv)
        elif shutil.which("runuser"):
            command = ["runuser", "-u", su, "--", *argv]
        else:
            command = ["su", su, "-s", "/bin/sh", "-c", shlex.join(argv)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{Path(argv[0]).name} failed:\n{done.stdout}\n{done.stderr}"

    data, log = root / "data", root / "server.log"
    initdb, pg_ctl = str(bindir / "initdb"), str(bindir / "pg_ctl")
    run(
        initdb,
        "-D",
        str(data),
        "-U",
        "glassforge",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    )
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-l", str(log), "-w", "-o", options, "start")
    try:
        yield f"postgresql://glassforge@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a fresh history lives: a SQLite file, or a new database in the module's cluster."""
    if request.param == "sqlite":
        return tmp_path / "history.sqlite3"
    import psycopg

    url = request.getfixturevalue("postgres")
    name = f"history_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def make_job(status="done", created=None, **record) -> Job:
    job = Job(
        kind=record.pop("kind", "txt2img"), params=record.pop("params", {"prompt": "x"}), run=lambda j: None
    )
    job.status = status
    if created is not None:
        job.created = created
    job.record.update(record)
    return job


# ---------------------------------------------------------------- the tests, on both databases


def test_rows_read_back_exactly(target):
    db = History(target, server="host:/data")
    job = make_job(
        status="done",
        created=1_700_000_000.123456789,
        params={"prompt": "ねこ 🐱", "steps": 20, "nested": {"a": [1, 2.5, None]}},
        prompt="ねこ 🐱 'quoted' \\ back",
        negative_prompt="blurry",
        seed=4_294_967_295,
        model="glassforge-shapes",
        model_hash="ABCDEF1234",
        sampler="Euler a",
        images=[Path("/out/00001-4294967295.png")],
        infotexts=["ねこ 🐱\nSteps: 20, Seed: 4294967295"],
    )
    job.started, job.finished, job.error = job.created + 0.5, job.created + 2.25, None
    job.timings.update(load=0.123456, sampling=1.5)
    db.record(job)
    row = db.get(job.id)
    assert row == {
        "id": job.id, "created": 1_700_000_000.123456789, "started": job.created + 0.5,
        "finished": job.created + 2.25, "kind": "txt2img", "status": "done", "error": None,
        "params": {"prompt": "ねこ 🐱", "steps": 20, "nested": {"a": [1, 2.5, None]}},
        "infotexts": ["ねこ 🐱\nSteps: 20, Seed: 4294967295"], "images": ["/out/00001-4294967295.png"],
        "model": "glassforge-shapes", "model_hash": "ABCDEF1234", "sampler": "Euler a",
        "prompt": "ねこ 🐱 'quoted' \\ back", "negative_prompt": "blurry", "seed": 4_294_967_295,
        "timings": {"load": 0.1235, "sampling": 1.5}, "rating": None, "note": None, "server": "host:/data",
    }  # fmt: skip
    assert db.get("no-such-job") is None
    db.close()


def test_updates_keep_the_rating(target):
    db = History(target)
    job = make_job(status="running", prompt="a cat")
    db.record(job)
    assert db.set_rating(job.id, 1, "nice 👍") is True
    job.status, job.record["images"] = "done", ["/out/a.png"]
    db.record(job)
    row = db.get(job.id)
    assert (row["status"], row["images"], row["rating"], row["note"]) == (
        "done",
        ["/out/a.png"],
        1,
        "nice 👍",
    )
    assert db.set_rating(job.id, None) is True
    assert (db.get(job.id)["rating"], db.get(job.id)["note"]) == (None, None)
    assert db.set_rating("no-such-job", -1) is False
    with pytest.raises(ValueError, match=r"rating 2 must be 1 \(good\), -1 \(bad\) or null"):
        db.set_rating(job.id, 2)
    db.close()


def test_search_words_and_wildcards(target):
    db = History(target)
    jobs = {
        "red": make_job(prompt="A Red CIRCLE on blue", created=1.0),
        "pct": make_job(prompt="loaded 100% today", created=2.0),
        "pct_like": make_job(prompt="loaded 1000 today", created=3.0),
        "snake": make_job(prompt="a snake_case name", created=4.0),
        "snake_like": make_job(prompt="the excellent case", created=5.0),
        "neg": make_job(prompt="square", negative_prompt="red blur", created=6.0),
        "info": make_job(prompt="square", infotexts=["square\nSteps: 4, Sampler: DPM++ 2M"], created=7.0),
    }
    for job in jobs.values():
        db.record(job)
    names = {job.id: name for name, job in jobs.items()}

    def found(q: str) -> list[str]:
        rows, total = db.search(q)
        assert total == len(rows)
        return [names[r["id"]] for r in rows]

    assert found("red circle") == ["red"]  # every word, any case
    assert found("RED") == ["neg", "red"]  # prompt or negative prompt; newest first
    assert found("100%") == ["pct"]  # % is a character, not a wildcard
    assert found("e_c") == ["snake"]  # so is _
    assert found("dpm++") == ["info"]  # the infotexts are searched too
    assert found("nothing-like-this") == []
    db.close()


def test_search_filters_order_and_paging(target):
    db = History(target)
    rows = [
        make_job(
            model="glassforge-shapes", model_hash="AAAA1111", sampler="Euler a", status="done", created=10.0
        ),
        make_job(model="other", model_hash="BBBB2222", sampler="DPM++ 2M", status="error", created=10.0),
        make_job(model="Glassforge-Shapes", sampler="Euler a", status="done", kind="workflow", created=10.0),
        make_job(model="other", sampler="Euler", status="interrupted", created=9.0),
    ]
    for job in rows:
        db.record(job)
    db.set_rating(rows[0].id, 1)
    db.set_rating(rows[1].id, -1)
    index = {job.id: i for i, job in enumerate(rows)}

    def ids(**kw) -> list[int]:
        found, total = db.search(**kw)
        return [index[r["id"]] for r in found], total

    # same created time: the row written last comes first; then older rows
    assert ids() == ([2, 1, 0, 3], 4)
    assert ids(model="glassforge-shapes") == ([2, 0], 2)  # names compare without case
    assert ids(model="glassforge-shapes.safetensors") == ([2, 0], 2)  # the file name finds the stem
    assert ids(model="aaaa1111") == ([0], 1)  # the hash, any case
    assert ids(sampler="k_euler_a") == ([2, 0], 2)  # any name of the sampler
    assert ids(sampler="euler") == ([3], 1)
    assert ids(rating=1) == ([0], 1)
    assert ids(rating=-1) == ([1], 1)
    assert ids(status="done") == ([2, 0], 2)
    assert ids(kind="workflow") == ([2], 1)
    assert ids(limit=2) == ([2, 1], 4)
    assert ids(limit=2, offset=2) == ([0, 3], 4)
    assert ids(model="other", status="error") == ([1], 1)
    db.close()


def test_unfinished_rows_of_this_server_marked_failed(target):
    db = History(target, server="me")
    running = make_job(status="running", images=["/out/1.png"], prompt="p")
    pending = make_job(status="pending")
    done = make_job(status="done", images=["/out/2.png"])
    for job in (running, pending, done):
        db.record(job)
    other = History(target, server="another server")  # sharing the database, alive
    theirs = make_job(status="running")
    other.record(theirs)
    other.close()
    legacy = History(target)  # rows from before rows named their server
    old = make_job(status="running")
    legacy.record(old)
    legacy.close()
    db.close()

    restarted = History(target, server="me")
    before = time.time()
    assert restarted.mark_unfinished() == 3
    got = {job.id: restarted.get(job.id) for job in (running, pending, done, theirs, old)}
    assert got[running.id]["status"] == "error" and "while the job was running" in got[running.id]["error"]
    assert got[running.id]["images"] == ["/out/1.png"] and got[running.id]["prompt"] == "p"
    assert got[running.id]["finished"] >= before
    assert got[pending.id]["status"] == "error" and "still queued" in got[pending.id]["error"]
    assert got[old.id]["status"] == "error"
    assert got[done.id]["status"] == "done" and got[done.id]["error"] is None
    assert got[theirs.id]["status"] == "running"  # not ours: that server is still running it
    assert restarted.mark_unfinished() == 0
    restarted.close()


def test_reopened_history_keeps_rows_and_refuses_newer_schemas(target):
    db = History(target)
    job = make_job(prompt="kept")
    db.record(job)
    assert db.schema_version == len(MIGRATIONS)
    db.close()
    db = History(target)  # migrations already applied: nothing runs twice
    assert db.schema_version == len(MIGRATIONS) and db.get(job.id)["prompt"] == "kept"
    db.close()
    _set_version(target, 99)
    with pytest.raises(
        ValueError, match=rf"history schema 99, newer than this glassforge knows \({len(MIGRATIONS)}\)"
    ):
        History(target)


def _set_version(target, version: int) -> None:
    if isinstance(target, Path):
        with sqlite3.connect(target) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        return
    import psycopg

    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("UPDATE glassforge_schema SET version = %s", (version,))


def test_servers_starting_together_migrate_once(target):
    """Several servers opening a new database at once: one creates the tables, the others wait for it."""
    opened, errors = [], []

    def open_one() -> None:
        try:
            opened.append(History(target))
        except Exception as e:  # pragma: no cover - what the test looks for
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    job = make_job(prompt="shared")
    opened[0].record(job)
    assert [h.get(job.id)["prompt"] for h in opened] == ["shared"] * 4
    assert opened[3].schema_version == len(MIGRATIONS)
    for h in opened:
        h.close()


def test_server_runs_on_the_database(target, tmp_path):
    """glassforge serve with this history: a job's row, its rating and the search, through the API."""
    from fastapi.testclient import TestClient

    from glassforge.server.app import create_app
    from glassforge.server.config import ServerConfig

    url = f"sqlite:///{target}" if isinstance(target, Path) else target
    config = ServerConfig(data_dir=tmp_path / "data", db_url=url, device="cpu", precision="fp32")
    with TestClient(create_app(config)) as client:
        body = {"prompt": "a red circle", "steps": 2, "seed": 7, "sampler_name": "Euler"}
        job_id = client.post("/api/v1/jobs", json=body).json()["id"]
        for _ in range(6000):  # until the worker has finished it (no time limit of our own)
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] not in ("pending", "running"):
                break
            time.sleep(0.05)
        assert job["status"] == "done", job["error"]
        assert (
            client.post(f"/api/v1/jobs/{job_id}/rating", json={"rating": 1, "note": "ok"}).status_code == 200
        )
        found = client.get("/api/v1/history", params={"q": "RED", "rating": 1}).json()
    assert not config.history_path.exists()  # the history went to --db, not to the data folder
    [row] = found["rows"]
    assert (row["id"], row["status"], row["seed"], row["rating"], row["note"]) == (job_id, "done", 7, 1, "ok")
    assert [Path(p).is_file() for p in row["images"]] == [True]
    reopened = History(target)  # what the server wrote is in the database itself
    assert reopened.get(job_id)["images"] == row["images"]
    reopened.close()


def test_postgres_connection_dropped_is_reopened(postgres):
    """The database server closes the connection (a restart, an idle timeout): the next query reconnects.
    (``pg_terminate_backend`` with a timeout returns once that backend is gone.)"""
    import psycopg

    db = History(postgres, server="me")
    job = make_job(prompt="before")
    db.record(job)
    with psycopg.connect(postgres, autocommit=True) as admin:
        pid = db._db._conn.info.backend_pid
        assert admin.execute("SELECT pg_terminate_backend(%s, 60000)", (pid,)).fetchone()[0] is True
    assert db.get(job.id)["prompt"] == "before"
    assert db._db._conn.info.backend_pid != pid
    db.close()


# ---------------------------------------------------------------- URLs and connection errors


def test_database_urls(tmp_path):
    assert parse_db(tmp_path / "h.db") == ("sqlite", tmp_path / "h.db")
    assert parse_db(str(tmp_path / "h.db")) == ("sqlite", tmp_path / "h.db")
    assert parse_db("sqlite:///relative/h.db") == ("sqlite", Path("relative/h.db"))
    assert parse_db("sqlite:////abs/h.db") == ("sqlite", Path("/abs/h.db"))
    assert parse_db("postgres://u:p@db:5433/x") == ("postgresql", "postgresql://u:p@db:5433/x")
    assert parse_db("postgresql+psycopg://u@db/x") == ("postgresql", "postgresql://u@db/x")
    with pytest.raises(
        ValueError, match=r"unsupported database URL scheme 'mysql'.*expected sqlite:///PATH"
    ) as e:
        parse_db("mysql://root:hunter2@db/x")
    assert "hunter2" not in str(e.value) and "root:***@db" in str(e.value)
    with pytest.raises(ValueError, match="has no file path"):
        parse_db("sqlite://")
    assert redact("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"


def test_unreachable_postgres_is_one_clear_error():
    pytest.importorskip("psycopg", reason="the psycopg driver is missing: pip install 'psycopg[binary]'")
    port = _free_port()  # nothing listens there
    with pytest.raises(
        ConnectionError, match=r"cannot connect to the history database postgresql://u:\*\*\*@"
    ) as e:
        History(f"postgresql://u:hunter2@127.0.0.1:{port}/x")
    assert "hunter2" not in str(e.value)


def test_sqlite_file_of_schema_1_is_migrated(tmp_path):
    """A history written by the first schema (no server column) opens, gains the column, keeps its rows,
    and its unfinished rows count as this server's."""
    path = tmp_path / "history.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            MIGRATIONS[0].format(REAL="REAL", BIGINT="INTEGER", SEQ="") + "PRAGMA user_version = 1;"
        )
        conn.execute(
            "INSERT INTO jobs (id, created, kind, status, params, infotexts, images, timings, prompt) "
            "VALUES ('old', 5.0, 'txt2img', 'running', '{}', '[]', '[\"/o/1.png\"]', '{}', 'old prompt')"
        )
    db = History(path, server="me")
    assert db.schema_version == len(MIGRATIONS) == 2
    row = db.get("old")
    assert (row["prompt"], row["images"], row["server"]) == ("old prompt", ["/o/1.png"], None)
    assert db.mark_unfinished() == 1 and db.get("old")["status"] == "error"
    db.close()
