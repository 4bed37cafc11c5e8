"""The few pieces of the WebAssembly binary format the scripts here need."""


def leb(data, pos):
    """Reads an unsigned LEB128 at pos; returns (value, next position)."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def enc(value):
    """Encodes an unsigned LEB128."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sections(data):
    """Yields (id, start, body start, end) of each section of a module."""
    if data[:4] != b"\0asm":
        raise SystemExit("not a wasm module")
    pos = 8
    while pos < len(data):
        size, body = leb(data, pos + 1)
        yield data[pos], pos, body, body + size
        pos = body + size
