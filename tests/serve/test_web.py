"""The web page, driven by a real (headless Debian) Chromium against a live uvicorn server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
            # every card has Skip, also for this model with no event types (an implicit negative)
            expect(recs.locator("button.skip")).to_have_count(10)
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


@contextmanager
def browser_page(url: str) -> Iterator[Any]:
    """A fresh headless page at the service's web page, once it has talked to the server."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url + "/")
            expect(page.locator("#status")).to_contain_text("items")
            yield page
        finally:
            browser.close()


def api_recs(page: Any, url: str, **body: Any) -> list[str]:
    """What the API recommends for `body` (the list the page must show)."""
    r = page.request.post(url + "/recommend", data={"k": 10, **body})
    assert r.ok, r.text()
    return [x["item_id"] for x in r.json()["items"]]


def shown(page: Any, where: str) -> list[str]:
    return [str(x) for x in page.locator(f"{where} li").evaluate_all("els => els.map(e => e.dataset.itemId)")]


def wait_for_recs(page: Any, ids: list[str]) -> None:
    """Wait until the page shows exactly these recommendations, in this order."""
    js = (
        "ids => JSON.stringify([...document.querySelectorAll('#recs li')].map(e => e.dataset.itemId))"
        " === JSON.stringify(ids)"
    )
    page.wait_for_function(js, arg=ids, timeout=10_000)


def stored_history(artifact: Artifact, user: str) -> list[str]:
    return artifact.items.to_external(artifact.histories[artifact.users.lookup[user]])


def test_a_known_user_shows_their_history_and_recommendations(live_url: str, artifact: Artifact) -> None:
    from playwright.sync_api import expect

    user = str(artifact.users.external[3])
    history = stored_history(artifact, user)
    with browser_page(live_url) as page:
        page.fill("#user-id", "nobody")
        page.press("#user-id", "Enter")
        expect(page.locator("#user-note")).to_have_text("unknown user id: nobody")
        expect(page.locator("#user-box")).to_be_hidden()
        page.fill("#user-id", user)
        page.press("#user-id", "Enter")
        expect(page.locator("#user-note")).to_contain_text(f"User {user}: {len(history)} event(s)")
        expect(page.locator("#history li")).to_have_count(min(len(history), 50))
        assert shown(page, "#history") == history[::-1][:50]  # newest first
        expect(page.locator("#recs li")).to_have_count(10)
        assert shown(page, "#recs") == api_recs(page, live_url, user_id=user)
        assert not set(shown(page, "#recs")) & set(history)  # what they had is not offered back
        expect(page.locator("#status")).to_contain_text(f"as user {user}")
        page.reload()  # the tab remembers who it is
        expect(page.locator("#history li")).to_have_count(min(len(history), 50))
        expect(page.locator("#recs li")).to_have_count(10)


def test_removing_a_pick_updates_the_recommendations(
    live_url: str, artifact: Artifact, world: Interactions
) -> None:
    from playwright.sync_api import expect

    user = str(artifact.users.external[3])
    history = stored_history(artifact, user)
    gone = history[-1]
    with browser_page(live_url) as page:
        page.fill("#user-id", user)
        page.press("#user-id", "Enter")
        expect(page.locator("#recs li")).to_have_count(10)
        before = shown(page, "#recs")
        page.locator(f'#history li[data-item-id="{gone}"] button.remove').first.click()
        expect(page.locator(f'#history li[data-item-id="{gone}"]')).to_have_count(0)
        expect(page.locator("#removed-note")).to_contain_text("1 removed")
        wanted = api_recs(page, live_url, user_id=user, remove_from_history=[gone])
        assert wanted != before
        wait_for_recs(page, wanted)
        # a pick of this session goes the same way (not the removed one: liking that takes it back)
        liked = next(i for i in wanted if i != gone)
        title = str(world.meta.get_column("title")[world.items.lookup[liked]])
        card = page.locator(f'#recs li[data-item-id="{liked}"]')
        card.get_by_role("button", name=f"Like {title}").click()
        expect(page.locator("#picks li")).to_have_count(1)
        expect(card).to_have_count(0)
        page.locator("#picks li").first.get_by_role("button", name=f"Remove {title}").click()
        expect(page.locator("#picks li")).to_have_count(0)
        expect(page.locator("#removed-note")).to_contain_text("2 removed")
        wait_for_recs(page, wanted)
        page.click("#restore")  # put back: the user's own list again
        expect(page.locator(f'#history li[data-item-id="{gone}"]')).to_have_count(1)
        expect(page.locator("#picks li")).to_have_count(1)
        expect(page.locator("#removed-note")).to_be_hidden()
        expect(card).to_have_count(0)
        assert not {gone, liked} & set(shown(page, "#recs"))


def test_a_skipped_item_does_not_come_back(live_url: str, world: Interactions) -> None:
    from playwright.sync_api import expect

    popular = np.argsort(-world.item_counts())
    titles = [str(world.meta.get_column("title")[int(i)]) for i in popular[:2]]
    with browser_page(live_url) as page:
        for n, title in enumerate(titles, 1):
            page.fill("#title-search", title.lower())
            page.locator("#search-results li").filter(has_text=title).first.get_by_role(
                "button", name=f"Like {title}"
            ).click()
            expect(page.locator("#picks li")).to_have_count(n)
        recs = page.locator("#recs li")
        expect(recs).to_have_count(10)
        first = shown(page, "#recs")
        skipped = first[0]
        recs.first.locator("button.skip").click()
        expect(page.locator(f'#recs li[data-item-id="{skipped}"]')).to_have_count(0)
        expect(page.locator("#picks .skipped")).to_have_count(1)
        expect(recs).to_have_count(10)
        assert shown(page, "#recs")[:9] == first[1:]  # the rest as before: no pick was read into it
        recs.nth(1).locator("button.skip").click()  # a second skip: the first stays out too
        expect(page.locator("#picks .skipped")).to_have_count(2)
        expect(page.locator(f'#recs li[data-item-id="{first[2]}"]')).to_have_count(0)
        after = shown(page, "#recs")
        assert skipped not in after and first[2] not in after
        page.reload()  # the skips are in the session on the server, not in the tab
        expect(recs).to_have_count(10)
        assert skipped not in shown(page, "#recs") and first[2] not in shown(page, "#recs")
