"""Drivers for serial sensors that report on their own: SDS011, PMS5003 and line-protocol devices.

Each driver is an ``async with`` object: entering opens the port (:class:`SerialLink`, never
blocking the loop) and starts the driver's reader task ``read:<kind>:<name>``, which feeds every
byte to the protocol's stream parser and keeps the samples of the freshest valid frame;
leaving cancels the task and closes the port. :meth:`poll` returns the samples of the freshest
frame received since the previous poll, waiting up to the config's ``timeout`` for one; an
SDS011 in query mode is asked for a frame instead.

Errors (all :class:`gateway.errors.DeviceError`): the port missing, unplugged or failing →
:class:`PortUnavailable`; nothing valid within ``timeout`` → :class:`BadFrame` when bytes did
arrive (bad frames, or bytes that never formed one: a wrong baud rate), else
:class:`DeviceTimeout`. Bad frames are counted by reason in :attr:`frame_stats` and logged once
per poll.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, Self, TypeVar

from drivers.serial import pms5003 as pms
from drivers.serial import sds011 as sds
from drivers.serial.frame_stats import FrameStats
from drivers.serial.line import LineFormat, LineStream
from drivers.serial.link import SerialLink
from gateway.core.errors import BadFrame, DeviceTimeout, FrameError, PortUnavailable
from gateway.core.model import Sample

if TYPE_CHECKING:
    from drivers.serial.config import LineSensor, Pms5003Device, Sds011Device

__all__ = ["LineSensorDriver", "Pms5003Driver", "Sds011Driver"]

log = logging.getLogger(__name__)

UG_M3 = "ug/m3"
PER_0_1_L = "/0.1L"  # particles per 0.1 litre of air

T = TypeVar("T")


class FrameStream(Protocol[T]):
    """What a driver needs of a stream parser (Sds011Stream, Pms5003Stream, LineStream)."""

    @property
    def stats(self) -> FrameStats: ...

    @property
    def last_error(self) -> FrameError | None: ...

    def feed(self, data: bytes) -> list[T]: ...

    def clear(self) -> None: ...


class _SerialSensorDriver(Generic[T]):
    """The shared part: port, reader task, freshest frame, errors, bad-frame accounting."""

    kind: ClassVar[str]

    def __init__(
        self, config: Sds011Device | Pms5003Device | LineSensor, stream: FrameStream[T]
    ) -> None:
        self._config = config
        self._stream = stream
        self._link: SerialLink | None = None
        self._reader: asyncio.Task[None] | None = None
        self._fresh: list[Sample] | None = None
        self._failure: PortUnavailable | None = None
        self._changed = asyncio.Event()
        self._reported = FrameStats()  # frame_stats when the previous poll returned

    @property
    def name(self) -> str:
        """The device name from the config."""
        return self._config.name

    @property
    def frame_stats(self) -> FrameStats:
        """Frames, bad frames by reason and skipped bytes since the driver was created."""
        return self._stream.stats

    @property
    def port(self) -> str:
        """The port opened (``usb:`` specs resolved), or the config's spec when closed."""
        return self._link.port if self._link is not None else self._config.port

    async def __aenter__(self) -> Self:
        if self._link is not None:
            raise RuntimeError(f"{self.name}: driver entered twice without leaving")
        link = SerialLink(self.name, self._config)
        await link.open()
        self._link = link
        self._stream.clear()  # a frame half-read before a reconnect is not one
        self._fresh = None
        self._failure = None
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(
            self._read_loop(link), name=f"read:{self.kind}:{self.name}"
        )
        try:
            async with asyncio.timeout(2 * self._config.timeout):
                await self._configure(link)
        except TimeoutError as exc:
            await self._close()
            raise DeviceTimeout(
                self.name, f"could not send commands to the sensor on {self.port}"
            ) from exc
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        link, self._link = self._link, None
        try:
            if reader is not None:
                reader.cancel()
                await asyncio.wait({reader})
                if not reader.cancelled() and (error := reader.exception()) is not None:
                    log.error("%s: reader task failed", self.name, exc_info=error)
        finally:
            if link is not None:
                await link.close()

    async def _read_loop(self, link: SerialLink) -> None:
        """Owned by the driver: bytes → frames → the freshest samples, until cancelled."""
        try:
            while True:
                data = await link.read()
                for frame in self._stream.feed(data):
                    samples = await self._handle(frame, link)
                    if samples is not None:
                        self._fresh = samples
                        self._changed.set()
        except PortUnavailable as exc:
            self._failure = exc
            self._changed.set()

    # -- what each protocol adds -----------------------------------------------------------

    async def _configure(self, link: SerialLink) -> None:
        """Commands sent once the port is open (none by default); bounded by 2 × timeout."""

    async def _handle(self, frame: T, link: SerialLink) -> list[Sample] | None:
        """The samples of a measurement frame; None for anything else (a command reply)."""
        raise NotImplementedError

    def _request(self) -> bytes | None:
        """A command asking for a frame, for sensors that only answer; None: they report."""
        return None

    # -- polling ---------------------------------------------------------------------------

    async def poll(self) -> list[Sample]:
        """The samples of the freshest valid frame since the previous poll (waits for one)."""
        link, reader = self._link, self._reader
        if link is None or reader is None:
            raise RuntimeError(f"{self.name}: poll() outside 'async with'")
        request = self._request()
        if request is not None:
            self._fresh = None  # only the answer to this request counts
        if self._fresh is None and self._failure is None and not reader.done():
            try:
                async with asyncio.timeout(self._config.timeout):
                    if request is not None:
                        await link.write(request)
                    while self._fresh is None and self._failure is None and not reader.done():
                        self._changed.clear()
                        await self._changed.wait()
            except TimeoutError:
                pass
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            reader.result()  # a bug in the reader: let it show
        fresh, self._fresh = self._fresh, None
        new = self._stream.stats.since(self._reported)
        self._reported = self._stream.stats.copy()
        if new.bad_frames:
            log.warning(
                "%s: %s since the last poll; last: %s",
                self.name,
                new.describe(),
                self._stream.last_error,
            )
        if fresh is not None:
            return fresh
        if self._failure is not None:
            raise self._failure
        raise self._no_frame(new, asked=request is not None)

    def _no_frame(self, new: FrameStats, *, asked: bool) -> BadFrame | DeviceTimeout:
        timeout = self._config.timeout
        last = self._stream.last_error
        if new.bad_frames and last is not None:
            return BadFrame(self.name, last)
        if new.skipped_bytes:
            return BadFrame(
                self.name,
                FrameError(
                    f"{new.skipped_bytes} byte(s) in {timeout:g} s but no {self.kind} frame "
                    f"(wrong baud rate, or another device on {self.port}?)"
                ),
            )
        what = "no answer to a query" if asked else f"no {self.kind} frame"
        return DeviceTimeout(self.name, f"{what} within {timeout:g} s on {self.port}")


