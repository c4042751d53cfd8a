"""The history database: one SQLite row per job, searchable, with the user's rating.

Plain ``sqlite3`` (stdlib) in the data folder; the schema version lives in ``PRAGMA user_version`` and
:data:`MIGRATIONS` brings an older file up to date. Rows are written when a job is queued, started and
finished, so a server killed mid-job leaves a row that :meth:`History.mark_unfinished` marks failed on
the next start; the images already written stay where they are.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

MIGRATIONS = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
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
        seed INTEGER,
        timings TEXT NOT NULL,         -- JSON: seconds per stage
        rating INTEGER,                -- the user's 👍 (1) / 👎 (-1), NULL when unrated
        note TEXT
    );
    CREATE INDEX jobs_created ON jobs (created);
    CREATE INDEX jobs_model ON jobs (model);
    CREATE INDEX jobs_sampler ON jobs (sampler);
    """,
)
RATINGS = (-1, 1)
_JSON_COLUMNS = ("params", "infotexts", "images", "timings")


class History:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise ValueError(
                    f"{self.path} has history schema {version}, newer than this glassforge knows "
                    f"({len(MIGRATIONS)}); use a newer glassforge or another --data folder"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        with self._lock:
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
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        updates = ", ".join(f"{k} = excluded.{k}" for k in row if k != "id")
        with self._lock:
            self._db.execute(
                f"INSERT INTO jobs ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}", row
            )

    def set_rating(self, job_id: str, rating: int | None, note: str | None = None) -> bool:
        """Rate a job: 1 (👍), -1 (👎) or None (unrated), with an optional note. False if no such job."""
        if rating is not None and rating not in RATINGS:
            raise ValueError(f"rating {rating!r} must be 1 (good), -1 (bad) or null (unrated)")
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET rating = ?, note = ? WHERE id = ?", (rating, note, job_id)
            )
            return cur.rowcount > 0

    def mark_unfinished(self, reason: str = "the server stopped before the job finished") -> int:
        """Mark rows left pending or running by a previous server process as failed; returns how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'error', error = ?, finished = ? WHERE status IN ('pending', 'running')",
                (reason, time.time()),
            )
            return cur.rowcount

    # ---------------------------------------------------------------- reading

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row is not None else None

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
            where.append(
                "(prompt LIKE ? ESCAPE '\\' OR negative_prompt LIKE ? ESCAPE '\\' OR infotexts LIKE ? ESCAPE '\\')"
            )
            args += [pattern] * 3
        if model:
            stem = (
                Path(model).stem if Path(model).suffix in (".safetensors", ".ckpt", ".pt", ".pth") else model
            )
            where.append(
                "(model = ? COLLATE NOCASE OR model = ? COLLATE NOCASE OR model_hash = ? COLLATE NOCASE)"
            )
            args += [model, stem, model]
        if sampler:
            where.append("sampler = ? COLLATE NOCASE")
            args.append(_sampler_label(sampler))
        if rating is not None:
            where.append("rating = ?")
            args.append(rating)
        if status:
            where.append("status = ?")
            args.append(status)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM jobs {clause}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM jobs {clause} ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_row(r) for r in rows], total


def _sampler_label(name: str) -> str:
    from ..sampling.names import resolve_sampler
    from ..sampling.registry import UnknownNameError

    try:
        return resolve_sampler(name)[0].name
    except UnknownNameError:
        return name


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON_COLUMNS:
        out[key] = json.loads(out[key]) if out[key] else ([] if key in ("infotexts", "images") else {})
    return out
