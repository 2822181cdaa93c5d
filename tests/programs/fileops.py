#!/usr/bin/env python3
"""File operations a program makes, checked against what Linux promises; prints one line per step.

Run it in an empty directory: locally and in a vNode it must print the same bytes (tests/e2e/storage_test.cc).
"""
import errno
import mmap
import os
import shutil
import sys


def expect_errno(want, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        print(f"{fn.__name__}: {errno.errorcode.get(e.errno, e.errno)}")
        assert e.errno == want, (fn.__name__, e.errno, want)
        return
    raise AssertionError(f"{fn.__name__}{args} did not fail with {errno.errorcode[want]}")


def main():
    # Write, read back, append, sizes.
    with open("a.txt", "w") as f:
        for i in range(20000):
            f.write(f"line {i} {'x' * (i % 37)}\n")
    data = open("a.txt").read()
    print("a.txt", len(data), data.count("\n"), os.stat("a.txt").st_size)
    with open("a.txt", "a") as f:
        f.write("tail\n")
    print("appended", os.path.getsize("a.txt"), open("a.txt").read().endswith("tail\n"))

    # Binary, unaligned writes at offsets, holes, truncate.
    with open("b.bin", "wb") as f:
        f.write(bytes(range(256)) * 4096)
        f.seek(5000)
        f.write(b"HELLO")
        f.seek(3 << 20)
        f.write(b"end")
    st = os.stat("b.bin")
    with open("b.bin", "rb") as f:
        f.seek(4998)
        print("b.bin", st.st_size, f.read(9).hex())
        f.seek((3 << 20) - 2)
        print("hole", f.read(5).hex())
    os.truncate("b.bin", 4096)
    print("truncated", os.path.getsize("b.bin"), open("b.bin", "rb").read()[-4:].hex())

    # mmap of a file, read through the mapping.
    with open("a.txt", "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        print("mmap", m[:10], m.find(b"line 19999"))
        m.close()

    # Directories, rename, listing, fsync.
    os.mkdir("d")
    os.makedirs("d/e/f")
    for i in range(300):
        with open(f"d/e/file{i:03d}", "w") as f:
            f.write(str(i) * (i % 50 + 1))
    os.rename("a.txt", "d/moved.txt")
    os.rename("d/e", "d/g")
    fd = os.open("d/g/file007", os.O_RDWR)
    os.write(fd, b"fsynced")
    os.fsync(fd)
    os.close(fd)
    print("listing", sorted(os.listdir("d")), len(os.listdir("d/g")))
    print("reread", open("d/g/file007").read(), open("d/g/file299").read()[:12])
    print("walk", sum(len(files) for _, _, files in os.walk(".")))
    os.replace("d/g/file001", "d/g/file002")
    print("replaced", open("d/g/file002").read(), os.path.exists("d/g/file001"))
    os.chmod("b.bin", 0o600)
    os.utime("b.bin", (1000000000, 1000000000))
    st = os.stat("b.bin")
    print("attrs", oct(st.st_mode & 0o777), int(st.st_mtime))

    # Errors a program must see with the right errno.
    expect_errno(errno.ENOENT, open, "missing.txt")
    expect_errno(errno.ENOENT, os.stat, "nodir/x")
    expect_errno(errno.EEXIST, os.mkdir, "d")
    expect_errno(errno.EEXIST, os.open, "b.bin", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.ENOTEMPTY, os.rmdir, "d")
    expect_errno(errno.ENAMETOOLONG, open, "n" * 300, "w")
    expect_errno(errno.EISDIR, open, "d", "w")
    expect_errno(errno.ENOTDIR, os.listdir, "b.bin")
    expect_errno(errno.ENOENT, os.rename, "missing", "other")
    expect_errno(errno.ENOENT, os.unlink, "missing")

    # Clean up part of it; what stays is listed.
    shutil.rmtree("d/g")
    print("left", sorted(os.listdir(".")), sorted(os.listdir("d")))
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
