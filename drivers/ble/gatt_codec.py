"""GATT characteristic values as metrics: pure decoding and encoding (no I/O).

A characteristic configured in a ``ble_gatt`` device (:class:`GattCharacteristic`) holds one
number of its ``type`` in ``byte_order`` (little-endian unless said otherwise, as GATT
defines); the value is ``raw × scale + offset``, with the same decimal clean-up as Modbus
registers (:func:`drivers.modbus_codec.scaled`).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from drivers.modbus.codec import raw_for, scaled
from drivers.profile import DataType, MetricSpec, Order
from gateway.core.errors import FrameError
from gateway.core.model import Sample

if TYPE_CHECKING:
    from drivers.ble.config import GattCharacteristic

__all__ = ["CharacteristicCodec"]

_FORMAT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT64: "d",
}


class CharacteristicCodec:
    """Turns the bytes of one configured characteristic into a sample, and back."""

    __slots__ = ("_metric", "_struct", "spec")

    def __init__(self, spec: GattCharacteristic) -> None:
        self.spec = spec
        prefix = "<" if spec.byte_order is Order.LITTLE else ">"
        self._struct = struct.Struct(prefix + _FORMAT[spec.type])
        # scaled()/raw_for() only look at type, scale and offset; the metric's name and unit
        # were validated by the GATT config model, so no second validation is needed here.
        self._metric = MetricSpec.model_construct(
            name=spec.metric,
            address=0,
            type=spec.type,
            scale=spec.scale,
            offset=spec.offset,
            unit=spec.unit,
        )

    @property
    def size(self) -> int:
        """Bytes the characteristic's value must have."""
        return self._struct.size

    def decode(self, data: bytes | bytearray) -> Sample:
        """The sample a read returned; FrameError if the value has the wrong length."""
        spec = self.spec
        if len(data) != self._struct.size:
            raise FrameError(
                f"characteristic {spec.uuid} ({spec.metric}) returned {len(data)} bytes, "
                f"expected {self._struct.size} for a {spec.type.value}"
            )
        raw: int | float = self._struct.unpack(data)[0]
        return Sample(spec.metric, scaled(self._metric, raw), spec.unit)

    def encode(self, value: float) -> bytes:
        """The bytes a device holding ``value`` answers with (ValueError if it does not fit)."""
        try:
            return self._struct.pack(raw_for(self._metric, value))
        except (struct.error, OverflowError, ValueError) as exc:
            raise ValueError(
                f"{self.spec.metric} = {value!r} does not fit a {self.spec.type.value}"
            ) from exc
