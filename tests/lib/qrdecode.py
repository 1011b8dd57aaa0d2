"""qrdecode.py: reads back the QR code veilctl draws in a terminal, independently of libqrencode.

veilctl card --qr draws light modules as half blocks (libproto/qr.c): per
text line two module rows, "\u2588" both light, "\u2580" upper light,
"\u2584" lower light, " " both dark, inside a light quiet zone of 2.
This reads the modules, checks the finder and timing patterns and the
format information (BCH), unmasks, de-interleaves the blocks and parses
its segments (numeric, alphanumeric and byte).  Error-correction level M only (what libveil asks for),
versions 1 to 40, no error correction needed: a terminal drawing has no
damaged modules, so any wrong module is a failure to report, not to fix.
Layout rules follow ISO/IEC 18004 as written up in Project Nayuki's QR
Code generator (MIT), whose tables are copied below."""

QUIET = 2

# Error correction level M: codewords per block, number of blocks.
ECC_PER_BLOCK_M = [None, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28,
                   26, 26, 26, 26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28,
                   28, 28, 28, 28, 28]
BLOCKS_M = [None, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17,
            18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49]
FORMAT_MASK = 0x5412
ECL_BITS = {1: "L", 0: "M", 3: "Q", 2: "H"}


class QRError(ValueError):
    pass


def modules_from_text(text):
    """The module matrix (True = dark) of the drawing, quiet zone removed."""
    light = {"\u2588": (True, True), "\u2580": (True, False), "\u2584": (False, True),
             " ": (False, False)}
    lines = [l for l in text.split("\n") if l != ""]
    if not lines:
        raise QRError("no drawing")
    n = len(lines[0])
    if any(len(l) != n for l in lines) or len(lines) != (n + 1) // 2:
        raise QRError("not a square drawing: %d columns, %d lines" % (n, len(lines)))
    rows = [[None] * n for _ in range(n)]
    for i, line in enumerate(lines):
        for x, ch in enumerate(line):
            if ch not in light:
                raise QRError("unexpected character %r" % ch)
            top, bot = light[ch]
            rows[2 * i][x] = not top
            if 2 * i + 1 < n:
                rows[2 * i + 1][x] = not bot
    for y in range(n):
        for x in range(n):
            inside = QUIET <= x < n - QUIET and QUIET <= y < n - QUIET
            if not inside and rows[y][x]:
                raise QRError("quiet zone not light at (%d, %d)" % (x, y))
    size = n - 2 * QUIET
    return [r[QUIET:n - QUIET] for r in rows[QUIET:n - QUIET]], size


def alignment_positions(ver):
    if ver == 1:
        return []
    size = ver * 4 + 17
    num = ver // 7 + 2
    step = (ver * 8 + num * 3 + 5) // (num * 4 - 4) * 2
    return list(reversed([size - 7 - i * step for i in range(num - 1)] + [6]))


def raw_data_modules(ver):
    r = (16 * ver + 128) * ver + 64
    if ver >= 2:
        na = ver // 7 + 2
        r -= (25 * na - 10) * na - 55
        if ver >= 7:
            r -= 36
    return r


def function_map(ver):
    """isfunc[y][x] for every module that is not data; and the expected
    colours of the finder, separator, timing and alignment patterns."""
    size = ver * 4 + 17
    isf = [[False] * size for _ in range(size)]
    want = {}

    def setf(x, y, dark=None):
        isf[y][x] = True
        if dark is not None:
            want[(x, y)] = dark
    for i in range(size):
        setf(6, i, i % 2 == 0)
        setf(i, 6, i % 2 == 0)
    for cx, cy in ((3, 3), (size - 4, 3), (3, size - 4)):
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                x, y = cx + dx, cy + dy
                if 0 <= x < size and 0 <= y < size:
                    d = max(abs(dx), abs(dy))
                    setf(x, y, d not in (2, 4))
    pos = alignment_positions(ver)
    last = len(pos) - 1
    for i, ax in enumerate(pos):
        for j, ay in enumerate(pos):
            if (i, j) in ((0, 0), (0, last), (last, 0)):
                continue
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    setf(ax + dx, ay + dy, max(abs(dx), abs(dy)) != 1)
    # Format information, both copies, and the dark module.
    for i in range(9):
        setf(8, i)
        setf(i, 8)
    for i in range(8):
        setf(size - 1 - i, 8)
        setf(8, size - 1 - i)
    setf(8, size - 8, True)
    if ver >= 7:
        for i in range(18):
            a, b = size - 11 + i % 3, i // 3
            setf(a, b)
            setf(b, a)
    return isf, want


