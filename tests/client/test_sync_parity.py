"""The blocking twin keeps up with the async original (in the spirit of websockets'
``tests/test_exports.py``): every public member of ``MIMCUser`` has a twin on
``SyncMIMCUser``, made from the one list ``TWINNED``, of the same kind."""

from __future__ import annotations

import inspect

from mimc_rx.client.sync import TWINNED, SyncMIMCUser
from mimc_rx.client.user import MIMCUser

OWN_TWINS = {"close"}
"""Members the twin writes itself (``close`` also stops the loop thread)."""


def public_members(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_every_public_member_of_the_user_has_a_twin() -> None:
    missing = public_members(MIMCUser) - public_members(SyncMIMCUser)
    assert missing == set(), f"SyncMIMCUser lacks {sorted(missing)}: add them to TWINNED"


def test_the_list_names_only_members_of_the_user_and_none_twice() -> None:
    assert len(set(TWINNED)) == len(TWINNED)
    assert set(TWINNED) <= public_members(MIMCUser)
    assert set(TWINNED) | OWN_TWINS == public_members(MIMCUser)


def test_each_twin_is_of_the_kind_of_its_original() -> None:
    for name in TWINNED:
        original = inspect.getattr_static(MIMCUser, name)
        twin = inspect.getattr_static(SyncMIMCUser, name)
        if isinstance(original, property):
            assert isinstance(twin, property), name
        else:
            assert callable(twin), name
            assert not inspect.iscoroutinefunction(twin), name
            assert twin.__doc__ == original.__doc__, name
