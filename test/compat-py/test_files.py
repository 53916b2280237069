"""Files through the official e2b Python SDK, sync and async: text and
bytes, streams, gzip, many files at once, list, exists, get_info, make_dir,
rename, remove, watch, signed URLs, and the exceptions of each failure."""

import io
import os
import secrets
import time
import urllib.error
import urllib.request

import pytest
from e2b import (
    AsyncSandbox,
    FileNotFoundException,
    FilesystemEventType,
    FileType,
    InvalidArgumentException,
    NotFoundException,
    Sandbox,
    SandboxException,
)


@pytest.fixture(scope="module")
def sbx(server):
    s = server.track(Sandbox.create())
    yield s
    s.kill()


def test_text_and_bytes(sbx):
    info = sbx.files.write("/home/user/hello.txt", "héllo\n")
    assert info.path == "/home/user/hello.txt" and info.name == "hello.txt"
    assert info.type == FileType.FILE
    assert sbx.files.read("/home/user/hello.txt") == "héllo\n"
    every = bytes(range(256)) * 4
    sbx.files.write("bytes.bin", every)  # relative to the user's home
    got = sbx.files.read("/home/user/bytes.bin", format="bytes")
    assert isinstance(got, bytearray | bytes) and bytes(got) == every
    stream = sbx.files.read("/home/user/bytes.bin", format="stream")
    assert b"".join(stream) == every
    sbx.files.write("/home/user/hello.txt", "")
    assert sbx.files.read("/home/user/hello.txt") == ""


def test_file_objects_iterables_and_gzip(sbx):
    blob = os.urandom(3 << 20)
    sbx.files.write("/home/user/big.bin", io.BytesIO(blob))
    assert bytes(sbx.files.read("/home/user/big.bin", format="bytes")) == blob
    sbx.files.write("/home/user/chunks.bin", iter([b"a" * 10, b"b" * 10]))
    assert sbx.files.read("/home/user/chunks.bin") == "a" * 10 + "b" * 10
    sbx.files.write("/home/user/gz.txt", "zipped " * 1000, gzip=True)
    assert sbx.files.read("/home/user/gz.txt", gzip=True) == "zipped " * 1000
    r = sbx.commands.run("sha256sum /home/user/big.bin | cut -c1-64")
    import hashlib

    assert r.stdout.strip() == hashlib.sha256(blob).hexdigest()


def test_write_many(sbx):
    infos = sbx.files.write_files(
        [
            {"path": "/home/user/many/a.txt", "data": "A"},
            {"path": "/home/user/many/deep/b.bin", "data": b"\x00B"},
            {"path": "/home/user/many/c.txt", "data": io.BytesIO(b"C")},
        ]
    )
    assert sorted(i.path for i in infos) == ["/home/user/many/a.txt", "/home/user/many/c.txt", "/home/user/many/deep/b.bin"]
    assert sbx.commands.run("cat many/a.txt many/deep/b.bin many/c.txt | od -An -c | tr -s ' '").stdout.strip() == "A \\0 B C"


def test_list_exists_info_make_dir(sbx):
    root = "/home/user/tree-" + secrets.token_hex(3)
    assert sbx.files.make_dir(f"{root}/sub/deeper") is True
    assert sbx.files.make_dir(f"{root}/sub") is False, "make_dir of an existing dir"
    sbx.files.write(f"{root}/f.txt", "12345")
    sbx.files.write(f"{root}/sub/g.txt", "x")
    top = sbx.files.list(root)
    assert sorted((e.name, e.type) for e in top) == [("f.txt", FileType.FILE), ("sub", FileType.DIR)]
    deep = sbx.files.list(root, depth=3)
    assert sorted(e.path.removeprefix(root) for e in deep) == ["/f.txt", "/sub", "/sub/deeper", "/sub/g.txt"]
    assert sbx.files.exists(f"{root}/f.txt") and sbx.files.exists(f"{root}/sub")
    assert not sbx.files.exists(f"{root}/nope")
    info = sbx.files.get_info(f"{root}/f.txt")
    assert (info.name, info.type, info.size, info.owner) == ("f.txt", FileType.FILE, 5, "user")
    assert info.permissions.startswith("-rw") and info.modified_time is not None
    with pytest.raises(FileNotFoundException) as e:
        sbx.files.list(f"{root}/nope")
    assert isinstance(e.value, NotFoundException)
    with pytest.raises(FileNotFoundException):
        sbx.files.get_info(f"{root}/nope")
    with pytest.raises(FileNotFoundException):
        sbx.files.read(f"{root}/nope")
    # A file where a directory is wanted is an invalid argument.
    with pytest.raises(InvalidArgumentException):
        sbx.files.list(f"{root}/f.txt")
    with pytest.raises(InvalidArgumentException):
        sbx.files.read(root)


