"""The run's archive: programs, LLM calls and run metadata in one SQLite file.

The file uses WAL journaling and every write is a single statement in autocommit
mode, so each write is its own transaction: a process killed at any moment leaves
either the whole row or nothing. One connection is shared by the engine's threads
behind a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from evolve.records import LLMCall, Program

_PROGRAM_FIELDS = [f.name for f in fields(Program)]
_CALL_FIELDS = [f.name for f in fields(LLMCall)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS programs (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    generation INTEGER NOT NULL,
    island INTEGER NOT NULL,
    parent_id TEXT,
    other_parent_id TEXT,
    patch_type TEXT NOT NULL,
    model TEXT,
    valid INTEGER NOT NULL,
    score REAL,
    metrics TEXT NOT NULL,
    error TEXT,
    feedback TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    eval_seconds REAL NOT NULL,
    created_at REAL NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    idea TEXT NOT NULL DEFAULT '',
    direction TEXT NOT NULL DEFAULT '',
    duplicate_of TEXT
);
CREATE INDEX IF NOT EXISTS programs_generation ON programs (generation);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    model TEXT NOT NULL,
    temperature REAL NOT NULL,
    system TEXT NOT NULL,
    user TEXT NOT NULL,
    reply TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_s REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    purpose TEXT NOT NULL DEFAULT 'mutation'
);
CREATE INDEX IF NOT EXISTS llm_calls_generation ON llm_calls (generation);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Columns added to `programs` and `llm_calls` since the first schema: a run stored before
# gains them (with these defaults) when it is opened again.
_ADDED_PROGRAM_COLUMNS = {
    "outcome": "TEXT NOT NULL DEFAULT ''",
    "idea": "TEXT NOT NULL DEFAULT ''",
    "direction": "TEXT NOT NULL DEFAULT ''",
    "duplicate_of": "TEXT",
}
_ADDED_CALL_COLUMNS = {"purpose": "TEXT NOT NULL DEFAULT 'mutation'"}

def _row_to_program(row: sqlite3.Row) -> Program:
    values = {name: row[name] for name in _PROGRAM_FIELDS}
    values["valid"] = bool(values["valid"])
    values["metrics"] = json.loads(values["metrics"])
    return Program(**values)


def _row_to_call(row: sqlite3.Row) -> LLMCall:
    return LLMCall(**{name: row[name] for name in _CALL_FIELDS})


class Database:
    """SQLite archive of one run; safe to share between threads of one process."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: autocommit, so each statement is one transaction.
        self._conn = sqlite3.connect(
            str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("BEGIN")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                for table, added in (("programs", _ADDED_PROGRAM_COLUMNS),
                                     ("llm_calls", _ADDED_CALL_COLUMNS)):
                    have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
                    for name, kind in added.items():
                        if name not in have:
                            self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- plumbing ---------------------------------------------------------------

    def _write(self, sql: str, params: tuple | dict = ()) -> None:
        with self._lock:
            self._conn.execute(sql, params)

    def _read(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- programs ---------------------------------------------------------------

    def add_program(self, p: Program) -> None:
        """Insert one program; a duplicate id raises sqlite3.IntegrityError."""
        self.add_programs([p])

    def add_programs(self, programs: list[Program]) -> None:
        """Insert several programs in one transaction: all of them or, after a crash, none."""
        names = ", ".join(_PROGRAM_FIELDS)
        marks = ", ".join(f":{name}" for name in _PROGRAM_FIELDS)
        rows = []
        for p in programs:
            row = asdict(p)
            row["valid"] = int(p.valid)
            row["metrics"] = json.dumps(p.metrics, sort_keys=True)
            rows.append(row)
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(f"INSERT INTO programs ({names}) VALUES ({marks})", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def programs(self) -> list[Program]:
        """Every program, by generation then insertion."""
        sql = "SELECT * FROM programs ORDER BY generation, rowid"
        return [_row_to_program(r) for r in self._read(sql)]

    def completed_generations(self) -> set[int]:
        """Generation numbers >= 1 that have at least one non-migrant program."""
        rows = self._read(
            "SELECT DISTINCT generation FROM programs "
            "WHERE generation >= 1 AND patch_type != 'migrant'"
        )
        return {r[0] for r in rows}

    # -- LLM calls --------------------------------------------------------------

    def add_llm_call(self, call: LLMCall) -> None:
        """Record one model request."""
        names = ", ".join(_CALL_FIELDS)
        marks = ", ".join(f":{name}" for name in _CALL_FIELDS)
        self._write(f"INSERT INTO llm_calls ({names}) VALUES ({marks})", asdict(call))

    def llm_calls(self, generation: int | None = None) -> list[LLMCall]:
        """Recorded calls (optionally of one generation) in insertion order."""
        if generation is None:
            rows = self._read("SELECT * FROM llm_calls ORDER BY id")
        else:
            rows = self._read(
                "SELECT * FROM llm_calls WHERE generation = ? ORDER BY id", (generation,)
            )
        return [_row_to_call(r) for r in rows]

    def total_cost(self) -> float:
        """Sum of the cost of every recorded call."""
        return float(self._read("SELECT COALESCE(SUM(cost), 0) FROM llm_calls")[0][0])

    def cost_by_generation(self) -> dict[int, float]:
        """Total call cost per generation number."""
        rows = self._read("SELECT generation, SUM(cost) FROM llm_calls GROUP BY generation")
        return {r[0]: float(r[1]) for r in rows}

    def llm_usage(self) -> dict[str, dict]:
        """Per model: calls, failures (no reply), prompt/completion tokens and cost."""
        rows = self._read(
            "SELECT model, COUNT(*) AS calls, SUM(reply IS NULL) AS failures, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(cost) AS cost FROM llm_calls GROUP BY model ORDER BY model"
        )
        usage = [dict(zip(r.keys(), r, strict=True)) for r in rows]
        return {u.pop("model"): u for u in usage}

    # -- meta -------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under key (replacing any old one)."""
        self._write(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under key, or default."""
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default