def read_format(m, size):
    """(error correction level, mask) from the first copy, BCH-checked
    against the second copy too."""
    def bit(x, y):
        return 1 if m[y][x] else 0
    first = 0
    for i in range(6):
        first |= bit(8, i) << i
    first |= bit(8, 7) << 6
    first |= bit(8, 8) << 7
    first |= bit(7, 8) << 8
    for i in range(9, 15):
        first |= bit(14 - i, 8) << i
    second = 0
    for i in range(8):
        second |= bit(size - 1 - i, 8) << i
    for i in range(8, 15):
        second |= bit(8, size - 15 + i) << i
    if first != second:
        raise QRError("the two copies of the format differ: %04x %04x" % (first, second))
    bits = first ^ FORMAT_MASK
    data = bits >> 10
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    if ((data << 10) | (rem & 0x3FF)) != bits:
        raise QRError("format information fails its BCH check")
    return ECL_BITS[data >> 3], data & 7


MASKS = [
    lambda x, y: (x + y) % 2 == 0,
    lambda x, y: y % 2 == 0,
    lambda x, y: x % 3 == 0,
    lambda x, y: (x + y) % 3 == 0,
    lambda x, y: (x // 3 + y // 2) % 2 == 0,
    lambda x, y: x * y % 2 + x * y % 3 == 0,
    lambda x, y: (x * y % 2 + x * y % 3) % 2 == 0,
    lambda x, y: ((x + y) % 2 + x * y % 3) % 2 == 0,
]


def decode(text):
    """The bytes a terminal QR drawing encodes, or QRError saying why not."""
    m, size = modules_from_text(text)
    if (size - 17) % 4 or not 1 <= (size - 17) // 4 <= 40:
        raise QRError("%d modules wide is no QR version" % size)
    ver = (size - 17) // 4
    isf, want = function_map(ver)
    bad = [xy for xy, dark in want.items() if m[xy[1]][xy[0]] != dark]
    if bad:
        raise QRError("version %d: %d function modules wrong, e.g. %r" % (ver, len(bad), bad[:3]))
    ecl, mask = read_format(m, size)
    if ecl != "M":
        raise QRError("error correction level %s, libveil asks for M" % ecl)
    ndata = sum(1 for y in range(size) for x in range(size) if not isf[y][x])
    if ndata != raw_data_modules(ver):
        raise QRError("decoder bug: %d data modules, want %d" % (ndata, raw_data_modules(ver)))
    bits = []
    for right in range(size - 1, 0, -2):
        if right <= 6:
            right -= 1
        for vert in range(size):
            for j in range(2):
                x = right - j
                upward = (right + 1) & 2 == 0
                y = size - 1 - vert if upward else vert
                if not isf[y][x]:
                    bits.append(m[y][x] ^ MASKS[mask](x, y))
    raw = raw_data_modules(ver) // 8
    stream = [int("".join("1" if b else "0" for b in bits[i * 8:i * 8 + 8]), 2)
              for i in range(raw)]
    nblocks, ecc = BLOCKS_M[ver], ECC_PER_BLOCK_M[ver]
    nshort = nblocks - raw % nblocks
    short_len = raw // nblocks
    dlen = [short_len - ecc + (0 if i < nshort else 1) for i in range(nblocks)]
    blocks = [[] for _ in range(nblocks)]
    k = 0
    for i in range(max(dlen)):
        for j in range(nblocks):
            if i < dlen[j]:
                blocks[j].append(stream[k])
                k += 1
    data = [c for b in blocks for c in b]
    return parse_segments("".join(format(c, "08b") for c in data), ver), \
        {"version": ver, "ecl": ecl, "mask": mask}


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def parse_segments(dbits, ver):
    """Numeric, alphanumeric and byte segments until the terminator (or
    the end): libqrencode splits even a "byte mode" string into runs."""
    def count_bits(mode):
        small, mid, big = {"0001": (10, 12, 14), "0010": (9, 11, 13),
                           "0100": (8, 16, 16)}[mode]
        return small if ver <= 9 else mid if ver <= 26 else big
    out = bytearray()
    p = 0

    def take(n):
        nonlocal p
        if p + n > len(dbits):
            raise QRError("segment runs past the data")
        v = int(dbits[p:p + n], 2)
        p += n
        return v
    while p + 4 <= len(dbits):
        mode = dbits[p:p + 4]
        p += 4
        if mode == "0000":
            break
        if mode not in ("0001", "0010", "0100"):
            raise QRError("segment mode %s is not numeric, alphanumeric or byte" % mode)
        n = take(count_bits(mode))
        if mode == "0100":
            out += bytes(take(8) for _ in range(n))
        elif mode == "0010":
            for _ in range(n // 2):
                v = take(11)
                out += (ALNUM[v // 45] + ALNUM[v % 45]).encode()
            if n % 2:
                out += ALNUM[take(6)].encode()
        else:
            for _ in range(n // 3):
                out += b"%03d" % take(10)
            if n % 3 == 2:
                out += b"%02d" % take(7)
            elif n % 3 == 1:
                out += b"%d" % take(4)
    return bytes(out)
