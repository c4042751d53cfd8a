"""The web UI in a real browser: Debian's headless Chromium (tests/browser.py) against a live
``glassforge serve`` app on a loopback port (uvicorn in a thread, the embedded model, fp32).

Every test opens its own page, fails on any console error or uncaught exception, and saves a
screenshot of what it looked at under tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest

from browser import artifact, chromium, open_page, require_chromium
from live_server import live_server

PROMPT = "a red circle on a blue background"
DESKTOP = (1280, 800)
PHONE = (390, 844)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_chromium()
    with (
        live_server(tmp_path_factory.mktemp("web")) as srv,
        httpx.Client(base_url=srv.base + "/", timeout=300) as http,
    ):
        yield SimpleNamespace(base=srv.base + "/", http=http)


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def ui(browser, server, hash_: str = "", size=DESKTOP):
    """The web UI at ``#/hash_``, started (its lists loaded, every page initialised)."""
    w = open_page(browser, server.base + hash_, width=size[0], height=size[1])
    w.page.wait_for_selector("body[data-ready='1']")
    return w


def shot(page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    path = artifact(f"webui-{name}.png")
    page.screenshot(path=str(path), full_page=True)
    print(path)


def clean(w) -> None:
    """No console error, no uncaught exception, nothing fetched from anywhere but the server."""
    assert w.errors == [], w.errors
    base = w.page.url.split("#")[0]
    assert [u for u in w.remote_requests() if not u.startswith(base)] == []


def wait_text(page, selector: str, pattern: str, timeout: float = 120_000) -> str:
    """Wait until the element's text matches the regular expression; returns the text."""
    page.wait_for_function(
        "([sel, re]) => { const e = document.querySelector(sel); return e && new RegExp(re).test(e.textContent); }",
        arg=[selector, pattern],
        timeout=timeout,
    )
    return page.text_content(selector)


@pytest.fixture(scope="module")
def finished(browser, server):
    """An explain job made through the form with Ctrl+Enter: (job id, the page's infotext)."""
    w = ui(browser, server, "#/generate")
    page = w.page
    page.fill("#g-prompt", PROMPT)
    wait_text(page, "#g-prompt-count", r"^7/75$")  # A1111's token counter for the prompt
    page.fill("#g-steps", "6")
    page.fill("#g-seed", "77")
    assert page.is_checked("#g-explain")
    page.press("#g-prompt", "Control+Enter")
    wait_text(page, "#g-status", r"Done in")
    page.wait_for_selector("#g-images img")
    page.wait_for_function("document.querySelector('#g-images img').naturalWidth === 32")
    infotext = page.text_content("#g-infotext")
    assert page.locator("#g-strip figure").count() == 6  # one predicted x0 per step
    shot(page, "generate")
    page.fill("#g-prompt", "something else")
    page.fill("#g-seed", "-1")
    page.click("#g-send")  # the job's parameters, with the seed it used, back in the form
    assert (page.input_value("#g-prompt"), page.input_value("#g-seed")) == (PROMPT, "77")
    clean(w)
    job_id = json.loads(page.evaluate("localStorage.getItem('glassforge.lastJob')"))
    page.close()
    return job_id, infotext


def test_generate_shows_the_image_and_its_infotext(server, finished):
    job_id, infotext = finished
    job = server.http.get(f"api/v1/jobs/{job_id}").json()
    assert job["status"] == "done" and job["kind"] == "explain"
    assert infotext == job["infotexts"][0]
    assert (
        infotext.startswith(PROMPT + "\nSteps: 6, Sampler: DPM++ 2M") and "Seed: 77, Size: 32x32" in infotext
    )


def test_interrupt_a_job(browser, server):
    w = ui(browser, server, "#/generate")
    page = w.page
    page.fill("#g-prompt", "a green square")
    page.fill("#g-steps", "1000")
    page.uncheck("#g-explain")
    page.click("#g-generate")
    wait_text(page, "#g-status", r"Step ([3-9]|\d\d+)/1000 · [\d.]+ s/it · ETA")
    page.wait_for_selector("#g-strip figure")  # live previews arrive while it runs
    page.click("#g-interrupt")
    status = wait_text(page, "#g-status", r"Interrupted after \d+ steps")
    steps = int(status.split("after ")[1].split()[0])
    assert 3 <= steps < 1000
    page.wait_for_selector("#g-images img")
    assert "Steps: 1000" in page.text_content("#g-infotext")
    assert page.is_disabled("#g-interrupt")
    shot(page, "generate-interrupted")
    clean(w)


def test_explain_slider_changes_the_step_and_a_word_shows_its_map(browser, server, finished):
    job_id, _ = finished
    w = ui(browser, server, f"#/explain/{job_id}")
    page = w.page
    wait_text(page, "#x-status", r"6 steps recorded")
    slider = page.locator("#x-slider")
    assert slider.get_attribute("max") == "5"
    slider.focus()
    page.keyboard.press("Home")
    first = (page.text_content("#x-now"), page.text_content("#x-formula"), page.get_attribute("#x-x0", "src"))
    assert first[0].startswith("Step 1/6 · σ = 14.61")
    page.keyboard.press("ArrowRight")
    second = (
        page.text_content("#x-now"),
        page.text_content("#x-formula"),
        page.get_attribute("#x-x0", "src"),
    )
    assert second[0].startswith("Step 2/6")
    assert first[1] != second[1] and first[2] != second[2]  # this step's numbers, this step's picture
    trace = server.http.get(f"api/v1/jobs/{job_id}/trace.json").json()
    sigma = trace["batches"][0]["steps"][1]["sigma"]
    assert f"{sigma:.6g}" in second[1]
    words = page.locator("#x-words button")
    assert words.all_text_contents() == [*PROMPT.split(), "EOS"]
    page.click("#x-words button:text-is('circle')")
    assert page.get_attribute("#x-words button:text-is('circle')", "aria-pressed") == "true"
    assert page.is_visible("#x-heat")
    circle = page.get_attribute("#x-heat", "src")
    assert circle.startswith("data:image/png;base64,") and "“circle”" in page.text_content("#x-att-info")
    page.click("#x-words button:text-is('blue')")
    assert page.get_attribute("#x-heat", "src") != circle and "“blue”" in page.text_content("#x-att-info")
    assert page.locator("#x-pseudo svg .marker").count() == 2 and page.locator("#x-schedule svg").count() == 1
    assert "49406" in page.text_content("#x-tokens")  # BOS in the tokenization table
    page.click("#x-report-show")
    page.frame_locator("#x-report").locator("h1").wait_for()
    shot(page, "explain")
    clean(w)


def test_explain_follows_a_running_job(browser, server):
    job = server.http.post("api/v1/explain", json={"prompt": "a yellow star", "steps": 400, "seed": 3}).json()
    w = ui(browser, server, f"#/explain/{job['id']}")
    page = w.page
    wait_text(page, "#x-status", r"Recording: ([3-9]|\d\d+) of 400 steps")
    assert page.get_attribute("#x-slider", "max") == "399"  # the whole run; the recorded part is shown
    first = page.text_content("#x-now")
    page.wait_for_function(
        f"document.querySelector('#x-now').textContent !== {json.dumps(first)}"
    )  # it follows
    assert page.is_visible("#x-heat") and page.locator("#x-words button").all_text_contents() == [
        "a",
        "yellow",
        "star",
        "EOS",
    ]
    shot(page, "explain-live")
    server.http.post(f"api/v1/jobs/{job['id']}/interrupt")
    status = wait_text(page, "#x-status", r"steps recorded \(job interrupted\)")
    recorded = int(status.split()[0])
    assert 3 <= recorded < 400 and page.text_content("#x-now").startswith(f"Step {recorded}/400")
    clean(w)


def test_history_find_rate_reload(browser, server, finished):
    job_id, _ = finished
    w = ui(browser, server, "#/history")
    page = w.page
    page.fill("#h-q", "red circle")
    page.click("#h-form button[type=submit]")
    wait_text(page, "#h-count", r"^1 of 1 jobs$")  # the green square is not a red circle
    card = page.locator(f"#h-grid .card[data-id='{job_id}']")
    card.click()
    page.wait_for_selector("#h-dialog[open]")
    assert page.text_content("#h-d-title") == PROMPT
    page.fill("#h-d-note", "crisp edges")
    page.click("#h-d-up")
    page.wait_for_selector("#h-d-up[aria-pressed='true']")
    card.locator(".badge.up").wait_for()
    shot(page, "history")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#h-q", PROMPT)
    page.click("#h-form button[type=submit]")
    page.locator(f"#h-grid .card[data-id='{job_id}'] .badge.up").wait_for()
    page.click(f"#h-grid .card[data-id='{job_id}']")
    page.wait_for_selector("#h-d-up[aria-pressed='true']")
    assert (
        page.get_attribute("#h-d-down", "aria-pressed") == "false"
        and page.input_value("#h-d-note") == "crisp edges"
    )
    row = server.http.get(f"api/v1/jobs/{job_id}").json()
    assert (row["rating"], row["note"]) == (1, "crisp edges")
    page.click("#h-d-again")  # the same parameters and seed: the Generate page follows the new job
    page.wait_for_url("**/#/generate")
    wait_text(page, "#g-status", r"Done in")
    again = json.loads(page.evaluate("localStorage.getItem('glassforge.lastJob')"))
    assert again != job_id and page.input_value("#g-seed") == "77"
    png = server.http.get(f"api/v1/jobs/{again}/images/0").content
    assert png == server.http.get(f"api/v1/jobs/{job_id}/images/0").content
    clean(w)


def test_toy_world_animates(browser, server):
    w = ui(browser, server, "#/toy")
    page = w.page
    wait_text(page, "#t-known", r"200 particles")
    page.wait_for_function("document.querySelector('#t-formula').textContent.includes('σ')")
    before = page.evaluate("document.querySelector('#t-canvas').toDataURL()")
    page.wait_for_timeout(900)
    after = page.evaluate("document.querySelector('#t-canvas').toDataURL()")
    assert before != after  # the particles moved
    step = page.input_value("#t-slider")
    page.wait_for_function(f"document.querySelector('#t-slider').value !== '{step}'")
    page.click("#t-play")  # pause: the picture stops changing
    paused = page.evaluate("document.querySelector('#t-canvas').toDataURL()")
    page.wait_for_timeout(400)
    assert page.evaluate("document.querySelector('#t-canvas').toDataURL()") == paused
    shot(page, "toy")
    clean(w)


def test_workflow_shows_the_jobs_graph(browser, server, finished):
    job_id, _ = finished
    w = ui(browser, server, f"#/workflow/{job_id}")
    page = w.page
    page.wait_for_selector("#w-graph svg g.node")
    nodes = page.locator("#w-graph g.node")
    assert nodes.count() == 8 and page.locator("#w-graph g.node.done").count() == 8
    assert "seed 77" in page.text_content("#w-graph g.node[data-id='7']")
    assert page.get_attribute("#w-editor", "href") == f"/comfy/?glassforge_job={job_id}"
    assert page.get_attribute("#w-download", "href").startswith("blob:")
    shot(page, "workflow")
    clean(w)


def test_every_control_has_a_label_and_japanese_works(browser, server):
    w = ui(browser, server, "#/generate")
    page = w.page
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')].filter((e) => {
            if (e.getAttribute('aria-label') || (e.id && document.querySelector(`label[for="${e.id}"]`))) return false;
            return !(e.tagName === 'BUTTON' && e.textContent.trim());
        }).map((e) => e.id || e.outerHTML.slice(0, 60))"""
    )
    assert unlabeled == []
    page.select_option("#lang", "ja")
    assert page.text_content("#nav a[data-page='generate']") == "生成"
    assert page.text_content("#g-generate") == "生成" and page.get_attribute("html", "lang") == "ja"
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.text_content("#nav a[data-page='history']") == "履歴"  # the choice is kept
    page.goto(server.base + "#/toy")
    wait_text(page, "#t-known", r"粒子 200 個")
    shot(page, "toy-ja")
    page.select_option("#lang", "en")
    clean(w)


@pytest.mark.parametrize("page_name", ["generate", "explain", "toy", "history", "workflow"])
def test_pages_fit_a_phone(browser, server, finished, page_name):
    job_id, _ = finished
    arg = f"/{job_id}" if page_name in ("explain", "workflow") else ""
    w = ui(browser, server, f"#/{page_name}{arg}", size=PHONE)
    page = w.page
    ready = {"generate": "#gen-form", "explain": "#x-body:not([hidden])", "toy": "#t-known:not(:empty)",
             "history": "#h-grid .card", "workflow": "#w-graph svg"}[page_name]  # fmt: skip
    page.wait_for_selector(ready)
    page.wait_for_timeout(300)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE[0], f"{page_name} is {width}px wide on a {PHONE[0]}px screen"
    shot(page, f"{page_name}-phone")
    clean(w)
