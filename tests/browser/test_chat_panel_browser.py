"""The chat panel in a real browser: JupyterLab on 127.0.0.1, headless Debian Chromium.

The notebook starts the local server in its kernel, logs in alice and bob, shows a ChatPanel
for alice, and makes bob talk to her (a P2P message, a group message, and an answer to every
P2P message alice sends him). The test then works the panel as a person would: picks bob's
conversation in the list, types a message, presses Enter, and waits until the page shows the
message acknowledged and bob's answer, then saves a screenshot of the panel: to the pytest
temporary directory, or to ``docs/chat_panel.png`` (the README's picture) when the environment
variable ``MIMC_UPDATE_SCREENSHOT=1`` is set, so a plain test run leaves the tree clean.

Skips only when ``/usr/bin/chromium`` is missing (``apt-get install chromium``); it never
downloads a browser.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from .jupyter_harness import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, write_notebook

pytestmark = pytest.mark.browser

TIMEOUT = 30.0 * float(os.environ.get("MIMC_TEST_TIMEOUT_SCALE", "1"))
"""Seconds any single wait may take (server start, page load, an update reaching the page)."""

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat_panel.png"

SETUP = """\
from mimc_rx import MIMCUser
from mimc_rx.server import LocalServer
from mimc_rx.widgets import ChatPanel

server = LocalServer(db=":memory:")
await server.start()


def make_user(account):
    fetch = server.token_fetcher(account)
    return MIMCUser(account, app_id=server.app.app_id, token_fetcher=fetch, url=server.ws_url)


alice, bob = make_user("alice"), make_user("bob")
for user in (alice, bob):
    assert (await user.login()).online
topic = await bob.create_group("team", ["alice"])
# bob answers every message alice sends him
bob.p2p_messages.subscribe(lambda m: bob.send_message(m.from_account, f"bob got: {m.text}"))
panel = ChatPanel(alice)
"""

SHOW = "panel"

BOB_TALKS = """\
bob.send_message("alice", "hi alice, this is bob")
bob.send_group_message(topic, "welcome to the team")
"""


def test_chat_panel_in_jupyterlab(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    ms = int(TIMEOUT * 1000)
    with jupyter_lab(tmp_path, timeout=TIMEOUT) as lab:
        write_notebook(lab.root / "chat.ipynb", [SETUP, SHOW, BOB_TALKS])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(ms)
            expect.set_options(timeout=ms)
            try:
                page.goto(lab.lab_url("chat.ipynb"))
                # The kernel is up once the status bar says so (the toolbar's dot is idle early).
                expect(page.locator(".jp-StatusBar-Widget").first).to_contain_text("| Idle")
                page.locator(".lm-MenuBar-item", has_text="Run").click()
                page.locator('li[data-command="runmenu:run-all"]').click()

                panel = page.locator(".mimc-chat-panel")
                expect(panel).to_be_visible()
                expect(panel.locator('.mimc-status[data-state="online"]')).to_be_visible()
                conversations = panel.locator(".mimc-conversations select")
                # bob's two messages are waiting, unread, in two conversations.
                # (ipywidgets shows option labels with no-break spaces, hence the \s.)
                group = conversations.locator("option", has_text=re.compile(r"^#\s\d+"))
                expect(conversations.locator("option", has_text="bob (1)")).to_have_count(1)
                expect(group).to_have_text(re.compile(r"^#\s\d+\s\(1\)$"))

                conversations.select_option(label="bob (1)")
                view = panel.locator(".mimc-message-view")
                expect(view).to_contain_text("hi alice, this is bob")
                expect(conversations.locator("option", has_text="bob")).to_have_text("bob")

                box = panel.locator(".mimc-input input")
                box.fill("hello from the browser")
                box.press("Enter")

                mine = view.locator(".mimc-msg", has_text="hello from the browser")
                expect(mine.first).to_have_attribute("data-state", "acked")
                expect(view).to_contain_text("bob got: hello from the browser")
                expect(box).to_have_value("")

                page.wait_for_timeout(300)  # let the last render settle before the picture
                update = os.environ.get("MIMC_UPDATE_SCREENSHOT") == "1"
                shot = README_SCREENSHOT if update else tmp_path / "chat_panel.png"
                panel.screenshot(path=str(shot))
                assert shot.stat().st_size > 0

                # The group conversation shows bob's group message once picked.
                conversations.select_option(label=group.inner_text())
                expect(view).to_contain_text("welcome to the team")
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"page screenshot: {tmp_path / 'failure.png'}\n{lab.log_tail()}")
                raise
            finally:
                browser.close()
    print(f"browser test took {time.monotonic() - started:.1f} s")
