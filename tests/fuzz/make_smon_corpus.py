#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/smon_fuzz.cc into tests/fuzz/corpus_smon/ (or the given dir).

A seed is a little-endian u16 selector then an FS request payload (protocol/fs.h: FsReqFixed, u16-length
path, u16-length path2, write data). selector = op_index + 12 (forces vNode 1); + 24 more forces vNode 2.
Rerun it when FsReqFixed changes:  python3 tests/fuzz/make_smon_corpus.py
"""
import os
import struct
import sys

OPS = ["getattr", "create", "read", "write", "setattr", "readdir", "mkdir", "rmdir", "unlink", "rename",
       "fsync", "statfs"]


def seed(op, path="", path2="", data=b"", flags=0, offset=0, length=0, mode=0, valid=0, uid=0, gid=0,
         atime=0, mtime=0, vnode=1, request_id=0):
    sel = OPS.index(op) + 12 + (24 if vnode == 2 else 0)
    fixed = struct.pack("<IIQQIIIIqqQ", vnode, flags, offset, length, mode, valid, uid, gid, atime, mtime,
                        request_id)
    assert len(fixed) == 64
    body = fixed + struct.pack("<H", len(path)) + path.encode() + struct.pack("<H", len(path2)) + path2.encode()
    return struct.pack("<H", sel) + body + data


SEEDS = {
    "mkdir_d.bin": seed("mkdir", "d", mode=0o755),
    "mkdir_with_id.bin": seed("mkdir", "e", mode=0o755, request_id=7),
    "unlink_with_id.bin": seed("unlink", "d/f", request_id=7),
    "create_d_f.bin": seed("create", "d/f", mode=0o644),
    "create_excl.bin": seed("create", "x", mode=0o600, flags=1),
    "write_d_f.bin": seed("write", "d/f", offset=5, data=b"hello, smon"),
    "read_d_f.bin": seed("read", "d/f", length=4096),
    "setattr_all.bin": seed("setattr", "d/f", valid=0x3f, mode=0o600, length=3, atime=1, mtime=2),
    "readdir_root.bin": seed("readdir", ""),
    "rename_exchange.bin": seed("rename", "d/f", "x", flags=2),
    "rename_noreplace.bin": seed("rename", "x", "d/g", flags=1),
    "unlink.bin": seed("unlink", "d/g"),
    "rmdir.bin": seed("rmdir", "d"),
    "fsync_data.bin": seed("fsync", "d/f", flags=1),
    "statfs.bin": seed("statfs", ""),
    "getattr_v2.bin": seed("getattr", "", vnode=2),
    "read_through_symlink.bin": seed("read", "tmp/canary", length=100),
    "write_symlink.bin": seed("write", "canary", data=b"pwned"),
    "create_under_up.bin": seed("create", "up/evil", mode=0o644),
    "setattr_rel_size.bin": seed("setattr", "rel", valid=8, length=0),
    "write_big_offset.bin": seed("write", "d/f", offset=(16 << 20) - 1, data=b"zz"),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "corpus_smon")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"make_smon_corpus.py: wrote {len(SEEDS)} seeds to {out}")
