#!/usr/bin/env python3
"""Edit an OpenAFS volume dump: make a mount point, or set the root directory's ACL.

Usage: dumpedit.py IN.dump OUT.dump CONTENTS
       dumpedit.py --acl IN.dump OUT.dump ID:RIGHTS...

The first form finds the one file vnode (type 1) whose data is exactly CONTENTS
(for example "#root.cell."), changes its type to 3 (symlink) and its mode to
0644: that is what a mount point is (a symlink-typed vnode, mode without x bits,
contents "#volume." or "%volume.").

The second form replaces the access list of the volume's root directory (vnode
1) by positive entries ID:RIGHTS (pts ids, rights as a number: r 1, w 2, i 4,
l 8, d 16, k 32, a 64). A dump holds an ACL in network byte order (dumpstuff.c
converts it with acl_HtonACL): size, version 1, total, positive, negative (all
i32), then (id, rights) pairs, zero-filled to 192 bytes; size = 20 + 8 * total.

Everything else is copied byte for byte.

Dump format (OpenAFS src/volser/dumpstuff.c, dump.h; all integers big-endian):
  dump header   0x01, magic u32 0xB3A11322, version u32, then tagged fields
                'v' u32, 'n' NUL-terminated string, 't' u16 count + count*u32
  volume header 0x02, then tagged fields: 'i' 'v' 'u' 'p' 'c' 'q' 'm' 'd' 'f'
                'a' 'o' 'C' 'A' 'U' 'E' 'B' 'D' 'Z' 'V' u32; 's' 'b' 't' u8;
                'n' 'O' 'M' strings; 'W' u16 count + count*u32
  vnode         0x03, vnode u32, uniquifier u32, then tagged fields:
                't' u8 type (1 file, 2 dir, 3 symlink), 'l' u16, 'b' u16 mode,
                'v' 'm' 'a' 'o' 'g' 'p' 's' u32, 'A' 192-byte ACL,
                'f' u32 length + data, 'h' u32 hi + u32 lo length + data
  end           0x04, magic u32 0x3A214B6E
Field tags are > 20 (D_MAX); section tags are <= 20.
"""
import struct
import sys

D_DUMPHEADER, D_VOLUMEHEADER, D_VNODE, D_DUMPEND = 1, 2, 3, 4
D_MAX = 20
ACL_SIZE = 256 - 64  # SIZEOF_LARGEDISKVNODE - SIZEOF_SMALLDISKVNODE

U32 = set(b"ivupcqmdfaoCAUEBDZV")
U8 = set(b"sbt")
STR = set(b"nOM")


class DumpError(Exception):
    pass


def skip_string(buf, pos):
    end = buf.index(b"\0", pos)
    return end + 1


def skip_header_fields(buf, pos, section):
    """Skip the tagged fields of a dump or volume header."""
    while pos < len(buf) and buf[pos] > D_MAX:
        tag = buf[pos]
        pos += 1
        if section == D_DUMPHEADER and tag == ord("t"):
            (n,) = struct.unpack_from(">H", buf, pos)
            pos += 2 + 4 * n
        elif tag == ord("W"):
            (n,) = struct.unpack_from(">H", buf, pos)
            pos += 2 + 4 * n
        elif tag in STR:
            pos = skip_string(buf, pos)
        elif tag in U8:
            pos += 1
        elif tag in U32:
            pos += 4
        else:
            raise DumpError("unknown header tag %r at %d" % (chr(tag), pos - 1))
    return pos


def encode_acl(entries):
    """The 192-byte dump form of an ACL with positive ENTRIES [(id, rights)]."""
    entries = sorted(entries)
    acl = struct.pack(">iiiii", 20 + 8 * len(entries), 1, len(entries), len(entries), 0)
    for pts_id, rights in entries:
        acl += struct.pack(">ii", pts_id, rights)
    if len(acl) > ACL_SIZE:
        raise DumpError("too many ACL entries")
    return acl.ljust(ACL_SIZE, b"\0")


def main():
    acl = None
    if len(sys.argv) >= 2 and sys.argv[1] == "--acl":
        if len(sys.argv) < 5:
            sys.exit(__doc__)
        acl = encode_acl([tuple(int(x) for x in e.split(":")) for e in sys.argv[4:]])
        src, dst, contents = sys.argv[2], sys.argv[3], None
    elif len(sys.argv) == 4:
        src, dst, contents = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    else:
        sys.exit(__doc__)
    buf = bytearray(open(src, "rb").read())
    pos = 0
    if buf[0] != D_DUMPHEADER:
        raise DumpError("not a volume dump")
    magic, _version = struct.unpack_from(">II", buf, 1)
    if magic != 0xB3A11322:
        raise DumpError("bad dump magic %#x" % magic)
    pos = skip_header_fields(buf, 9, D_DUMPHEADER)
    matches = []
    acl_offs = []
    while True:
        tag = buf[pos]
        if tag == D_VOLUMEHEADER:
            pos = skip_header_fields(buf, pos + 1, D_VOLUMEHEADER)
        elif tag == D_VNODE:
            vnode, uniq = struct.unpack_from(">II", buf, pos + 1)
            pos += 9
            type_off = mode_off = None
            vtype = None
            data = None
            while buf[pos] > D_MAX:
                t = buf[pos]
                pos += 1
                if t == ord("t"):
                    type_off, vtype = pos, buf[pos]
                    pos += 1
                elif t == ord("l"):
                    pos += 2
                elif t == ord("b"):
                    mode_off = pos
                    pos += 2
                elif t in b"vmaogps":
                    pos += 4
                elif t == ord("A"):
                    if vnode == 1:
                        acl_offs.append(pos)
                    pos += ACL_SIZE
                elif t in (ord("f"), ord("h")):
                    if t == ord("f"):
                        (n,) = struct.unpack_from(">I", buf, pos)
                        pos += 4
                    else:
                        hi, lo = struct.unpack_from(">II", buf, pos)
                        n = (hi << 32) | lo
                        pos += 8
                    data = bytes(buf[pos:pos + n]) if n <= 4096 else None
                    pos += n
                else:
                    raise DumpError("unknown vnode tag %r at %d" % (chr(t), pos - 1))
            if vtype == 1 and data == contents:
                matches.append((vnode, uniq, type_off, mode_off))
        elif tag == D_DUMPEND:
            (magic,) = struct.unpack_from(">I", buf, pos + 1)
            if magic != 0x3A214B6E:
                raise DumpError("bad end magic %#x" % magic)
            break
        else:
            raise DumpError("unexpected section tag %d at %d" % (tag, pos))
    if acl is not None:
        if len(acl_offs) != 1:
            raise DumpError("expected one ACL of the root directory, found %d" % len(acl_offs))
        buf[acl_offs[0]:acl_offs[0] + ACL_SIZE] = acl
        open(dst, "wb").write(buf)
        print("root directory ACL set: %s" % " ".join(sys.argv[4:]))
        return
    if len(matches) != 1:
        raise DumpError("expected exactly one file containing %r, found %d"
                        % (contents, len(matches)))
    vnode, uniq, type_off, mode_off = matches[0]
    if type_off is None or mode_off is None:
        raise DumpError("vnode %d has no type or mode field" % vnode)
    buf[type_off] = 3
    struct.pack_into(">H", buf, mode_off, 0o644)
    open(dst, "wb").write(buf)
    print("vnode %d.%d is now a mount point: %s" % (vnode, uniq, contents.decode()))


if __name__ == "__main__":
    try:
        main()
    except (DumpError, IndexError, struct.error, ValueError) as e:
        sys.exit("dumpedit: %s" % e)
