"""BTHome advertising: the latest sample as objects, encrypted with a counter never reused."""

from sgnode import aes, bthome

COUNTER_BLOCK = 1024  # counters reserved per write of the counter file
COUNTER_LIMIT = 0x100000000  # the counter is 32 bits: past it, only a new key helps


class NoCounterState(Exception):
    """The counter file is missing or unreadable while a key is configured: encrypting from 0
    again could reuse a nonce of an earlier life under the same key, so the node does not."""


class CounterStore:
    """The encryption counter, never reused across reboots (the CCM nonce must be unique).

    The file holds the first counter no earlier boot handed out; counters are reserved in
    blocks of ``COUNTER_BLOCK``, one small file write per block (flash wear). ``streetgate node
    deploy`` writes ``0`` with a new key; without the file (or with one that does not hold a
    number) :class:`NoCounterState` is raised rather than starting again at 0.
    """

    def __init__(self, path):
        self._path = path
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError as exc:
            raise NoCounterState("cannot read {}: {}".format(path, exc))
        try:
            start = int(text)
        except ValueError:
            start = -1
        if not 0 <= start < COUNTER_LIMIT or not text.isdigit():
            raise NoCounterState("{} holds {!r}, not a counter".format(path, text[:20]))
        self._next = start
        self._limit = start

    def take(self):
        """The next counter (OSError when the file cannot be written)."""
        if self._next >= COUNTER_LIMIT:
            raise OSError("counter exhausted (2**32): deploy a new key")
        if self._next >= self._limit:
            limit = self._next + COUNTER_BLOCK
            with open(self._path, "w") as f:
                f.write(str(limit))
            self._limit = limit
        value = self._next
        self._next += 1
        return value


def objects(r):
    """The BTHome objects of a reading (only its valid values)."""
    out = []
    if r.temp_x100 is not None:
        out.append((bthome.TEMPERATURE, r.temp_x100))
        out.append((bthome.HUMIDITY, r.rh_x100))
    if r.pm25_x10 is not None:
        out.append((bthome.PM25, (r.pm25_x10 + 5) // 10))
        out.append((bthome.PM10, (r.pm10_x10 + 5) // 10))
    return out


class Beacon:
    """Sends the latest reading on the board's advertiser."""

    def __init__(self, board, ble):
        self.advertiser = board.advertiser()
        self.interval_ms = ble.interval_s * 1000
        self.mac = board.mac()
        self.cipher = None
        self.counters = None
        if ble.key is not None:
            self.cipher = aes.ecb(ble.key)
            self.counters = CounterStore(board.state_dir + "/bthome_counter")
        self.log = board.log

    def send(self, reading, packet_id):
        """One advertisement; False once BLE had to be switched off."""
        try:
            counter = self.counters.take() if self.counters is not None else 0
        except OSError as exc:
            # Without a stored counter a reboot would reuse nonces: stop encrypted adverts.
            self.log("ble off: cannot store the encryption counter: {}".format(exc))
            self.advertiser = None
            return False
        data = bthome.encode(
            objects(reading), packet_id=packet_id, cipher=self.cipher, mac=self.mac, counter=counter
        )
        self.advertiser.advertise(data, self.interval_ms)
        return True
