"""The run page (evolve/run_page.py, evolve/page/) in a real browser: Debian's headless
Chromium (/usr/bin/chromium) driven by Playwright, on a run made here with the scripted
OpenAI-compatible server, and on small databases written directly (older rows, NaN and
infinite metrics, resets, a live run).

Every page is opened from file://; each test asserts that no request other than the page
itself was made and that the console shows no error.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from evo_helpers import (
    KEY_ENV,
    MALFORMED_DIFF_REPLY,
    NO_CODE_REPLY,
    NO_SPEED,
    PROJECT_ROOT,
    diff_reply,
    llm_calls,
    model_override,
    programs,
    query,
    run_in_process,
)
from llm_server import Reply, ScriptedLLMServer
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from evolve import reports
from evolve.database import Database
from evolve.records import LLMCall, Program
from evolve.reports import write_reports
from evolve.run_page import RunEncoding, embed_json, write_run_page

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
# Would set window.__pwned and the title if it ever ran as HTML or script.
PAYLOAD = ('<script>window.__pwned = 1; document.title = "pwned"</script>'
           '<img src=x onerror="window.__pwned = 2; document.title = \'pwned\'">')
GENERATIONS = 7


# ---------------------------------------------------------------- fixtures


def _browser_leftovers() -> set[str]:
    root = Path(tempfile.gettempdir())
    return {p.name for p in root.iterdir()
            if p.name.startswith(("playwright", ".org.chromium", "chromium"))}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium from Debian's package; its profile and temp files in a tmp folder."""
    before = _browser_leftovers()
    scratch = tmp_path_factory.mktemp("browser-tmp")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)  # the driver and the browser it starts inherit it
    try:
        pw = sync_playwright().start()
    finally:
        if old is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
    yield chromium
    chromium.close()
    pw.stop()
    assert _browser_leftovers() - before == set()


