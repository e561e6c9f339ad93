#!/usr/bin/env python3
"""Independent check of a PNG written by cubeflow::plot (used by tests/plot).

usage: png_check.py [--pure] [--mpl] FILE [X,Y ...]

Prints one JSON object: width, height, colour type, bit depth, whether every chunk CRC is
valid (zlib.crc32), the chunk types, and the RGB values at the given pixel positions decoded
by a pure-stdlib decoder (--pure: zlib + struct, all five PNG filters) and/or by
matplotlib.image.imread (--mpl; "mpl": null if matplotlib is not importable).
"""
import json
import struct
import sys
import zlib


def chunks(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit("bad signature")
    off = 8
    while off + 12 <= len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        ctype = data[off + 4:off + 8]
        body = data[off + 8:off + 8 + n]
        (crc,) = struct.unpack(">I", data[off + 8 + n:off + 12 + n])
        yield ctype.decode("ascii"), body, (zlib.crc32(ctype + body) & 0xFFFFFFFF) == crc
        off += 12 + n


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(width, height, ctype, idat):
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows = []
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
            elif ftype == 4:
                line[i] = (line[i] + paeth(a, b, c)) & 0xFF
            elif ftype != 0:
                raise SystemExit("bad filter type %d" % ftype)
        rows.append(line)
        prev = line
    return rows, bpp


def main():
    args = sys.argv[1:]
    pure = "--pure" in args
    mpl = "--mpl" in args
    args = [a for a in args if not a.startswith("--")]
    path, points = args[0], [tuple(int(v) for v in p.split(",")) for p in args[1:]]
    data = open(path, "rb").read()
    out = {"crc_ok": True, "chunks": []}
    idat = b""
    for ctype, body, ok in chunks(data):
        out["chunks"].append(ctype)
        out["crc_ok"] = out["crc_ok"] and ok
        if ctype == "IHDR":
            w, h, depth, colour, comp, filt, inter = struct.unpack(">IIBBBBB", body)
            out.update(width=w, height=h, bit_depth=depth, colour_type=colour, interlace=inter)
        elif ctype == "IDAT":
            idat += body
    if pure:
        rows, bpp = decode(out["width"], out["height"], out["colour_type"], idat)
        px = []
        for x, y in points:
            p = rows[y][x * bpp:(x + 1) * bpp]
            px.append([p[0], p[0], p[0]] if bpp <= 2 else [p[0], p[1], p[2]])
        out["pure"] = px
    if mpl:
        try:
            import matplotlib.image as mpimg
            img = mpimg.imread(path)
            out["mpl_shape"] = list(img.shape)
            out["mpl"] = [[int(round(float(img[y, x, k]) * 255)) for k in range(3)] for x, y in points]
        except ImportError:
            out["mpl"] = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
