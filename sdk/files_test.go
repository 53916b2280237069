package sandpit_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func TestFiles(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()
	f := sb.Files

	// Bytes in, bytes out; parents are created; relative paths are in home.
	e, err := f.Write(ctx, "exp/a/hello.txt", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Path != "/home/user/exp/a/hello.txt" || e.Name != "hello.txt" || e.Type != sandpit.TypeFile {
		t.Errorf("Write = %+v", e)
	}
	if b, err := f.Read(ctx, "/home/user/exp/a/hello.txt"); err != nil || string(b) != "hello" {
		t.Errorf("Read = %q, %v", b, err)
	}

	// Streams both ways, 8 MiB.
	big := make([]byte, 8<<20)
	rand.Read(big)
	if _, err := f.WriteStream(ctx, "exp/big.bin", io.MultiReader(bytes.NewReader(big[:1<<20]), bytes.NewReader(big[1<<20:]))); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if n, err := f.ReadTo(ctx, "exp/big.bin", &out); err != nil || n != int64(len(big)) || !bytes.Equal(out.Bytes(), big) {
		t.Errorf("ReadTo: %d bytes, %v; equal %v", n, err, bytes.Equal(out.Bytes(), big))
	}
	r, err := f.ReadStream(ctx, "exp/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(r, head); err != nil || !bytes.Equal(head, big[:10]) {
		t.Errorf("ReadStream head: %v", err)
	}
	r.Close()

	// An io.Writer that streams into a file.
	fw := f.OpenWriter(ctx, "exp/written.txt")
	for i := range 3 {
		fmt.Fprintf(fw, "line %d\n", i)
	}
	if err := fw.Close(); err != nil || fw.Entry().Path != "/home/user/exp/written.txt" {
		t.Fatalf("OpenWriter: %+v, %v", fw.Entry(), err)
	}
	if b, err := f.Read(ctx, "exp/written.txt"); err != nil || string(b) != "line 0\nline 1\nline 2\n" {
		t.Errorf("OpenWriter wrote %q, %v", b, err)
	}
	fw = f.OpenWriter(ctx, "/proc/not-writable/x")
	fw.Write([]byte("x"))
	if err := fw.Close(); err == nil {
		t.Error("OpenWriter into /proc succeeded")
	}

	// Stat, Exists.
	st, err := f.Stat(ctx, "exp/big.bin")
	if err != nil || st.Size != int64(len(big)) || st.Type != sandpit.TypeFile || st.Owner != "user" || st.ModifiedTime.IsZero() || st.Mode == 0 {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	if ok, err := f.Exists(ctx, "exp/a"); !ok || err != nil {
		t.Errorf("Exists(dir) = %v, %v", ok, err)
	}
	if ok, err := f.Exists(ctx, "exp/nope"); ok || err != nil {
		t.Errorf("Exists(missing) = %v, %v", ok, err)
	}

	// MakeDir: true when created, false when there.
	if ok, err := f.MakeDir(ctx, "exp/b/c"); !ok || err != nil {
		t.Errorf("MakeDir = %v, %v", ok, err)
	}
	if ok, err := f.MakeDir(ctx, "exp/b/c"); ok || err != nil {
		t.Errorf("MakeDir again = %v, %v", ok, err)
	}

	// List, with depth.
	names := func(es []sandpit.EntryInfo) []string {
		var n []string
		for _, e := range es {
			n = append(n, strings.TrimPrefix(e.Path, "/home/user/exp/"))
		}
		slices.Sort(n)
		return n
	}
	es, err := f.List(ctx, "exp")
	if got := names(es); err != nil || !slices.Equal(got, []string{"a", "b", "big.bin", "written.txt"}) {
		t.Errorf("List = %v, %v", got, err)
	}
	es, err = f.List(ctx, "exp", sandpit.WithDepth(3))
	if got := names(es); err != nil || !slices.Equal(got, []string{"a", "a/hello.txt", "b", "b/c", "big.bin", "written.txt"}) {
		t.Errorf("List depth 3 = %v, %v", got, err)
	}
	for _, e := range es {
		if e.Name == "a" && e.Type != sandpit.TypeDir {
			t.Errorf("a is %q", e.Type)
		}
	}

	// Rename, Remove.
	e, err = f.Rename(ctx, "exp/a/hello.txt", "exp/b/moved.txt")
	if err != nil || e.Path != "/home/user/exp/b/moved.txt" {
		t.Errorf("Rename = %+v, %v", e, err)
	}
	if err := f.Remove(ctx, "exp/b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Exists(ctx, "exp/b/moved.txt"); ok {
		t.Error("exp/b/moved.txt exists after Remove(exp/b)")
	}
	if err := f.Remove(ctx, "exp/never-was"); err != nil {
		t.Errorf("Remove(missing) = %v", err)
	}

	// Users: root's files are root's.
	if _, err := f.Write(ctx, "/root/secret", []byte("x"), sandpit.WithUser("root")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Read(ctx, "/root/secret"); !errors.Is(err, sandpit.ErrPermission) {
		t.Errorf("user reading root's file: %v, want ErrPermission", err)
	}

	// Metadata.
	if _, err := f.Write(ctx, "meta.txt", []byte("m"), sandpit.WithMetadata(map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(ctx, "meta.txt"); err != nil || st.Metadata["k"] != "v" {
		t.Errorf("metadata = %v, %v", st.Metadata, err)
	}

	// Typed errors.
	if _, err := f.Read(ctx, "no/such/file"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Read(missing) = %v, want ErrNotFound", err)
	}
	if _, err := f.Stat(ctx, "no/such/file"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
	if _, err := f.List(ctx, "no/such/dir"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("List(missing) = %v, want ErrNotFound", err)
	}
	if _, err := f.List(ctx, "meta.txt"); !errors.Is(err, sandpit.ErrInvalidArgument) {
		t.Errorf("List(file) = %v, want ErrInvalidArgument", err)
	}
	if _, err := f.Rename(ctx, "no/such/file", "x"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Rename(missing) = %v, want ErrNotFound", err)
	}
}

func TestWatch(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()
	if _, err := sb.Files.MakeDir(ctx, "watched/sub"); err != nil {
		t.Fatal(err)
	}
	w, err := sb.Files.Watch(ctx, "watched", sandpit.WithRecursive())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := sb.Files.Write(ctx, "watched/sub/new.txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended: %v", w.Err())
			}
			if ev.Name == "sub/new.txt" && (ev.Type == sandpit.EventCreate || ev.Type == sandpit.EventWrite) {
				goto second
			}
		case <-timeout:
			t.Fatal("no event for sub/new.txt within 10s")
		}
	}
second:
	// The iterator form, on a second watch; Stop ends it.
	w2, err := sb.Files.Watch(ctx, "watched")
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Files.Remove(ctx, "watched/sub"); err != nil {
		t.Fatal(err)
	}
	for ev, err := range w2.All() {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == "sub" && ev.Type == sandpit.EventRemove {
			break
		}
	}
	w2.Stop()
	w2.Stop()
	if _, ok := <-w2.Events(); ok {
		t.Error("Events open after Stop")
	}

	if _, err := sb.Files.Watch(ctx, "no/such/dir"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Watch(missing) = %v, want ErrNotFound", err)
	}
}
