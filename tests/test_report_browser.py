"""The explainer's reports in a real browser: headless Chromium opens index.html from file://.

Both reports (the embedded model's and the toy world's) must load without console errors or uncaught
exceptions, request nothing beyond file:/data: URLs, and show another step, in text and picture, when
the step slider moves. Screenshots are kept in tests/artifacts/ (git-ignored; paths printed, see
``pytest -s``). Skipped only when /usr/bin/chromium is missing (``setup.sh`` installs it).
"""

import pytest

from browser import artifact, chromium, open_page, require_chromium
from glassforge.cli import main


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def image_report(tmp_path_factory):
    require_chromium()
    out = tmp_path_factory.mktemp("explain-browser") / "report"
    args = ["explain", "a red circle on a blue background", "--steps", "4", "--seed", "11", "--out", str(out)]
    assert main(args) == 0
    return out / "index.html"


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory):
    require_chromium()
    out = tmp_path_factory.mktemp("explain-toy-browser") / "report"
    args = [
        "explain",
        "--toy",
        "dog, cat",
        "--steps",
        "6",
        "--seed",
        "3",
        "--particles",
        "60",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    return out / "index.html"


def _to_last_step(page) -> None:
    """Move the slider as a person does: focus it and press End (the native range input fires "input")."""
    page.focus("#step-slider")
    page.keyboard.press("End")


def _keep(page, selector: str, name: str) -> None:
    path = artifact(name)
    page.locator(selector).screenshot(path=str(path))
    print(f"screenshot: {path}")


def test_image_report_opens_cleanly_and_its_slider_changes_the_step(browser, image_report):
    w = open_page(browser, image_report.as_uri())
    page = w.page
    assert page.title().startswith("How the words became the image")
    assert page.inner_text("#step-now").startswith("step 1 / 4")
    src_first = page.get_attribute("#step-x0 img", "src")
    shot_first = page.locator("#step-x0").screenshot()
    formula_first = page.inner_text("#step-formula")
    assert src_first.startswith("data:image/png;base64,") and formula_first

    _to_last_step(page)
    assert page.input_value("#step-slider") == "3"
    assert page.inner_text("#step-now").startswith("step 4 / 4")
    assert page.get_attribute("#step-x0 img", "src") != src_first
    assert page.locator("#step-x0").screenshot() != shot_first  # the picture on screen changed
    assert page.inner_text("#step-formula") != formula_first
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")  # one key press, one step
    assert page.inner_text("#step-now").startswith("step 2 / 4")
    page.focus("body")
    page.keyboard.press("ArrowRight")  # the page's own arrow keys, slider not focused
    assert page.inner_text("#step-now").startswith("step 3 / 4")
    _to_last_step(page)
    _keep(page, "#e", "report-image-last-step.png")
    page.screenshot(path=str(artifact("report-image-page.png")), full_page=True)
    assert w.errors == [], w.errors
    assert w.remote_requests() == [], w.remote_requests()
    page.close()


def test_toy_report_opens_cleanly_and_its_slider_and_play_change_the_step(browser, toy_report):
    w = open_page(browser, toy_report.as_uri())
    page = w.page
    assert page.title().startswith("How the words became points")
    assert page.inner_text("#step-now").startswith("step 1 / 6")

    def canvas() -> str:
        return page.evaluate("document.getElementById('view-near').toDataURL()")

    first, particle_first = canvas(), page.inner_text("#step-particle")
    assert "D_c = D*(x; σ = 14.6146 | prompt)" in particle_first
    _to_last_step(page)
    assert page.inner_text("#step-now").startswith("step 6 / 6")
    assert canvas() != first
    assert page.inner_text("#step-particle") != particle_first
    _keep(page, "#d", "report-toy-last-step.png")

    page.keyboard.press("Home")  # back to step 1, then play until the shown step moves on
    assert page.inner_text("#step-now").startswith("step 1 / 6")
    page.click("#play")
    page.wait_for_function("document.getElementById('step-now').textContent.indexOf('step 1 /') !== 0")
    page.click("#play")  # pause
    assert page.inner_text("#play") == "▶ play"
    assert w.errors == [], w.errors
    assert w.remote_requests() == [], w.remote_requests()
    page.close()
