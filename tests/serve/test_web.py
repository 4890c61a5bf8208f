"""The web page, driven by a real (headless Debian) Chromium against a live uvicorn server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from playnext.artifact import Artifact
from playnext.data.interactions import Interactions
from playnext.serve import Settings, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


@pytest.fixture
def live_url(artifact: Artifact) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(artifact, Settings(text_encoder="hashing", cache_dir=None))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_pick_two_titles_and_see_recommendations(live_url: str, world: Interactions, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    popular = np.argsort(-world.item_counts())
    titles = [str(world.meta.get_column("title")[int(i)]) for i in popular[:2]]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(live_url + "/")
            expect(page.locator("#status")).to_contain_text("items")
            for n, title in enumerate(titles, 1):
                page.fill("#title-search", title.lower())
                row = page.locator("#search-results li").filter(has_text=title).first
                row.get_by_role("button", name=f"Like {title}").click()
                expect(page.locator("#picks li")).to_have_count(n)
            recs = page.locator("#recs li")
            expect(recs.first).to_be_visible()
            assert recs.count() == 10
            expect(recs.first.locator(".why")).to_contain_text("Because you liked")
            # an untyped model reads no skips (/health lists no event types): no Skip button
            expect(recs.locator("button.skip")).to_have_count(0)
            rec_titles = recs.locator(".title").all_inner_texts()
            assert not set(titles) & set(rec_titles)  # what you picked is not recommended back
            expect(page.locator("#rerank-note")).to_have_text("")
            page.locator("#variety").fill("10")  # "more variety": MMR at lambda 0.7
            expect(page.locator("#rerank-note")).to_contain_text("Re-ranked: more variety")
            page.locator("#match-mix").check()
            expect(page.locator("#rerank-note")).to_contain_text("matched to your mix, more variety")
            expect(recs).to_have_count(10)
            assert not set(titles) & set(recs.locator(".title").all_inner_texts())
            page.fill("#describe", "a funny space adventure")
            page.press("#describe", "Enter")
            expect(page.locator("#describe-results li").first).to_be_visible()
            page.fill("#title-search", "")
            shot = Path(os.environ.get("PLAYNEXT_SCREENSHOT", tmp_path / "serving.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
