"""The root conftest's fix for nbclient#312: the shell channel is polled in short slices, timeouts still hold."""

import asyncio
import time
from queue import Empty

import pytest

from tests.nbclient_polling import sliced_get_msg


def _channel(empty_calls: int):
    calls = []

    async def get_msg(timeout=None):
        calls.append(timeout)
        if len(calls) <= empty_calls:
            await asyncio.sleep(min(timeout, 0.01))
            raise Empty
        return {"msg_id": "reply"}

    return get_msg, calls


def test_a_reply_is_picked_up_by_a_later_slice():
    get_msg, calls = _channel(empty_calls=3)
    msg = asyncio.run(sliced_get_msg(get_msg, slice_s=0.01)(timeout=600))
    assert msg == {"msg_id": "reply"} and len(calls) == 4 and max(calls) <= 0.01  # never one 600-s wait


def test_no_timeout_waits_for_ever_in_slices():
    get_msg, calls = _channel(empty_calls=5)
    assert asyncio.run(sliced_get_msg(get_msg, slice_s=0.01)(timeout=None)) == {"msg_id": "reply"}
    assert calls == [0.01] * 6


def test_a_real_timeout_still_raises_empty():
    get_msg, calls = _channel(empty_calls=10**6)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(sliced_get_msg(get_msg, slice_s=0.01)(timeout=0.05))
    assert time.monotonic() - t0 < 5 and 3 <= len(calls) <= 10


def test_nbclient_is_patched_in_this_process():
    from nbclient import NotebookClient

    assert NotebookClient._cavmae_sliced
