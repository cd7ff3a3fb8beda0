"""HTML for the chat panel: the message list, the header and the status badge.

Pure functions from view-model values to HTML strings, so the look is tested without widgets.
Every piece of text that came from the network or the user is escaped here. The styles are
inline (an ``HTML`` widget carries no stylesheet) and use JupyterLab's CSS variables with
fallbacks, so the panel follows the light and dark themes.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence

from mimc_rx.widgets.model import (
    ChatEntry,
    ConnectionState,
    ConnectionStatus,
    ConversationId,
    MessageState,
)

__all__ = ["format_time", "render_header", "render_messages", "render_status"]

_FONT = "font-family:var(--jp-ui-font-family,sans-serif);font-size:var(--jp-ui-font-size1,13px);"
_MUTED = "color:var(--jp-ui-font-color2,#666);"
# Bubbles and notes take JupyterLab's theme variables, so the light and the dark theme both
# read well: own bubbles are the brand colour mixed into the page background (light blue on
# white, deep blue on dark grey) under the theme's own text colour. The first declaration is
# the fallback for a browser without color-mix().
_OWN_BUBBLE = (
    "background:var(--jp-layout-color3,#c8e1ff);"
    "background:color-mix(in srgb,var(--jp-brand-color1,#1976d2) 28%,"
    "var(--jp-layout-color1,#fff));"
)
_OTHER_BUBBLE = "background:var(--jp-layout-color2,#eee);"
_PENDING = "color:var(--jp-ui-font-color2,#757575);"
_ACKED = "color:var(--jp-success-color1,#2e7d32);"
_FAILED = "color:var(--jp-error-color1,#c62828);"
_BADGE_COLOURS = {
    ConnectionState.CONNECTING: "#9e9e9e",
    ConnectionState.ONLINE: "#2e7d32",
    ConnectionState.OFFLINE: "#c62828",
    ConnectionState.DISCONNECTED: "#ef6c00",
}


def format_time(timestamp_ms: int) -> str:
    """A message time as the view shows it: local ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp_ms / 1000))


def render_status(status: ConnectionStatus, account: str) -> str:
    """The status badge: a coloured dot, the state and our account."""
    colour = _BADGE_COLOURS[status.state]
    return (
        f'<div class="mimc-status" data-state="{status.state.value}" style="{_FONT}'
        'display:flex;align-items:center;gap:6px;white-space:nowrap;">'
        f'<span style="display:inline-block;width:10px;height:10px;border-radius:50%;'
        f'background:{colour};"></span>'
        f"<b>{html.escape(account)}</b>"
        f'<span style="{_MUTED}">{html.escape(status.text)}</span></div>'
    )


def render_header(conversation: ConversationId | None, group_name: str | None = None) -> str:
    """The title above the message view (a group by its name when known, with its id)."""
    if conversation is None:
        title = "No conversation selected"
    elif conversation.is_group:
        title = (
            f"Group {group_name} ({conversation.target})"
            if group_name
            else (f"Group {conversation.target}")
        )
    else:
        title = f"Chat with {conversation.target}"
    return (
        f'<div class="mimc-header" style="{_FONT}font-weight:600;padding:2px 4px;">'
        f"{html.escape(title)}</div>"
    )


def _state_note(entry: ChatEntry) -> str:
    match entry.state:
        case MessageState.PENDING:
            return f'<span class="mimc-pending" style="{_PENDING}">pending&hellip;</span>'
        case MessageState.ACKED:
            return f'<span class="mimc-acked" style="{_ACKED}">&#10003; #{entry.sequence}</span>'
        case MessageState.FAILED:
            why = html.escape(entry.error or "failed")
            return f'<span class="mimc-failed" style="{_FAILED}">&#10007; {why}</span>'
        case MessageState.RECEIVED:
            return ""  # the sequence is in the tooltip: a received message needs no badge
    return ""  # pragma: no cover - the match is exhaustive


def _render_entry(entry: ChatEntry, fmt: Callable[[int], str]) -> str:
    own = entry.outgoing
    align = "flex-end" if own else "flex-start"
    bubble = _OWN_BUBBLE if own else _OTHER_BUBBLE
    note = _state_note(entry)
    meta = (
        f'<div style="{_MUTED}font-size:11px;">'
        f"<b>{html.escape(entry.sender)}</b> &middot; {html.escape(fmt(entry.timestamp))}"
        f"{' &middot; ' + note if note else ''}</div>"
    )
    tooltip = f"sequence {entry.sequence}" if entry.sequence is not None else "no sequence yet"
    text = html.escape(entry.text).replace("\n", "<br>")
    return (
        f'<div class="mimc-msg" data-state="{entry.state.value}" title="{tooltip}" '
        f'style="display:flex;flex-direction:column;align-items:{align};margin:3px 0;">'
        f"{meta}"
        f'<div class="mimc-text" style="{bubble}color:var(--jp-ui-font-color1,#000);'
        "padding:4px 8px;border-radius:8px;max-width:80%;white-space:pre-wrap;"
        f'overflow-wrap:anywhere;">{text}</div></div>'
    )


def render_messages(
    entries: Sequence[ChatEntry],
    *,
    height: str = "320px",
    empty: str = "No messages yet.",
    fmt: Callable[[int], str] = format_time,
) -> str:
    """The message list, newest at the bottom and kept in view.

    The outer box is a reversed flex column, so the browser keeps it scrolled to the bottom
    when it is re-rendered, without any script.
    """
    if entries:
        body = "".join(_render_entry(e, fmt) for e in entries)
    else:
        body = f'<div style="{_MUTED}padding:8px;">{html.escape(empty)}</div>'
    return (
        f'<div class="mimc-messages" style="{_FONT}height:{height};overflow-y:auto;'
        "display:flex;flex-direction:column-reverse;box-sizing:border-box;padding:4px 8px;"
        'border:1px solid var(--jp-border-color2,#ddd);border-radius:4px;">'
        f"<div>{body}</div></div>"
    )
