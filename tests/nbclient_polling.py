"""Polling nbclient's shell channel in short slices (jupyter/nbclient#312); installed by the root conftest.py, so
it applies to the notebooks nbmake executes in the pytest process.

nbclient waits for a cell's ``execute_reply`` with one ``shell_channel.get_msg(timeout=<cell timeout>)``. With
ipywidgets in the cell that wait sometimes does not wake when the reply arrives and sits until the timeout
(jupyter/nbclient#312: about 600 s here, then the cell passes). Polling the channel in one-second slices instead
wakes within a second, and leaves every other behaviour (a real timeout still raises ``Empty``) unchanged.
"""

from __future__ import annotations

import time
from queue import Empty

SLICE_S = 1.0


def sliced_get_msg(get_msg, slice_s: float = SLICE_S):
    """``get_msg(timeout)`` of an async channel, polled in ``slice_s`` slices until ``timeout`` (None: forever)."""

    async def get(timeout: float | None = None, **kwargs):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=slice_s if left is None else min(slice_s, left), **kwargs)
            except Empty:
                if left is not None and left <= slice_s:
                    raise

    return get


def patch_nbclient() -> None:
    try:
        from nbclient import NotebookClient
    except ImportError:  # nbmake / nbclient not installed: nothing to patch
        return
    if getattr(NotebookClient, "_cavmae_sliced", False):
        return
    start = NotebookClient.async_start_new_kernel_client

    async def start_new_kernel_client(self):
        kc = await start(self)
        kc.shell_channel.get_msg = sliced_get_msg(kc.shell_channel.get_msg)
        return kc

    from nbclient.util import run_sync

    NotebookClient.async_start_new_kernel_client = start_new_kernel_client
    NotebookClient.start_new_kernel_client = run_sync(start_new_kernel_client)
    NotebookClient._cavmae_sliced = True

