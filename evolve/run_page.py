"""The run page: results/<run>/index.html, one self-contained file to browse a run.

    python -m evolve.run_page results/RUN

It reads the run's database read-only (SQLite URI mode=ro: safe while the run goes on,
never creates or changes anything) and writes the page atomically. The page's HTML, CSS
and JavaScript are the data files in evolve/page/; the run's data is embedded in a
<script type="application/json"> block, so the file opens from file:// and makes no
request. Texts (code, prompts, replies, feedback) are stored once per distinct line and
each text as runs of line numbers (a child repeats most of its parent's lines, a prompt
the programs it shows), and the JSON is gzipped and base64-encoded; the page inflates it
with the browser's DecompressionStream. A 10,000-program run's page stays small.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import math
import sqlite3
import sys
import threading
import time
from pathlib import Path

from evolve.atomic import atomic_write

PAGE_DIR = Path(__file__).with_name("page")
REFRESH_S = 30  # while the run is live, the page reloads itself this often
_DATA_MARK = "/*RUN_DATA*/"
_SCRIPT_MARK = "/*RUN_SCRIPT*/"
_STYLE_MARK = "/*RUN_STYLE*/"

# Rows stored before outcomes were recorded: the outcome read from the stored error.
_ERROR_OUTCOMES = (
    ("duplicate of program", "duplicate"), ("unusable reply", "no_patch"),
    ("LLM call failed", "llm_error"), ("exceeded the watchdog", "timeout"),
    ("prompt too long", "prompt_too_long"), ("offline operator", "operator_failed"),
)  # fmt: skip


class PageError(Exception):
    """The run folder cannot be read (no database, not a run's database)."""


class _Lines:
    """Distinct lines of every text, and each text as [start, count, ...] runs into them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._index: dict[str, int] = {}

    def encode(self, text: str | None) -> list[int] | None:
        if text is None:
            return None
        runs: list[int] = []
        for line in text.split("\n"):
            i = self._index.get(line)
            if i is None:
                i = self._index[line] = len(self.lines)
                self.lines.append(line)
            if runs and runs[-2] + runs[-1] == i:
                runs[-1] += 1
            else:
                runs += [i, 1]
        return runs


def derived_outcome(row: dict) -> str:
    """The row's stored outcome, or for an older row the one its valid flag and error say."""
    if row.get("outcome"):
        return row["outcome"]
    if row["valid"]:
        return "valid"
    error = row.get("error") or ""
    return next((o for marker, o in _ERROR_OUTCOMES if marker in error), "invalid")


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    if not db_path.is_file():
        raise PageError(f"{db_path} not found: is {db_path.parent} a run folder?")
    # While a writer has the database open its -wal file exists, and a read-only
    # connection reads beside it. A closed run has none: a read-only connection would
    # create -wal and -shm files (and could not remove them), so it is read as immutable.
    live = db_path.with_name(db_path.name + "-wal").exists()
    flags = "mode=ro" if live else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?{flags}", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def read_run(db_path: Path, after_program: int = 0, after_call: int = 0) -> dict:
    """Programs (with their `rowid`) and LLM calls stored after the given rowid and call
    id, the number of programs, and the meta values, read in one read transaction."""
    conn = _connect_read_only(Path(db_path))
    try:
        conn.execute("BEGIN")  # one snapshot: rows written meanwhile are all in or all out
        try:
            programs = [dict(r) for r in conn.execute(
                "SELECT rowid, * FROM programs WHERE rowid > ? ORDER BY rowid", (after_program,))]
            count = conn.execute("SELECT COUNT(*) FROM programs").fetchone()[0]
            calls = [dict(r) for r in conn.execute(
                "SELECT * FROM llm_calls WHERE id > ? ORDER BY id", (after_call,))]
            meta = {r["key"]: json.loads(r["value"]) for r in conn.execute("SELECT * FROM meta")}
        except sqlite3.DatabaseError as exc:
            raise PageError(f"{db_path} is not a run's database: {exc}") from None
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()
    return {"programs": programs, "count": count, "calls": calls, "meta": meta}


def _number(value):
    """A JSON-safe number: NaN and infinities as {"$f": "NaN" | "Infinity" | "-Infinity"}."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$f": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    return value


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class RunEncoding:
    """A run's rows as the page's JSON, texts line-encoded (see `_Lines`). Rows are only
    ever added to a run, so `update` encodes only those stored since the last call: the
    loop rewrites the page of a long run without encoding it all again."""

    def __init__(self) -> None:
        self.lines = _Lines()
        self.metric_names: dict[str, int] = {}
        self.line_json: list[str] = []  # JSON of each of self.lines.lines
        self.programs: list[str] = []  # JSON of each program, in storage order
        self.calls: list[str] = []
        self.last_program = 0  # rowid of the last program encoded
        self.last_call = 0
        self.meta: dict = {}

    def update(self, db_path: Path) -> bool:
        """Encode the rows stored since the last update; False (and nothing changed) if
        the database holds fewer programs than encoded: another file, start again."""
        run = read_run(db_path, self.last_program, self.last_call)
        if run["count"] != len(self.programs) + len(run["programs"]):
            return False
        for row in run["programs"]:
            self.programs.append(_json(self._program(row)))
            self.last_program = row["rowid"]
        for row in run["calls"]:
            self.calls.append(_json(self._call(row)))
            self.last_call = row["id"]
        self.line_json += [_json(line) for line in self.lines.lines[len(self.line_json):]]
        self.meta = run["meta"]
        return True

    def _program(self, row: dict) -> dict:
        metrics = json.loads(row["metrics"] or "{}")
        names = self.metric_names
        encode = self.lines.encode
        return {
            "id": row["id"], "gen": row["generation"], "island": row["island"],
            "parent": row["parent_id"], "other": row["other_parent_id"],
            "patch": row["patch_type"], "model": row["model"], "valid": bool(row["valid"]),
            "score": _number(row["score"]), "outcome": derived_outcome(row),
            "metrics": [[names.setdefault(k, len(names)), _number(v)] for k, v in metrics.items()],
            "code": encode(row["code"]), "error": encode(row["error"]),
            "feedback": encode(row["feedback"]), "idea": row.get("idea") or "",
            "direction": row.get("direction") or "", "dup": row.get("duplicate_of"),
            "eval_s": _number(row["eval_seconds"]), "at": row["created_at"],
        }  # fmt: skip

    def _call(self, row: dict) -> dict:
        encode = self.lines.encode
        return {
            "gen": row["generation"], "model": row["model"],
            "temperature": _number(row["temperature"]), "system": encode(row["system"]),
            "user": encode(row["user"]), "reply": encode(row["reply"]),
            "error": encode(row["error"]), "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"], "cost": _number(row["cost"]),
            "latency_s": _number(row["latency_s"]), "attempts": row["attempts"],
            "at": row["created_at"],
        }  # fmt: skip

    def page_json(self, run_name: str, columns: tuple[str, ...] = (),
                  pareto: tuple[str, ...] = (), refresh_s: float = REFRESH_S) -> str:
        """The JSON of what the page shows."""
        state = self.meta.get("run_state") or {}
        head = _json({
            "run": run_name, "written_at": time.time(),
            "live": state.get("state") == "running", "stop_reason": state.get("stop_reason"),
            "elapsed_s": self.meta.get("elapsed_s"), "refresh_s": refresh_s,
            "columns": list(columns), "pareto": list(pareto),
            "metric_names": list(self.metric_names),
        })  # fmt: skip
        return (f'{head[:-1]},"lines":[{",".join(self.line_json)}],'
                f'"programs":[{",".join(self.programs)}],"calls":[{",".join(self.calls)}]}}')


_cached: tuple[tuple, RunEncoding] | None = None  # the last database's encoding, by file
_cache_lock = threading.Lock()


def _encoding(db_path: Path) -> RunEncoding:
    """The encoding of db_path brought up to date (reused from the last call on that file)."""
    global _cached
    info = db_path.stat() if db_path.is_file() else None
    key = (str(db_path.resolve()), info.st_dev, info.st_ino) if info else None
    if _cached is not None and _cached[0] == key and _cached[1].update(db_path):
        return _cached[1]
    encoding = RunEncoding()
    if not encoding.update(db_path):
        raise PageError(f"{db_path} changed while it was read")
    _cached = (key, encoding)
    return encoding


def embed_json(data) -> str:
    """`data` as JSON that nothing can end early inside a <script> element: <, >, & and
    the JavaScript line separators escaped (they only occur inside strings)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def embed_data(data_json: str) -> str:
    """The page's data block: {"encoding": "gzip+base64", "data": `data_json` gzipped and
    base64-encoded}, itself JSON escaped by `embed_json`."""
    packed = base64.b64encode(gzip.compress(data_json.encode(), compresslevel=6, mtime=0))
    return embed_json({"encoding": "gzip+base64", "data": packed.decode("ascii")})


def render_page(data_json: str) -> str:
    """The whole page: the template with its style, script and data filled in."""
    template = (PAGE_DIR / "run_page.html").read_text()
    parts = {_STYLE_MARK: (PAGE_DIR / "run_page.css").read_text(),
             _SCRIPT_MARK: (PAGE_DIR / "run_page.js").read_text(),
             _DATA_MARK: embed_data(data_json)}
    for mark, text in parts.items():  # each mark once; inserted text is never re-scanned
        head, sep, tail = template.partition(mark)
        if not sep:
            raise RuntimeError(f"the page template has no {mark}")
        template = head + text + tail
    return template


def write_run_page(db_path: Path, run_dir: Path, columns: tuple[str, ...] = (),
                   pareto: tuple[str, ...] = (), refresh_s: float = REFRESH_S) -> Path:
    """Write run_dir/index.html atomically from the database at db_path; its path."""
    run_dir = Path(run_dir)
    with _cache_lock:
        data_json = _encoding(Path(db_path)).page_json(run_dir.name, columns, pareto, refresh_s)
    page = render_page(data_json)
    path = run_dir / "index.html"
    atomic_write(path, lambda f: f.write(page))
    return path


def _task_axes(run_dir: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The report columns and Pareto axes of the run's saved config.yaml."""
    from evolve.config import ConfigError, load_yaml, run_config_from_dict

    saved = run_dir / "config.yaml"
    try:
        spec = run_config_from_dict(load_yaml(saved)).task.engine
    except (ConfigError, OSError, ValueError) as exc:
        print(f"warning: {saved}: {exc}; the page shows no report columns or Pareto view",
              file=sys.stderr)
        return (), ()
    return spec.report_columns, spec.pareto


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evolve.run_page",
        description="Write RUN_DIR/index.html, the run page, from RUN_DIR/evolution.db "
                    "(read-only; safe while the run goes on).")
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. results/RUN")
    parser.add_argument("--refresh", type=float, default=REFRESH_S, metavar="SECONDS",
                        help=f"reload period of the page while the run is live "
                             f"(default {REFRESH_S})")
    args = parser.parse_args(argv)
    if args.refresh <= 0:
        parser.error(f"--refresh {args.refresh:g}: must be > 0 seconds")
    columns, pareto = _task_axes(args.run_dir)
    try:
        path = write_run_page(args.run_dir / "evolution.db", args.run_dir, columns, pareto,
                              args.refresh)
    except PageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