class Tab:
    """A fresh browser page that records console errors and every request it makes."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.context.route("**/*", lambda route: route.continue_()
                           if route.request.url.startswith("file:") else route.abort())
        self.file = None

    def open(self, path: Path, fragment: str = "") -> None:
        self.file = path.resolve().as_uri()
        self.page.goto(self.file + ("#" + fragment if fragment else ""))
        self.page.wait_for_selector("body[data-ready='1']")

    def show(self, fragment: str) -> None:
        """Change the view as a click on a link would."""
        self.page.evaluate("(h) => { location.hash = h; }", fragment)

    def wait_until(self, expression: str, timeout: float = 60.0) -> None:
        """Poll a JavaScript expression until it is true (the page's CSP forbids the eval
        behind Playwright's wait_for_function); a reload in between is retried."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.page.evaluate(expression):
                    return
            except PlaywrightError:  # the page was navigating
                pass
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(0.05)

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def check_clean(self) -> None:
        assert self.errors == [], self.errors
        assert {url.split("#")[0] for url in self.requests} <= {self.file}


@pytest.fixture
def tab(browser):
    opened = Tab(browser)
    yield opened
    opened.check_clean()
    opened.context.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real 7-generation run on 2 islands: valid children, a duplicate, a reply holding
    script-injection payloads, two unusable replies and a failed LLM call."""
    plan = [diff_reply(101), diff_reply(101),  # the same child on both islands: a duplicate
            f"Idea: {PAYLOAD}\n\n" + diff_reply(103, global_policy=True),  # better: migrates
            NO_CODE_REPLY, MALFORMED_DIFF_REPLY,
            *[Reply.server_error(500, "boom")] * 3,  # three attempts, no reply
            diff_reply(107)]

    def responder(request):
        return plan.pop(0)

    root = tmp_path_factory.mktemp("run-page")
    with pytest.MonkeyPatch.context() as mp, ScriptedLLMServer(responder) as server:
        mp.setenv(KEY_ENV, "sk-test")
        reason, folder = run_in_process(root, "page", [
            f"evolution.generations={GENERATIONS}", "evolution.num_islands=2",
            "evolution.max_in_flight=1", "evolution.migration_interval=3",
            "evolution.stagnation_patience=0", "evolution.patch_types={diff: 1.0}",
            model_override(server, price_in_per_m=3.0, price_out_per_m=15.0), *NO_SPEED])
    assert reason == "finished" and plan == []
    return folder


def embedded_data(page: Path) -> dict:
    """The run data a page holds (gzipped JSON in base64 in its data block)."""
    block = page.read_text().split('<script type="application/json" id="run-data">')[1]
    wrapper = json.loads(block.split("</script>")[0])
    assert wrapper["encoding"] == "gzip+base64"
    return json.loads(gzip.decompress(base64.b64decode(wrapper["data"])))


def decoded(data: dict) -> dict:
    """`data` with its texts and metric names spelled out (as the page decodes them)."""
    def text(runs):
        if runs is None:
            return None
        pairs = zip(runs[::2], runs[1::2], strict=True)
        return "\n".join(data["lines"][start + k] for start, count in pairs
                         for k in range(count))

    out = {k: v for k, v in data.items() if k not in ("lines", "metric_names", "written_at")}
    out["programs"] = [{**p, **{k: text(p[k]) for k in ("code", "error", "feedback")},
                        "metrics": {data["metric_names"][k]: v for k, v in p["metrics"]}}
                       for p in data["programs"]]
    out["calls"] = [{**c, **{k: text(c[k]) for k in ("system", "user", "reply", "error")}}
                    for c in data["calls"]]
    return out


def by_id(run_dir: Path) -> dict[str, dict]:
    return {p["id"]: p for p in programs(run_dir)}


# ---------------------------------------------------------------- the real run


def test_the_run_writes_its_page_and_lists_every_program(run_dir, tab):
    rows = by_id(run_dir)
    outcomes = {g: rows[f"g{g:06d}"]["outcome"] for g in range(1, GENERATIONS + 1)}
    assert outcomes == {1: "valid", 2: "duplicate", 3: "valid", 4: "no_patch",
                        5: "no_patch", 6: "llm_error", 7: "valid"}
    assert any(p["patch_type"] == "migrant" and p["generation"] > 0 for p in rows.values())
    state = query(run_dir / "evolution.db", "SELECT value FROM meta WHERE key = 'run_state'")
    assert json.loads(state[0]["value"]) == {"state": "ended", "stop_reason": "finished"}

    tab.open(run_dir / "index.html", "view=table")  # written by the run's final reports
    tab.page.wait_for_selector("#table-body .vrow")
    listed = tab.page.eval_on_selector_all("#table-body .vrow",
                                           "rows => rows.map(r => r.dataset.id)")
    assert sorted(listed) == sorted(rows)
    assert tab.text("#table-count") == f"{len(rows)} of {len(rows)} programs"
    assert tab.text("#run-status") == "ended: finished"


def test_program_view_shows_diff_metrics_prompt_and_reply(run_dir, tab):
    rows = by_id(run_dir)
    child = rows["g000001"]
    call = next(c for c in llm_calls(run_dir) if c["generation"] == 1)
    tab.open(run_dir / "index.html", "program=g000001")
    assert tab.text("#program-title").startswith("Program g000001")
    added = tab.page.eval_on_selector_all("#program-diff .add", "xs => xs.map(x => x.textContent)")
    assert added == ["+     _unused = 101"]
    assert tab.page.query_selector_all("#program-diff .del") == []
    assert "from seed to g000001: 1 lines added, 0 removed" in tab.text("#program-diff")
    assert tab.page.text_content("#program-reply") == call["reply"]
    calls = tab.text("#program-calls")
    for fact in ("m1", f"{call['prompt_tokens']} prompt + {call['completion_tokens']} completion",
                 "attempts"):
        assert fact in calls
    user_prompt = tab.page.eval_on_selector_all("#program-calls details pre",
                                                "xs => xs.map(x => x.textContent)")
    assert user_prompt == [call["system"], call["user"]]
    assert tab.page.text_content("#program-code pre") == child["code"]
    metrics = tab.text("#program-metrics")
    assert "combined_score" in metrics and "change" in metrics

    # against another program picked from the list: the diff follows and the URL keeps it
    tab.page.select_option("#compare-with", "g000007")
    tab.wait_until("location.hash.includes('vs=g000007')")
    assert "from g000007 to g000001" in tab.text("#program-diff")
    removed = tab.page.eval_on_selector_all("#program-diff .del",
                                            "xs => xs.map(x => x.textContent)")
    assert "-     _unused = 107" in removed
    tab.page.reload()
    tab.page.wait_for_selector("#program-diff")
    assert "from g000007 to g000001" in tab.text("#program-diff")


def test_reply_with_script_injection_stays_text(run_dir, tab):
    tab.open(run_dir / "index.html", "program=g000003")
    reply = tab.page.text_content("#program-reply")
    assert PAYLOAD in reply and tab.page.is_visible("#program-reply")
    assert tab.page.evaluate("window.__pwned") is None
    assert "pwned" not in tab.page.title()
    assert tab.page.evaluate("document.querySelectorAll('img').length") == 0
    assert tab.page.evaluate("document.scripts.length") == 2  # the page's own: data, code
    # the search goes through replies and ideas: only that program and its migrant copies
    # (which keep its idea) hold the payload
    holders = sorted(i for i, row in by_id(run_dir).items() if "onerror" in row["idea"])
    assert "g000003" in holders
    tab.show("view=table&q=onerror")
    tab.wait_until("document.querySelector('#table-count').textContent"
                   f".startsWith('{len(holders)} of')")
    assert sorted(tab.page.eval_on_selector_all(
        "#table-body .vrow", "rs => rs.map(r => r.dataset.id)")) == holders
    assert tab.page.evaluate("window.__pwned") is None


def test_failures_show_their_stored_reason(run_dir, tab):
    rows = by_id(run_dir)
    tab.open(run_dir / "index.html", "program=g000005")
    assert tab.page.text_content("#program-error") == rows["g000005"]["error"]
    assert "closest lines" in tab.text("#program-error")
    assert "No code" in tab.text("main")
    tab.show("program=g000002")
    tab.page.wait_for_selector("#program-title >> text=g000002")
    assert "duplicate of program g000001" in tab.text("#program-error")
    tab.show("program=g000006")
    tab.page.wait_for_selector("#program-title >> text=g000006")
    assert tab.text("#program-error").startswith("LLM call failed")
    calls = tab.text("#program-calls")
    assert "No reply." in calls and "boom" in calls


def test_table_filters_sorts_and_keeps_its_state(run_dir, tab):
    rows = by_id(run_dir)
    tab.open(run_dir / "index.html", "view=table")
    tab.page.select_option("select[name=outcome]", "no_patch")
    ids = lambda: tab.page.eval_on_selector_all(  # noqa: E731
        "#table-body .vrow", "rs => rs.map(r => r.dataset.id)")
    assert sorted(ids()) == ["g000004", "g000005"]
    tab.page.select_option("select[name=outcome]", "")
    tab.page.click(".vhead span:text-is('score')")
    scored = sorted((p for p in rows.values() if p["score"] is not None),
                    key=lambda p: -p["score"])
    assert ids()[0] in {p["id"] for p in scored if p["score"] == scored[0]["score"]}
    unscored = [i for i in ids() if rows[i]["score"] is None]
    assert ids()[-len(unscored):] == unscored  # missing scores last
    tab.page.select_option("select[name=island]", "1")
    assert {rows[i]["island"] for i in ids()} == {1}
    assert "sort=score" in tab.page.evaluate("location.hash")
    before = ids()
    tab.page.reload()
    tab.page.wait_for_selector("#table-body .vrow")
    assert ids() == before
    assert tab.page.input_value("select[name=island]") == "1"


def test_lineage_marks_migrants_and_opens_a_node(run_dir, tab):
    rows = by_id(run_dir)
    migrant = next(p for p in rows.values() if p["patch_type"] == "migrant" and p["generation"])
    tab.open(run_dir / "index.html", f"view=lineage&island={migrant['island']}")
    nodes = tab.page.eval_on_selector_all("#lineage-svg .node", "ns => ns.map(n => n.dataset.id)")
    assert sorted(nodes) == sorted(i for i, p in rows.items()
                                   if p["island"] == migrant["island"]
                                   and p["patch_type"] != "reference")
    assert tab.page.text_content(f"#lineage-svg .node[data-id='{migrant['id']}'] title") \
        .startswith(f"{migrant['id']} · migrant")
    failed = next(i for i in nodes if not rows[i]["valid"] and rows[i]["generation"] > 0)
    tab.page.click(f"#lineage-svg .node[data-id='{failed}']")
    tab.page.wait_for_selector(f"#program-title >> text={failed}")
    assert tab.page.evaluate("location.hash") == f"#program={failed}"


def test_overview_and_pareto_agree_with_the_reports(run_dir, tab):
    tab.open(run_dir / "index.html")
    outcomes = tab.text("#outcomes")
    assert "What became of the 7 proposals" in outcomes
    for line in ("valid\n3 (43%)", "no_patch\n2 (29%)", "duplicate\n1 (14%)", "llm_error\n1 (14%)"):
        assert line in outcomes
    llm = pd.read_csv(run_dir / "llm.csv")
    model_row = tab.page.eval_on_selector_all(
        "#models tr:nth-child(2) td", "ts => ts.map(t => t.textContent)")
    assert model_row[:5] == ["m1", str(llm["calls"][0]), str(llm["failures"][0]),
                             str(llm["prompt_tokens"][0]), str(llm["completion_tokens"][0])]
    assert model_row[-1] == str(llm["improvements"][0])
    assert tab.page.query_selector_all("#chart-score circle.pt")
    assert tab.page.query_selector_all("#chart-cost path")

    tab.show("view=pareto")
    tab.page.wait_for_selector("#pareto-front")
    front = tab.page.eval_on_selector_all("#pareto-front tr td:first-child",
                                          "ts => ts.map(t => t.textContent)")
    assert sorted(front) == sorted(pd.read_csv(run_dir / "pareto.csv")["id"])


# ---------------------------------------------------------------- written databases


def _odd_run(folder: Path, live: bool) -> Path:
    """Three islands: NaN and infinite metrics, an older row with no stored outcome, a ring
    migrant and a reset, texts that try to close the data block."""
    db = Database(folder / "evolution.db")
    base = {"combined_score": 0.5}
    db.add_programs([
        Program(id="seed", code="x = 1\n", generation=0, island=0, patch_type="initial",
                valid=True, score=0.5, metrics=base, outcome="valid"),
        *[Program(id=f"seed-{i}", code="x = 1\n", generation=0, island=i, parent_id="seed",
                  patch_type="migrant", valid=True, score=0.5, metrics=base) for i in (1, 2)],
        Program(id="g000001", code="x = 2  # </script><script>window.__pwned = 3</script>\n",
                generation=1, island=0, parent_id="seed", patch_type="diff", model="m",
                valid=True, score=0.6, outcome="valid", feedback="line\u2028separator & <b>",
                metrics={"combined_score": 0.6, "odd_nan": math.nan, "odd_inf": math.inf,
                         "odd_ninf": -math.inf}),
        Program(id="g000002", code="x = 2  # </script><script>window.__pwned = 3</script>\n",
                generation=2, island=1, parent_id="seed-1", patch_type="diff", model="m",
                error="duplicate of program g000001: identical code is not evaluated again"),
        Program(id="m000003-0", code="x = 2\n", generation=3, island=1, parent_id="g000001",
                patch_type="migrant", valid=True, score=0.6, metrics=base),
        Program(id="m000003-1", code="x = 2\n", generation=3, island=2, parent_id="g000001",
                patch_type="migrant", valid=True, score=0.6, metrics=base),
    ])
    db.add_llm_call(LLMCall(generation=1, model="m", temperature=0.5, system="s", user="u",
                            reply="<b>bold?</b>", cost=0.01))
    db.set_meta("run_state", {"state": "running"} if live else
                {"state": "ended", "stop_reason": "wall-time cap of 5 s reached"})
    db.close()
    return folder


def test_data_block_cannot_be_closed_early():
    text = embed_json({"a": "</script><!-- & \u2028\u2029 >"})
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == {"a": "</script><!-- & \u2028\u2029 >"}


def test_non_finite_values_old_rows_and_resets(tmp_path, tab):
    folder = _odd_run(tmp_path / "odd", live=False)
    page = write_run_page(folder / "evolution.db", folder, ("odd_nan",),
                          ("combined_score", "odd_inf"))
    tab.open(page, "program=g000001")
    values = tab.page.eval_on_selector_all(
        "#program-metrics tr",
        "rs => rs.slice(1).map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    assert dict(values) == {"combined_score": "0.6", "odd_nan": "NaN", "odd_inf": "Infinity",
                            "odd_ninf": "-Infinity"}
    assert tab.page.text_content("#program-code pre").startswith("x = 2  # </script><script>")
    assert tab.page.text_content("#program-feedback") == "line\u2028separator & <b>"
    assert tab.page.text_content("#program-reply") == "<b>bold?</b>"
    assert tab.page.evaluate("window.__pwned") is None
    assert tab.text("#run-status") == "ended: wall-time cap of 5 s reached"

    tab.show("program=g000002")  # stored before outcomes: derived from its error
    tab.page.wait_for_selector("#program-title >> text=g000002")
    assert "duplicate" in tab.text("#program-title")
    tab.show("view=table&sort=m:odd_nan&dir=desc")
    tab.page.wait_for_selector(".vhead")
    cells = tab.page.eval_on_selector_all("#table-body .vrow[data-id='g000001'] span",
                                          "ss => ss.map(s => s.textContent)")
    assert "NaN" in cells
    tab.show("view=lineage&island=1")
    tab.page.wait_for_selector("#lineage-svg")
    assert " · migrant" in tab.page.text_content("#lineage-svg .node[data-id='m000003-0'] title")
    tab.show("view=lineage&island=2")  # island 2's ring neighbour is 1: a copy from 0 is a reset
    tab.page.wait_for_selector("#lineage-svg .node[data-id='m000003-1']")
    assert " · reset" in tab.page.text_content("#lineage-svg .node[data-id='m000003-1'] title")


def test_live_run_reloads_and_keeps_the_view(tmp_path, tab):
    folder = _odd_run(tmp_path / "live", live=True)
    page = write_run_page(folder / "evolution.db", folder, refresh_s=0.5)
    tab.open(page, "program=g000001&vs=seed-2")
    assert tab.text("#run-status") == "live: reloads every 0.5 s"
    tab.page.evaluate("window.__before_reload = 1")
    tab.wait_until("window.__before_reload === undefined && document.body.dataset.ready === '1'")
    assert tab.page.evaluate("location.hash") == "#program=g000001&vs=seed-2"
    assert "from seed-2 to g000001" in tab.text("#program-diff")


# ---------------------------------------------------------------- command and reports hook


def _files(folder: Path) -> dict[str, bytes]:
    """The folder's files but the page and the WAL index (-shm: every reader marks in it)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "index.html" and not p.name.endswith("-shm")}


def _page_command(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolve.run_page", str(folder)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_command_reads_a_live_database_read_only(tmp_path):
    folder = tmp_path / "cmd"
    db = Database(folder / "evolution.db")  # a writer holds the database open (WAL)
    db.add_program(Program(id="seed", code="x = 1\n", generation=0, island=0, valid=True,
                           score=1.0, metrics={"combined_score": 1.0}, outcome="valid"))
    before = _files(folder)
    assert "evolution.db-wal" in before
    done = _page_command(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(folder / "index.html")
    assert (folder / "index.html").read_text().startswith("<!DOCTYPE html>")
    assert _files(folder) == before  # nothing else written, the database untouched
    assert "config.yaml" in done.stderr  # no saved config: said, and the page still written
    assert [p["id"] for p in embedded_data(folder / "index.html")["programs"]] == ["seed"]
    db.add_program(Program(id="g000001", code="x = 2\n", generation=1, island=0))
    db.close()

    closed = {p.name for p in folder.iterdir()}  # a finished run: no WAL files left
    assert closed == {"evolution.db", "index.html"}
    done = _page_command(folder)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in folder.iterdir()} == closed
    assert [p["id"] for p in embedded_data(folder / "index.html")["programs"]] \
        == ["seed", "g000001"]


def test_command_errors_exit_2(tmp_path):
    for args, message in (([str(tmp_path / "nothing")], "not found"),
                          ([str(tmp_path), "--refresh", "0"], "must be > 0")):
        done = subprocess.run([sys.executable, "-m", "evolve.run_page", *args], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_rewrites_encode_only_new_rows_and_match_a_fresh_page(tmp_path):
    folder = _odd_run(tmp_path / "again", live=True)
    db = Database(folder / "evolution.db")
    page = write_run_page(folder / "evolution.db", folder)
    first = embedded_data(page)
    db.add_program(Program(id="g000004", code="x = 3\ny = 4\n", generation=4, island=0,
                           parent_id="g000001", valid=True, score=0.7,
                           metrics={"combined_score": 0.7, "new_metric": 1}, outcome="valid"))
    db.add_llm_call(LLMCall(generation=4, model="m", temperature=0.5, system="s",
                            user="u\nnew line", reply="x = 3\ny = 4"))
    db.set_meta("run_state", {"state": "ended", "stop_reason": "finished"})
    again = embedded_data(write_run_page(folder / "evolution.db", folder))
    fresh = RunEncoding()
    assert fresh.update(folder / "evolution.db")
    expected = decoded(json.loads(fresh.page_json("again")))
    assert decoded(again) == expected and decoded(first) != expected
    assert expected["programs"][-1]["code"] == "x = 3\ny = 4\n"
    assert expected["programs"][-1]["metrics"] == {"combined_score": 0.7, "new_metric": 1}
    assert expected["calls"][-1]["user"] == "u\nnew line" and not expected["live"]
    db.close()

    (folder / "evolution.db").unlink()  # another run's database at the same path
    with Database(folder / "evolution.db") as other:
        other.add_program(Program(id="seed", code="z = 0\n", generation=0, island=0))
    replaced = embedded_data(write_run_page(folder / "evolution.db", folder))
    assert [p["id"] for p in replaced["programs"]] == ["seed"]
    assert replaced["lines"] == ["z = 0", ""] and replaced["calls"] == []


def test_reports_write_the_page_and_survive_its_failure(tmp_path, monkeypatch, caplog):
    folder = _odd_run(tmp_path / "rep", live=False)
    with Database(folder / "evolution.db") as db:
        write_reports(db, folder)
        shown = [p["id"] for p in embedded_data(folder / "index.html")["programs"]]
        assert shown == [p.id for p in db.programs()]
        (folder / "index.html").unlink()
        (folder / "leaderboard.csv").unlink()

        def broken(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(reports, "write_run_page", broken)
        write_reports(db, folder)
    assert (folder / "leaderboard.csv").is_file() and not (folder / "index.html").exists()
    assert "writing the run page" in caplog.text and "disk full" in caplog.text
