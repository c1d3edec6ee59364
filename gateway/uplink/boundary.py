"""The one place aiomqtt's exceptions are caught: they leave as :class:`BrokerUnavailable`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiomqtt

from gateway.core.errors import BrokerUnavailable

__all__ = ["mqtt_errors"]


def _first_leaf(group: BaseExceptionGroup[aiomqtt.MqttError]) -> aiomqtt.MqttError:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, aiomqtt.MqttError)
    return leaf


@contextlib.contextmanager
def mqtt_errors(host: str, port: int) -> Iterator[None]:
    """Raise every ``aiomqtt.MqttError`` from the block as ``BrokerUnavailable`` (its cause).

    Publishes run in task groups, so the error may come inside an exception group: the
    first MqttError in it stands for the session; other errors in the group pass on beside it.
    """
    try:
        yield
    except aiomqtt.MqttError as exc:
        raise BrokerUnavailable(host, port, str(exc) or type(exc).__name__) from exc
    except BaseExceptionGroup as group:
        matched, rest = group.split(aiomqtt.MqttError)
        if matched is None:
            raise
        first = _first_leaf(matched)
        lost = BrokerUnavailable(host, port, str(first) or type(first).__name__)
        lost.__cause__ = first
        if rest is None:
            raise lost from first
        raise BaseExceptionGroup(group.message, [lost, *rest.exceptions]) from group