class Sds011Driver(_SerialSensorDriver[sds.Frame]):
    """Nova Fitness SDS011: PM2.5 and PM10 in µg/m³ (``pm2_5``, ``pm10``).

    On entering, the sensor is woken up and asked for its reporting mode and working period
    (waiting up to ``timeout`` for the answers); if they differ from what the config wants
    (``mode``, and continuous measuring) they are set. The sensor keeps both in flash, so they
    are only written when they differ. A sensor that does not answer (its RX not wired) is
    still read, in whatever mode it is in.
    """

    kind = "sds011"

    def __init__(self, config: Sds011Device) -> None:
        super().__init__(config, sds.Sds011Stream())
        self._mode = sds.ReportingMode.QUERY if config.mode == "query" else sds.ReportingMode.ACTIVE
        self._query = sds.query_data()
        self._answers: dict[int, asyncio.Future[int]] = {}
        self._told_unanswered = False

    async def _configure(self, link: SerialLink) -> None:
        loop = asyncio.get_running_loop()
        mode_answer: asyncio.Future[int] = loop.create_future()
        period_answer: asyncio.Future[int] = loop.create_future()
        self._answers = {
            sds.Command.REPORTING_MODE: mode_answer,
            sds.Command.WORKING_PERIOD: period_answer,
        }
        try:
            async with asyncio.timeout(self._config.timeout):
                await link.write(
                    sds.set_working(True)
                    + sds.encode_command(sds.Command.REPORTING_MODE)  # data 0: "tell me"
                    + sds.encode_command(sds.Command.WORKING_PERIOD)
                )
                mode, period = await mode_answer, await period_answer
        except TimeoutError:
            log_once = log.warning if not self._told_unanswered else log.debug
            self._told_unanswered = True
            log_once(
                "%s: no answer to the reporting mode question within %g s; reading the sensor "
                "in whatever mode it is in (is its RX wired?)",
                self.name,
                self._config.timeout,
            )
            return
        finally:
            self._answers = {}
        if mode != self._mode:
            log.info("%s: switching the sensor to %s reporting", self.name, self._mode.name.lower())
            await link.write(sds.set_reporting_mode(self._mode))
        if period != 0:
            log.info("%s: working period %d min -> continuous", self.name, period)
            await link.write(sds.set_working_period(0))

    async def _handle(self, frame: sds.Frame, link: SerialLink) -> list[Sample] | None:
        if isinstance(frame, sds.Measurement):
            return [Sample("pm2_5", frame.pm2_5, UG_M3), Sample("pm10", frame.pm10, UG_M3)]
        answer = self._answers.get(frame.command)
        if answer is not None and not answer.done() and frame.data[0] == 0:  # "tell me", not "set"
            answer.set_result(frame.value)
        return None

    def _request(self) -> bytes | None:
        return self._query if self._mode is sds.ReportingMode.QUERY else None


