"""The history database: one row per job, searchable, with the user's rating.

SQLite (stdlib ``sqlite3``) in the data folder by default; a PostgreSQL URL (``--db postgresql://…``,
with the ``psycopg`` driver) works in its place. The queries are written once, in SQL both understand
(``lower(…) LIKE``, ``INSERT … ON CONFLICT``); :class:`_Db` adapts the placeholders and runs them.

Migrations: :data:`MIGRATIONS` are the schema changes in order, with ``{REAL}``/``{BIGINT}``/``{SEQ}``
standing for the column types of each database. The schema version lives in SQLite's
``PRAGMA user_version`` and in Postgres' ``glassforge_schema`` table; opening a database runs the
migrations it lacks, in one transaction (on Postgres under an advisory lock, so two servers starting
together do not both migrate).

Rows are written when a job is queued, when it starts, after each image it saves and when it finishes,
so a server killed mid-job leaves a row listing the images already on disk; :meth:`History.mark_unfinished`
marks it failed on the next start. Each row notes which server wrote it (host and data folder), so a
server sharing a Postgres database with others marks only its own rows.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MIGRATIONS = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        created {REAL} NOT NULL,
        started {REAL},
        finished {REAL},
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        params TEXT NOT NULL,          -- JSON: the request as the job received it
        infotexts TEXT NOT NULL,       -- JSON list, one per image
        images TEXT NOT NULL,          -- JSON list of file paths
        model TEXT,
        model_hash TEXT,
        sampler TEXT,
        prompt TEXT,
        negative_prompt TEXT,
        seed {BIGINT},
        timings TEXT NOT NULL,         -- JSON: seconds per stage
        rating INTEGER,                -- the user's 👍 (1) / 👎 (-1), NULL when unrated
        note TEXT{SEQ}
    );
    CREATE INDEX jobs_created ON jobs (created);
    CREATE INDEX jobs_model ON jobs (model);
    CREATE INDEX jobs_sampler ON jobs (sampler);
    """,
    """
    ALTER TABLE jobs ADD COLUMN server TEXT;  -- host:data folder of the server that ran the job
    """,
)
# Column types per database: Postgres' REAL is 4 bytes (timestamps need 8) and its INTEGER 32 bits (seeds
# go to 2³²); SQLite's rowid orders rows inserted in the same instant, Postgres gets a sequence for that.
_TYPES = {
    "sqlite": {"REAL": "REAL", "BIGINT": "INTEGER", "SEQ": ""},
    "postgresql": {"REAL": "DOUBLE PRECISION", "BIGINT": "BIGINT", "SEQ": ",\n        seq BIGSERIAL"},
}
_INSERTION_ORDER = {"sqlite": "rowid", "postgresql": "seq"}
_PG_LOCK = 7_446_150_000  # pg_advisory_xact_lock key for migrations ("glassforge" in spirit)
RATINGS = (-1, 1)
_JSON_COLUMNS = ("params", "infotexts", "images", "timings")
URL_FORMS = "sqlite:///PATH (sqlite:////absolute/path) or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def parse_db(target: str | Path) -> tuple[str, str | Path]:
    """``("sqlite", path)`` or ``("postgresql", url)`` for a path or a database URL (SQLAlchemy's forms:
    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``postgresql[+psycopg]://…``, ``postgres://…``)."""
    if isinstance(target, Path):
        return "sqlite", target
    text = str(target).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "sqlite", Path(text).expanduser()
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = unquote(rest[1:] if rest.startswith("/") else rest)
        if not path or rest[:1] != "/":
            raise ValueError(f"database URL {text!r} has no file path; expected {URL_FORMS}")
        return "sqlite", Path(path).expanduser()
    if scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        return "postgresql", "postgresql://" + rest
    raise ValueError(f"unsupported database URL scheme {scheme!r} in {redact(text)!r}; expected {URL_FORMS}")


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Db:
    """One connection (SQLite or Postgres) behind a lock; SQL with ``?`` placeholders, rows as dicts."""

    def __init__(self, target: str | Path):
        self.dialect, where = parse_db(target)
        self.where = str(where) if self.dialect == "sqlite" else redact(str(where))
        self._target = where
        self.lock = threading.Lock()
        self._conn = self._connect()

    def _connect(self):
        if self.dialect == "sqlite":
            path = Path(self._target)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise ValueError(
                "a postgresql:// history database needs the psycopg driver: pip install 'psycopg[binary]' "
                "(or glassforge[postgres])"
            ) from None
        try:
            return psycopg.connect(
                str(self._target), autocommit=True, row_factory=dict_row, connect_timeout=10
            )
        except psycopg.OperationalError as e:
            reason = " ".join(str(e).split())  # libpq's message spans lines
            raise ConnectionError(f"cannot connect to the history database {self.where}: {reason}") from None

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

    def run(self, sql: str, args: list | tuple = ()):
        """Execute under the lock (a caller holding it uses :meth:`_execute`); returns the cursor."""
        with self.lock:
            return self._execute(sql, args)

    def _execute(self, sql: str, args: list | tuple = ()):
        if self.dialect == "sqlite":
            return self._conn.execute(sql, args)
        import psycopg

        try:
            return self._conn.execute(self._sql(sql), args)
        except psycopg.OperationalError:
            if not self._conn.closed and not self._conn.broken:
                raise
            self._conn = self._connect()  # the server restarted or dropped us: once more on a new connection
            return self._conn.execute(self._sql(sql), args)

    def rows(self, sql: str, args: list | tuple = ()) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self._execute(sql, args).fetchall()]

    def migrate(self) -> None:
        """Apply the migrations this database lacks, in one transaction that holds the write lock
        (SQLite's ``BEGIN IMMEDIATE``, a Postgres advisory lock): servers opening it together migrate once."""
        with self.lock:
            if self.dialect == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                    self._check(version)
                    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                        for statement in _statements(script, "sqlite"):
                            self._conn.execute(statement)
                        self._conn.execute(f"PRAGMA user_version = {number}")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
                self._conn.execute("CREATE TABLE IF NOT EXISTS glassforge_schema (version INTEGER NOT NULL)")
                row = self._conn.execute("SELECT max(version) AS v FROM glassforge_schema").fetchone()
                version = row["v"] or 0
                self._check(version)
                for script in MIGRATIONS[version:]:
                    for statement in _statements(script, "postgresql"):
                        self._conn.execute(statement)
                if version < len(MIGRATIONS):
                    self._conn.execute("DELETE FROM glassforge_schema")
                    self._conn.execute("INSERT INTO glassforge_schema VALUES (%s)", (len(MIGRATIONS),))

    def _check(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise ValueError(
                f"{self.where} has history schema {version}, newer than this glassforge knows "
                f"({len(MIGRATIONS)}); use a newer glassforge or another --data folder / --db"
            )

    def version(self) -> int:
        if self.dialect == "sqlite":
            return self.rows("PRAGMA user_version")[0]["user_version"]
        return self.rows("SELECT max(version) AS v FROM glassforge_schema")[0]["v"]

    def close(self) -> None:
        with self.lock:
            self._conn.close()


class History:
    """The jobs table. ``target``: a SQLite file path or a database URL (see :func:`parse_db`);
    ``server``: who writes the rows (``host:data folder``), so a restart marks only its own rows failed."""

    def __init__(self, target: str | Path, server: str | None = None):
        self._db = _Db(target)
        self.dialect = self._db.dialect
        self.path = Path(self._db.where) if self.dialect == "sqlite" else None
        self.where = self._db.where  # the file, or the URL without its password
        self.server = server
        try:
            self._db.migrate()
        except BaseException:
            self._db.close()
            raise

    @property
    def schema_version(self) -> int:
        return self._db.version()

    def close(self) -> None:
        self._db.close()

    # ---------------------------------------------------------------- writing

    def record(self, job) -> None:
        """Insert or update the row of a :class:`~glassforge.server.jobs.Job` (keeps the rating)."""
        rec = job.record
        row = {
            "id": job.id,
            "created": job.created,
            "started": job.started,
            "finished": job.finished,
            "kind": job.kind,
            "status": job.status,
            "error": job.error,
            "params": json.dumps(job.params, ensure_ascii=False, default=str),
            "infotexts": json.dumps(rec.get("infotexts", []), ensure_ascii=False),
            "images": json.dumps([str(p) for p in rec.get("images", [])]),
            "model": rec.get("model"),
            "model_hash": rec.get("model_hash"),
            "sampler": rec.get("sampler"),
            "prompt": rec.get("prompt"),
            "negative_prompt": rec.get("negative_prompt"),
            "seed": rec.get("seed"),
            "timings": json.dumps({k: round(v, 4) for k, v in job.timings.items()}),
            "server": self.server,
        }
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{k} = excluded.{k}" for k in row if k != "id")
        self._db.run(
            f"INSERT INTO jobs ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",
            list(row.values()),
        )

    def set_rating(self, job_id: str, rating: int | None, note: str | None = None) -> bool:
        """Rate a job: 1 (👍), -1 (👎) or None (unrated), with an optional note. False if no such job."""
        if rating is not None and rating not in RATINGS:
            raise ValueError(f"rating {rating!r} must be 1 (good), -1 (bad) or null (unrated)")
        cur = self._db.run("UPDATE jobs SET rating = ?, note = ? WHERE id = ?", (rating, note, job_id))
        return cur.rowcount > 0

    def mark_unfinished(self) -> int:
        """Mark this server's rows left ``pending`` or ``running`` by an earlier process (and rows of no
        known server) as ``error`` with the reason; returns how many. The images they list stay."""
        mine = "(server IS NULL OR server = ?)"
        now = time.time()
        reasons = {
            "running": "the server stopped (killed or crashed) while the job was running; "
            "the images it had finished are kept",
            "pending": "the server stopped before the job finished: it was still queued",
        }
        count = 0
        with self._db.lock:
            for status, reason in reasons.items():
                cur = self._db._execute(
                    f"UPDATE jobs SET status = 'error', error = ?, finished = ? WHERE status = ? AND {mine}",
                    (reason, now, status, self.server),
                )
                count += cur.rowcount
        return count

    # ---------------------------------------------------------------- reading

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._db.rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row(rows[0]) if rows else None

    def search(
        self,
        q: str | None = None,
        *,
        model: str | None = None,
        sampler: str | None = None,
        rating: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """(rows newest first, total matching). ``q``: every word must occur in the prompt, the negative
        prompt or the infotexts (case-insensitive); ``model``: name, file name or hash; ``sampler``: any
        name of the sampler (``k_euler_a`` finds ``Euler a``)."""
        where, args = [], []
        for word in (q or "").split():
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(" + " OR ".join(f"lower({c}) LIKE lower(?) ESCAPE '\\'" for c in _SEARCHED) + ")")
            args += [pattern] * len(_SEARCHED)
        if model:
            stem = (
                Path(model).stem if Path(model).suffix in (".safetensors", ".ckpt", ".pt", ".pth") else model
            )
            where.append(
                "(lower(model) = lower(?) OR lower(model) = lower(?) OR lower(model_hash) = lower(?))"
            )
            args += [model, stem, model]
        if sampler:
            where.append("lower(sampler) = lower(?)")
            args.append(_sampler_label(sampler))
        for column, value in (("rating", rating), ("status", status), ("kind", kind)):
            if value is not None and value != "":
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = _INSERTION_ORDER[self.dialect]
        with self._db.lock:
            total = self._db._execute(f"SELECT COUNT(*) AS n FROM jobs {clause}", args).fetchone()
            rows = self._db._execute(
                f"SELECT * FROM jobs {clause} ORDER BY created DESC, {order} DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_row(dict(r)) for r in rows], dict(total)["n"]


_SEARCHED = ("prompt", "negative_prompt", "infotexts")


def _statements(script: str, dialect: str) -> list[str]:
    """A migration's statements for one database: its types filled in, comments dropped."""
    text = re.sub(r"--[^\n]*", "", script.format(**_TYPES[dialect]))
    return [s.strip() for s in text.split(";") if s.strip()]


def _sampler_label(name: str) -> str:
    from ..sampling.names import resolve_sampler
    from ..sampling.registry import UnknownNameError

    try:
        return resolve_sampler(name)[0].name
    except UnknownNameError:
        return name


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out.pop("seq", None)
    for key in _JSON_COLUMNS:
        out[key] = json.loads(out[key]) if out[key] else ([] if key in ("infotexts", "images") else {})
    return out
