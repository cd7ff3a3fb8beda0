"""StreamHub and UserStreams: replay, values nobody listened to, completion."""

from __future__ import annotations

import functools

from mimc_rx.client.streams import StreamHub, UserStreams
from mimc_rx.client.values import OFFLINE
from mimc_rx.protocol.events import StatusChange


def test_a_replaying_hub_keeps_the_latest_value_without_subscribers() -> None:
    hub: StreamHub[int] = StreamHub("numbers", initial=0, replay=True)
    hub.publish(1)
    hub.publish(2)
    assert hub.latest == 2
    seen: list[int] = []
    hub.observable.subscribe(seen.append)
    hub.publish(3)
    assert seen == [2, 3]


def test_a_plain_hub_drops_what_nobody_heard_and_delivers_the_rest() -> None:
    hub: StreamHub[int] = StreamHub("numbers")
    hub.publish(1)
    assert hub.latest is None
    seen: list[int] = []
    subscription = hub.observable.subscribe(seen.append)
    hub.publish(2)
    subscription.dispose()
    hub.publish(3)
    assert seen == [2]


def test_user_streams_start_offline_and_complete_every_stream() -> None:
    streams = UserStreams()
    assert streams.status.latest == OFFLINE
    ended: list[str] = []
    for hub in streams.all():
        hub.observable.subscribe(on_completed=functools.partial(ended.append, hub.name))
    streams.status.publish(StatusChange(online=True))
    streams.complete()
    assert ended[0] == "status"
    assert sorted(ended) == sorted(hub.name for hub in streams.all())
    assert len(ended) == len(UserStreams.__slots__) == 13