class Pms5003Driver(_SerialSensorDriver[pms.Frame]):
    """Plantower PMS5003/7003/1003: ``pm1_0``, ``pm2_5``, ``pm10`` in µg/m³ ("atmospheric
    environment" values, the ones for outdoor air) and particle counts ``n0_3`` .. ``n10`` per
    0.1 L. Entering puts the sensor in active mode (its power-up default).
    """

    kind = "pms5003"

    def __init__(self, config: Pms5003Device) -> None:
        super().__init__(config, pms.Pms5003Stream())

    async def _configure(self, link: SerialLink) -> None:
        await link.write(pms.set_active())

    async def _handle(self, frame: pms.Frame, link: SerialLink) -> list[Sample] | None:
        if not isinstance(frame, pms.Measurement):
            return None  # the reply to set_active
        return [
            Sample("pm1_0", float(frame.pm1_0), UG_M3),
            Sample("pm2_5", float(frame.pm2_5), UG_M3),
            Sample("pm10", float(frame.pm10), UG_M3),
            Sample("n0_3", float(frame.n0_3), PER_0_1_L),
            Sample("n0_5", float(frame.n0_5), PER_0_1_L),
            Sample("n1_0", float(frame.n1_0), PER_0_1_L),
            Sample("n2_5", float(frame.n2_5), PER_0_1_L),
            Sample("n5_0", float(frame.n5_0), PER_0_1_L),
            Sample("n10", float(frame.n10), PER_0_1_L),
        ]


class LineSensorDriver(_SerialSensorDriver[list[Sample]]):
    """A device sending one reading per text line; the config's pattern and fields decode it."""

    kind = "line"

    def __init__(self, config: LineSensor) -> None:
        fmt = LineFormat.build(config.pattern, config.fields, config.encoding)
        super().__init__(config, LineStream(fmt))

    async def _handle(self, frame: list[Sample], link: SerialLink) -> list[Sample] | None:
        return frame