def test_rename_remove(sbx):
    sbx.files.write("/home/user/old.txt", "moved")
    info = sbx.files.rename("/home/user/old.txt", "/home/user/new.txt")
    assert info.path == "/home/user/new.txt"
    assert sbx.files.read("/home/user/new.txt") == "moved"
    assert not sbx.files.exists("/home/user/old.txt")
    with pytest.raises(FileNotFoundException):
        sbx.files.rename("/home/user/no-such", "/home/user/x")
    sbx.files.make_dir("/home/user/gone/inner")
    sbx.files.remove("/home/user/new.txt")
    sbx.files.remove("/home/user/gone")
    assert not sbx.files.exists("/home/user/new.txt") and not sbx.files.exists("/home/user/gone")


def test_watch_dir(sbx):
    d = "/home/user/watched-" + secrets.token_hex(3)
    sbx.files.make_dir(d)
    h = sbx.files.watch_dir(d)
    sbx.files.write(f"{d}/w.txt", "1")
    sbx.commands.run(f"echo more >> {d}/w.txt; rm {d}/w.txt")
    events = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events += h.get_new_events()
        if any(e.type == FilesystemEventType.REMOVE for e in events):
            break
        time.sleep(0.05)
    h.stop()
    kinds = [e.type for e in events if e.name == "w.txt"]
    assert FilesystemEventType.CREATE in kinds and FilesystemEventType.WRITE in kinds, events
    assert kinds.index(FilesystemEventType.CREATE) < kinds.index(FilesystemEventType.REMOVE), events
    with pytest.raises(SandboxException):
        h.get_new_events()
    rh = sbx.files.watch_dir(d, recursive=True)
    sbx.files.write(f"{d}/sub/deep.txt", "x")
    deadline, names = time.monotonic() + 10, set()
    while "sub/deep.txt" not in names and time.monotonic() < deadline:
        names |= {e.name for e in rh.get_new_events()}
        time.sleep(0.05)
    rh.stop()
    assert "sub/deep.txt" in names, names
    with pytest.raises(FileNotFoundException):
        sbx.files.watch_dir("/home/user/no-such-dir")


def test_file_metadata_and_watch_entries(sbx):
    info = sbx.files.write("/home/user/tagged.txt", "abc", metadata={"Owner": "me", "stage": "raw"})
    assert info.metadata == {"owner": "me", "stage": "raw"}  # keys are lowercased
    assert sbx.files.get_info("/home/user/tagged.txt").metadata == {"owner": "me", "stage": "raw"}
    d = "/home/user/entries-" + secrets.token_hex(3)
    sbx.files.make_dir(d)
    h = sbx.files.watch_dir(d, include_entry=True)
    sbx.files.write(f"{d}/e.txt", "12345")
    deadline, events = time.monotonic() + 10, []
    while not any(e.entry is not None and e.entry.size == 5 for e in events) and time.monotonic() < deadline:
        events += h.get_new_events()
        time.sleep(0.05)
    h.stop()
    assert any(e.name == "e.txt" and e.entry is not None and e.entry.size == 5 for e in events), events


def test_signed_urls(server, sbx):
    path = "/home/user/signed.txt"
    up = sbx.upload_url(path, use_signature_expiration=60)
    assert up.startswith(server.url + "/files?"), up
    boundary = "sandpitboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="signed.txt"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\nvia a signed URL\r\n--{boundary}--\r\n"
    ).encode()
    req = urllib.request.Request(up, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    down = sbx.download_url(path)
    with urllib.request.urlopen(down, timeout=10) as r:
        assert r.read() == b"via a signed URL"
    tampered = down.replace("signature=v1_", "signature=v1_A")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=10)
    assert e.value.code in (401, 403)
    assert sbx.files.get_info(path).owner == "user"


@pytest.mark.asyncio
async def test_async_files(server):
    s = await AsyncSandbox.create()
    server.track(s)
    await s.files.write("/home/user/a.txt", "async text")
    assert await s.files.read("/home/user/a.txt") == "async text"
    await s.files.write("/home/user/b.bin", b"\x00\x01")
    assert bytes(await s.files.read("/home/user/b.bin", format="bytes")) == b"\x00\x01"
    await s.files.write_files([{"path": "/home/user/m/1", "data": "1"}, {"path": "/home/user/m/2", "data": b"2"}])
    assert sorted(e.name for e in await s.files.list("/home/user/m")) == ["1", "2"]
    assert await s.files.exists("/home/user/m/1")
    assert await s.files.make_dir("/home/user/d") is True
    await s.files.rename("/home/user/a.txt", "/home/user/d/a.txt")
    assert (await s.files.get_info("/home/user/d/a.txt")).size == len("async text")
    await s.files.remove("/home/user/d")
    assert not await s.files.exists("/home/user/d")
    with pytest.raises(FileNotFoundException):
        await s.files.read("/home/user/d/a.txt")
    seen = []
    h = await s.files.watch_dir("/home/user/m", on_event=lambda e: seen.append((e.name, e.type)))
    await s.files.write("/home/user/m/3", "3")
    for _ in range(200):
        if ("3", FilesystemEventType.CREATE) in seen:
            break
        import asyncio

        await asyncio.sleep(0.05)
    await h.stop()
    assert ("3", FilesystemEventType.CREATE) in seen, seen
    await s.kill()
