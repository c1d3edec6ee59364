"""AES-128 block encryption: cryptolib's AES-ECB where the port has it, else pure Python.

Only the forward cipher is needed: CCM (and so BTHome encryption) never decrypts with AES⁻¹.
"""

_SBOX = bytes.fromhex(
    "637c777bf26b6fc53001672bfed7ab76ca82c97dfa5947f0add4a2af9ca472c0"
    "b7fd9326363ff7cc34a5e5f171d8311504c723c31896059a071280e2eb27b275"
    "09832c1a1b6e5aa0523bd6b329e32f8453d100ed20fcb15b6acbbe394a4c58cf"
    "d0efaafb434d338545f9027f503c9fa851a3408f929d38f5bcb6da2110fff3d2"
    "cd0c13ec5f974417c4a77e3d645d197360814fdc222a908846eeb814de5e0bdb"
    "e0323a0a4906245cc2d3ac629195e479e7c8376d8dd54ea96c56f4ea657aae08"
    "ba78252e1ca6b4c6e8dd741f4bbd8b8a703eb5664803f60e613557b986c11d9e"
    "e1f8981169d98e949b1e87e9ce5528df8ca1890dbfe6426841992d0fb054bb16"
)


def _xtime(a):
    return ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1


def expand_key(key):
    """The 176-byte AES-128 key schedule."""
    if len(key) != 16:
        raise ValueError("AES-128 key: expected 16 bytes, got {}".format(len(key)))
    sbox = _SBOX
    w = bytearray(key)
    rcon = 1
    for i in range(16, 176, 4):
        t0, t1, t2, t3 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
        if i % 16 == 0:
            t0, t1, t2, t3 = sbox[t1] ^ rcon, sbox[t2], sbox[t3], sbox[t0]
            rcon = _xtime(rcon)
        w.append(w[i - 16] ^ t0)
        w.append(w[i - 15] ^ t1)
        w.append(w[i - 14] ^ t2)
        w.append(w[i - 13] ^ t3)
    return bytes(w)


def encrypt_block(schedule, block):
    """One 16-byte block through AES-128 with an expanded key."""
    sbox = _SBOX
    s = bytearray(16)
    for i in range(16):
        s[i] = block[i] ^ schedule[i]
    for rnd in range(1, 11):
        # SubBytes + ShiftRows (state is column-major: byte r + 4c)
        t = bytearray(16)
        for c in range(4):
            for r in range(4):
                t[r + 4 * c] = sbox[s[r + 4 * ((c + r) % 4)]]
        if rnd < 10:  # MixColumns
            for c in range(4):
                a0, a1, a2, a3 = t[4 * c], t[4 * c + 1], t[4 * c + 2], t[4 * c + 3]
                x = a0 ^ a1 ^ a2 ^ a3
                t[4 * c] = a0 ^ x ^ _xtime(a0 ^ a1)
                t[4 * c + 1] = a1 ^ x ^ _xtime(a1 ^ a2)
                t[4 * c + 2] = a2 ^ x ^ _xtime(a2 ^ a3)
                t[4 * c + 3] = a3 ^ x ^ _xtime(a3 ^ a0)
        k = 16 * rnd
        for i in range(16):
            t[i] ^= schedule[k + i]
        s = t
    return bytes(s)


class PureAes:
    """AES-128-ECB encryption in Python (slow, but any port has it)."""

    def __init__(self, key):
        self._schedule = expand_key(key)

    def encrypt(self, block):
        """Encrypt one 16-byte block."""
        return encrypt_block(self._schedule, block)


def ecb(key, pure=False):
    """An object whose encrypt(block) is AES-128-ECB under key."""
    if not pure:
        try:
            import cryptolib
        except ImportError:
            pass
        else:
            return cryptolib.aes(bytes(key), 1)  # mode 1: ECB
    return PureAes(key)


def ccm_encrypt(cipher, nonce, plaintext, mic_len=4):
    """AES-CCM (RFC 3610) without associated data: ciphertext followed by the MIC.

    nonce is 13 bytes (so L = 2: at most 65535 bytes of plaintext).
    """
    if len(nonce) != 13:
        raise ValueError("CCM nonce: expected 13 bytes, got {}".format(len(nonce)))
    size = len(plaintext)
    # CBC-MAC over B0 and the zero-padded plaintext
    flags = (((mic_len - 2) // 2) << 3) | 1
    x = cipher.encrypt(bytes((flags,)) + bytes(nonce) + bytes((size >> 8, size & 0xFF)))
    for start in range(0, size, 16):
        chunk = plaintext[start : start + 16]
        block = bytearray(16)
        for i in range(len(chunk)):
            block[i] = x[i] ^ chunk[i]
        for i in range(len(chunk), 16):
            block[i] = x[i]
        x = cipher.encrypt(bytes(block))
    # CTR: A_i = flags(L-1) | nonce | i
    out = bytearray(size + mic_len)
    counter = 1
    for start in range(0, size, 16):
        stream = cipher.encrypt(bytes((1,)) + bytes(nonce) + bytes((counter >> 8, counter & 0xFF)))
        for i in range(min(16, size - start)):
            out[start + i] = plaintext[start + i] ^ stream[i]
        counter += 1
    s0 = cipher.encrypt(bytes((1,)) + bytes(nonce) + b"\x00\x00")
    for i in range(mic_len):
        out[size + i] = x[i] ^ s0[i]
    return bytes(out)
