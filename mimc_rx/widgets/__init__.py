"""A chat panel for Jupyter: ``ChatPanel(user)``, and the view-model behind it.

``ChatModel`` (pure state) and the HTML renderers need nothing beyond the standard library;
``ChatPanel`` imports ipywidgets when it is built (``pip install "mimc-rx[notebook]"``).
"""

from __future__ import annotations

from mimc_rx.widgets.model import (
    ChatEntry,
    ChatModel,
    ConnectionState,
    ConnectionStatus,
    ConversationId,
    ConversationKind,
    ConversationSummary,
    MessageState,
)
from mimc_rx.widgets.panel import ChatPanel, ChatUser

__all__ = [
    "ChatEntry",
    "ChatModel",
    "ChatPanel",
    "ChatUser",
    "ConnectionState",
    "ConnectionStatus",
    "ConversationId",
    "ConversationKind",
    "ConversationSummary",
    "MessageState",
]
