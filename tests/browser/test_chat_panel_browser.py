"""The chat panel in a real browser: JupyterLab on 127.0.0.1, headless Debian Chromium.

The notebook starts the local server in its kernel and logs in alice and bob; a second cell
makes bob answer every P2P message alice sends him (through ``mimc_rx.jupyter.subscribe``) and
shows a ChatPanel for alice; a third makes bob talk (a P2P message, a group message) and alice
send a message from code. The test works the panel as a person would: picks bob's
conversation, types a message fast (15 ms a key) and presses Enter, and waits until the page
shows exactly that text acknowledged and bob's answer. It then runs the panel cell again, as
people do, and checks that a new message gets one answer, not two (the re-run replaced the
old subscription and panel). Finally it switches JupyterLab to its dark theme and checks that
own bubbles keep readable contrast.

Screenshots of the panel in both themes go to the pytest temporary directory, or to
``docs/chat_panel.png`` and ``docs/chat_panel_dark.png`` (the README's pictures) when the
environment variable ``MIMC_UPDATE_SCREENSHOT=1`` is set, so a plain test run leaves the tree
clean.

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

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCREENSHOTS = {"light": "chat_panel.png", "dark": "chat_panel_dark.png"}

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
"""

PANEL = """\
from mimc_rx.jupyter import subscribe

# bob answers every message alice sends him; running this cell again replaces both
subscribe(bob.p2p_messages, lambda m: bob.send_message(m.from_account, f"bob got: {m.text}"))
panel = ChatPanel(alice, group_names={topic: "team"})
panel
"""

BOB_TALKS = """\
bob.send_message("alice", "hi alice, this is bob")
bob.send_group_message(topic, "welcome to the team")
alice.send_message("bob", "sent from code")
"""


def _luminance(css: str) -> float:
    """Relative luminance of a computed CSS colour: ``rgb(...)`` or ``color(srgb ...)``."""
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)[:3]]
    scale = 1.0 if css.startswith("color(") else 255.0

    def channel(value: float) -> float:
        c = value / scale
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(n) for n in numbers)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two computed colours."""
    high, low = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_chat_panel_in_jupyterlab(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    ms = int(TIMEOUT * 1000)
    with jupyter_lab(tmp_path, timeout=TIMEOUT) as lab:
        write_notebook(lab.root / "chat.ipynb", [SETUP, PANEL, BOB_TALKS])
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
                # bob's messages are waiting, unread, in two conversations: his greeting and
                # his answer to what alice sent from code; the group by its name.
                # (ipywidgets shows option labels with no-break spaces, hence \s.)
                group = conversations.locator("option", has_text=re.compile(r"^#\steam"))
                expect(conversations.locator("option", has_text="bob (2)")).to_have_count(1)
                expect(group).to_have_text(re.compile(r"^#\steam\s\(1\)$"))

                conversations.select_option(label="bob (2)")
                view = panel.locator(".mimc-message-view")
                expect(view).to_contain_text("hi alice, this is bob")
                # What alice sent from code is part of the conversation too.
                from_code = view.locator(".mimc-msg", has_text="sent from code")
                expect(from_code.first).to_have_attribute("data-state", "acked")
                expect(conversations.locator("option", has_text="bob")).to_have_text("bob")

                box = panel.locator(".mimc-input input")
                typed = "typed fast, every key counts"
                box.press_sequentially(typed, delay=15)
                box.press("Enter")
                mine = view.locator(".mimc-msg", has_text=typed)
                expect(mine.first).to_have_attribute("data-state", "acked")
                expect(view).to_contain_text(f"bob got: {typed}")
                # Sent whole and once: no message holds a cut-off start of the text.
                texts = view.locator(".mimc-text").all_inner_texts()
                assert texts.count(typed) == 1, texts
                assert not [t for t in texts if typed.startswith(t) and t != typed], texts
                expect(box).to_have_value("")

                page.wait_for_timeout(300)  # let the last render settle before the picture
                update = os.environ.get("MIMC_UPDATE_SCREENSHOT") == "1"
                folder = DOCS if update else tmp_path
                panel.screenshot(path=str(folder / SCREENSHOTS["light"]))

                # The group conversation shows bob's group message once picked, by name.
                conversations.select_option(label=group.first.inner_text())
                expect(view).to_contain_text("welcome to the team")
                expect(panel.locator(".mimc-header")).to_contain_text("Group team")

                # Run the panel cell again: one subscription and one panel, not two.
                page.locator(".jp-Cell").nth(1).locator(".jp-InputArea-editor").click()
                page.keyboard.press("Shift+Enter")
                panel = page.locator(".mimc-chat-panel")
                expect(panel).to_have_count(1)
                conversations = panel.locator(".mimc-conversations select")
                # A new panel starts with no history: open bob's conversation by name.
                target = panel.locator(".mimc-new-target input")
                target.fill("bob")
                target.press("Enter")
                expect(conversations.locator("option", has_text="bob")).to_have_count(1)
                view = panel.locator(".mimc-message-view")
                box = panel.locator(".mimc-input input")
                box.fill("after the re-run")
                box.press("Enter")
                expect(view).to_contain_text("bob got: after the re-run")
                page.wait_for_timeout(500)  # a second answer would have come by now
                answers = view.locator(".mimc-msg", has_text="bob got: after the re-run")
                expect(answers).to_have_count(1)

                # The dark theme: own bubbles stay readable.
                page.locator(".lm-MenuBar-item", has_text="Settings").click()
                page.locator(".lm-Menu-item", has_text=re.compile(r"^Theme$")).hover()
                page.get_by_role("menuitem", name="JupyterLab Dark", exact=True).click()
                expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
                page.wait_for_timeout(500)
                bubble = view.locator('.mimc-msg[data-state="acked"] .mimc-text').last
                colours = bubble.evaluate(
                    "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
                )
                assert contrast(*colours) >= 4.5, colours
                panel.screenshot(path=str(folder / SCREENSHOTS["dark"]))
                for name in SCREENSHOTS.values():
                    assert (folder / name).stat().st_size > 0
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"page screenshot: {tmp_path / 'failure.png'}\n{lab.log_tail()}")
                raise
            finally:
                browser.close()
    print(f"browser test took {time.monotonic() - started:.1f} s")
