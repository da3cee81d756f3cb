"""Talking to nodes over a Flower ``Grid``: wait for them, push messages, pull replies.

Replies are pulled every ``interval`` seconds rather than by ``Grid.send_and_receive``
(which sleeps 3 s between pulls): in deployment mode every exchange costs its polling.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import TypeVar

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from hermes_fed.errors import FederationError

K = TypeVar("K", bound=Hashable)


def payload_bytes(message: Message) -> int:
    """Bytes of a message's content as Flower ships it (its deflated objects)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def wait_for_nodes(grid: Grid, count: int, timeout: float, interval: float = 0.2) -> list[int]:
    """Node ids once ``count`` SuperNodes are connected (polled, not slept for)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise FederationError(f"{len(nodes)} of {count} nodes connected after {timeout:.0f} s")
        time.sleep(interval)


def exchange_keyed(grid: Grid, keyed: Sequence[tuple[K, Message]], *, timeout: float,
                   interval: float) -> tuple[dict[K, Message], float]:
    """Push every message at once, pull replies until all arrive or ``timeout``.

    Returns the replies by the caller's key and the seconds it took. One exchange for all
    the questions of a step: each exchange costs seconds of polling, whatever it carries.
    """
    started = time.monotonic()
    ids = list(grid.push_messages([m for _, m in keyed]))
    wanted = {mid: key for mid, (key, _) in zip(ids, keyed, strict=True)}
    replies: dict[K, Message] = {}
    while len(replies) < len(wanted) and time.monotonic() - started < timeout:
        pending = [i for i, key in wanted.items() if key not in replies]
        for reply in grid.pull_messages(pending):
            key = wanted.get(reply.metadata.reply_to_message_id)
            if key is not None:
                replies[key] = reply
        if len(replies) < len(wanted):
            time.sleep(interval)
    return replies, time.monotonic() - started


def exchange(grid: Grid, messages: Sequence[Message], *, timeout: float,
             interval: float) -> tuple[dict[int, Message], float]:
    """:func:`exchange_keyed` with one message per node: replies by node id."""
    return exchange_keyed(grid, [(m.metadata.dst_node_id, m) for m in messages],
                          timeout=timeout, interval=interval)
