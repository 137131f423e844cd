"""Waiting until an event buffer (ring buffer, perf buffer) has something to read: an
epoll set over the reader's descriptors, made on the first wait, since a reader that
is only ever drained never needs one."""

from __future__ import annotations

import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Readiness:
    def __init__(self, fds: Callable[[], list[int]]):
        self._fds = fds
        self._epoll: select.epoll | None = None

    def wait(self, timeout: float | None) -> None:
        """Until a descriptor is readable, or `timeout` seconds (None: no limit)."""
        if self._epoll is None:
            epoll = select.epoll()
            try:
                for fd in self._fds():
                    epoll.register(fd, select.EPOLLIN)
            except BaseException:
                epoll.close()
                raise
            self._epoll = epoll
        self._epoll.poll(-1 if timeout is None else timeout)

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
