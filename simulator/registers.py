"""A simulated device's register map: fresh values per read, and what it served.

Shared by the Modbus TCP and the Modbus RTU simulators. Every register a profile's read plan
touches is readable (gap registers read as 0); values are computed when a read arrives, so
every read sees fresh numbers, and the last ``history`` values served per metric are kept
exactly as a gateway decodes them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from drivers.modbus.codec import ReadBlock, plan_reads
from drivers.profile import Function, MetricSpec, Profile
from simulator.values import Clock, DeviceValues

__all__ = ["FUNCTION_CODES", "RegisterMap"]

#: Modbus function code reading each register table.
FUNCTION_CODES = {Function.HOLDING: 3, Function.INPUT: 4}


class RegisterMap:
    """The registers of one simulated device, computed on demand from its profile."""

    def __init__(self, profile: Profile, seed: int | str, clock: Clock, history: int) -> None:
        self.profile = profile
        self.plan: tuple[ReadBlock, ...] = tuple(
            plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)
        )
        self.values = DeviceValues(profile, seed)
        self._clock = clock
        self._t0 = clock()
        self._served = {m.name: deque[float](maxlen=history) for m in profile.metrics}
        # Per function code: (first register, end, metric), by address, for the read hook.
        self._metrics: dict[int, tuple[tuple[int, int, MetricSpec], ...]] = {
            code: tuple(
                sorted(
                    (
                        (m.address, m.address + m.count, m)
                        for m in profile.metrics
                        if m.function is function
                    ),
                    key=lambda entry: entry[:2],
                )
            )
            for function, code in FUNCTION_CODES.items()
        }
        self._blocks: dict[int, tuple[ReadBlock, ...]] = {
            code: tuple(b for b in self.plan if b.function is function)
            for function, code in FUNCTION_CODES.items()
        }

    def served(self, metric: str) -> tuple[float, ...]:
        """The last values of ``metric`` on the wire, oldest first, as a gateway decodes them."""
        return tuple(self._served[metric])

    def was_served(self, metric: str, value: float) -> bool:
        """Whether ``value`` is one of the last values of ``metric`` this device served."""
        return value in self._served[metric]

    def fill(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
    ) -> None:
        """Write fresh values for a read of ``count`` registers at ``address`` into ``registers``.

        ``registers`` holds the table from ``start_address`` on (pymodbus's ``SimData`` block);
        metrics the read covers completely are recorded as served.
        """
        t = self._clock() - self._t0
        end = address + count
        for first, last, metric in self._metrics.get(function_code, ()):
            if first >= end:
                break
            if last <= address:
                continue
            words, value = self.values.encode(metric, t)
            registers[first - start_address : last - start_address] = words
            if first >= address and last <= end:
                self._served[metric.name].append(value)

    def read(self, function_code: int, address: int, count: int) -> Sequence[int] | None:
        """Fresh values of ``count`` registers at ``address``; None if the plan has no such run."""
        end = address + count
        for block in self._blocks.get(function_code, ()):
            if block.address <= address and end <= block.address + block.count:
                table = [0] * block.count
                self.fill(function_code, block.address, address, count, table)
                return table[address - block.address : end - block.address]
        return None
