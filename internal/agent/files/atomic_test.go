package files

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fileState is what an upload must not change when it fails.
type fileState struct {
	sum            [32]byte
	mode           os.FileMode
	uid, gid, ino  uint64
	entriesInDir   []string
	modTimeNanosec int64
}

func stateOf(t *testing.T, p string) fileState {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	ents, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return fileState{
		sum: sha256.Sum256(data), mode: fi.Mode(), uid: uint64(st.Uid), gid: uint64(st.Gid), ino: st.Ino,
		entriesInDir: names, modTimeNanosec: fi.ModTime().UnixNano(),
	}
}

// waitServed waits until the handler has finished n requests.
func (x *harness) waitServed(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for x.served.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the handler finished %d requests, want %d", x.served.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFailedUploadKeepsTheOldFile overwrites a file with uploads that fail
// halfway (the client goes away mid-body; the gzip stream turns out
// corrupt at its end): the old file stays byte for byte, with its mode,
// owner, inode and times, and nothing else appears in its directory.
func TestFailedUploadKeepsTheOldFile(t *testing.T) {
	x := newHarness(t, "")
	dir := filepath.Join(x.root, "home/user/keep")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, x.userUID, x.userUID)
	target := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(target, bytes.Repeat([]byte("the old version\n"), 1<<16), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown(target, x.userUID, x.userUID)
	before := stateOf(t, target)
	check := func(what string) {
		t.Helper()
		if after := stateOf(t, target); !slices.Equal(after.entriesInDir, before.entriesInDir) || after.sum != before.sum ||
			after.mode != before.mode || after.uid != before.uid || after.gid != before.gid || after.ino != before.ino ||
			after.modTimeNanosec != before.modTimeNanosec {
			t.Errorf("%s changed the file: before %+v, after %+v", what, before, after)
		}
	}

	// The client sends 1 MiB of a 10 MB body and closes the connection.
	served := x.served.Load()
	conn, err := net.Dial("tcp", x.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /files?path=/home/user/keep/f.txt HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n")
	conn.Write(bytes.Repeat([]byte("n"), 1<<20))
	conn.Close()
	x.waitServed(t, served+1)
	check("an upload cut short by the client")

	// A gzip body whose checksum is wrong: every byte is written before
	// the failure shows.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("the new version\n"), 1<<16))
	zw.Close()
	body := gz.Bytes()
	body[len(body)-8] ^= 0xff // the CRC-32 of the trailer
	resp, msg := x.postRaw(t, url.Values{"path": {"~/keep/f.txt"}}, bytes.NewReader(body), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != 400 {
		t.Errorf("corrupt gzip: %d %s", resp.StatusCode, msg)
	}
	check("an upload with a corrupt gzip body")

	// A multipart upload whose second part is cut short.
	ctype, mp := multipartBody(t, [2]string{"/home/user/keep/g.txt", "whole"}, [2]string{"/home/user/keep/f.txt", strings.Repeat("x", 1<<20)})
	cut := mp.Bytes()[:mp.Len()-100]
	req, _ := http.NewRequest("POST", x.url(nil), bytes.NewReader(cut))
	req.Header.Set("Content-Type", ctype)
	resp, msg = do(t, req)
	if resp.StatusCode != 400 {
		t.Errorf("cut multipart: %d %s", resp.StatusCode, msg)
	}
	os.Remove(filepath.Join(dir, "g.txt")) // the first part was whole: it stays
	check("a multipart upload cut short")
}

// TestConcurrentWritersAndReaders has several clients overwrite one file
// while others read it, over HTTP and from the filesystem: every read sees
// one whole version, and the file ends as one whole version.
func TestConcurrentWritersAndReaders(t *testing.T) {
	x := newHarness(t, "")
	const writers, rounds, size = 6, 4, 1 << 20
	version := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
	whole := func(b []byte) bool {
		return len(b) == size && bytes.Count(b, b[:1]) == size
	}
	if resp, body := x.postRaw(t, url.Values{"path": {"/tmp/shared.bin"}}, bytes.NewReader(version(0)), nil); resp.StatusCode != 200 {
		t.Fatalf("first write: %d %s", resp.StatusCode, body)
	}
	stop := make(chan struct{})
	var readers, wg sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := plainClient.Get(x.url(url.Values{"path": {"/tmp/shared.bin"}}))
			if err != nil {
				t.Error(err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !whole(b) {
				t.Errorf("a download saw a partial file: status %d, %d bytes, err %v", resp.StatusCode, len(b), err)
				return
			}
		}
	})
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(x.root, "tmp/shared.bin"))
			if err != nil || !whole(b) {
				t.Errorf("a reader saw a partial file: %d bytes, err %v", len(b), err)
				return
			}
		}
	})
	for i := range writers {
		wg.Go(func() {
			for range rounds {
				req, _ := http.NewRequest("POST", x.url(url.Values{"path": {"/tmp/shared.bin"}}), bytes.NewReader(version(i)))
				req.Header.Set("Content-Type", "application/octet-stream")
				resp, err := plainClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("writer %d: %d", i, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if b, err := os.ReadFile(filepath.Join(x.root, "tmp/shared.bin")); err != nil || !whole(b) {
		t.Errorf("the file ended as %d bytes, err %v", len(b), err)
	}
	ents, _ := os.ReadDir(filepath.Join(x.root, "tmp"))
	for _, e := range ents {
		if e.Name() != "shared.bin" {
			t.Errorf("stray entry %q", e.Name())
		}
	}
}
