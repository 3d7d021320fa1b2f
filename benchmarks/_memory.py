"""Resident memory of this process for the benchmarks: the current RSS and a sampler of its peak."""

from __future__ import annotations

import os
import threading


def rss_now() -> int:
    """This process's resident set size in bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the RSS every 5 ms inside a ``with`` block; ``.peak`` in bytes.

    Unlike ``ru_maxrss`` it measures one phase only (model set-up before the block does not count).
    """

    def __enter__(self) -> "PeakRSS":
        self.peak = rss_now()
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, rss_now())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_now())
