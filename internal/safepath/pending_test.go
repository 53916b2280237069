package safepath

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// TestCreateReplacesAtomically: until Commit the old version is what
// readers see; Abort leaves it as it was; no temporary file remains.
func TestCreateReplacesAtomically(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		target := filepath.Join(f.root, "home/user/file.txt")
		os.Chmod(target, 0o640)
		before, _ := os.Stat(target)
		w, err := f.r.Create("/home/user/file.txt", Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())})
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("partial")
		if data, _ := os.ReadFile(target); string(data) != "inside" {
			t.Errorf("a reader saw %q before Commit", data)
		}
		w.Abort()
		w.Abort()
		after, _ := os.Stat(target)
		if data, _ := os.ReadFile(target); string(data) != "inside" || !os.SameFile(before, after) || after.Mode() != before.Mode() {
			t.Errorf("Abort changed the file: %q %v", data, after.Mode())
		}
		w, err = f.r.Create("/home/user/file.txt", Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())})
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("new")
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err == nil {
			t.Error("a second Commit succeeded")
		}
		w.Abort()
		after, _ = os.Stat(target)
		if data, _ := os.ReadFile(target); string(data) != "new" || after.Mode().Perm() != 0o640 {
			t.Errorf("after Commit: %q %v", data, after.Mode())
		}
		ents, _ := os.ReadDir(filepath.Join(f.root, "home/user"))
		for _, e := range ents {
			if len(e.Name()) > len(tempPrefix) && e.Name()[:len(tempPrefix)] == tempPrefix {
				t.Errorf("temporary file %s left", e.Name())
			}
		}
	})
}

// TestCreateFollowsFinalSymlinks: a write through a symlink replaces its
// target, inside the root, and the link stays a link.
func TestCreateFollowsFinalSymlinks(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		before := f.snapshot(t)
		os.MkdirAll(filepath.Join(f.root, "data/real"), 0o755)
		os.WriteFile(filepath.Join(f.root, "data/real/conf"), []byte("old"), 0o600)
		os.Symlink("/data", filepath.Join(f.root, "home/user/datalink"))
		// Relative, through a directory reached by a symlink: ".." is
		// the real directory's parent.
		os.Symlink("../real/conf", filepath.Join(f.root, "data/real/hop"))
		os.Symlink("/home/user/datalink/real/hop", filepath.Join(f.root, "home/user/conf"))
		w, err := f.r.Create("/home/user/conf", Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())})
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("new")
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(filepath.Join(f.root, "data/real/conf")); string(data) != "new" {
			t.Errorf("the target holds %q", data)
		}
		if fi, err := os.Lstat(filepath.Join(f.root, "home/user/conf")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link was replaced: %v %v", fi, err)
		}
		if fi, _ := os.Stat(filepath.Join(f.root, "data/real/conf")); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", fi.Mode())
		}
		// Links that leave the root land inside it, or fail.
		for _, p := range []string{"/home/user/hostabs", "/home/user/relsecret", "/home/user/deep"} {
			if w, err := f.r.Create(p, Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}); err == nil {
				w.WriteString("pwned")
				w.Commit()
			}
		}
		if after := f.snapshot(t); after != before {
			t.Fatalf("outside changed:\n%s\n---\n%s", before, after)
		}
		if _, err := f.r.Create("/home/user/loop", Owner{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("a symlink loop: %v", err)
		}
		if _, err := f.r.Create("/home/user/dotdot", Owner{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("a symlink to a directory: %v", err)
		}
	})
}

// TestParentsAreMadeForTheUser: as E2B's envd, a write or MkdirAll as a
// user makes missing parents even where only root may create them, and
// gives them to the user; the file itself, and what sits below a directory
// the user may not search, still need the user's permissions.
func TestParentsAreMadeForTheUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching identities needs root")
	}
	forModes(t, func(t *testing.T, f *fixture) {
		os.MkdirAll(filepath.Join(f.root, "root"), 0o700)
		user := f.r.As(Cred{UID: 1000, GID: 1000})
		owner := Owner{UID: 1000, GID: 1000}
		uidOf := func(p string) uint32 {
			st, err := os.Lstat(filepath.Join(f.root, p))
			if err != nil {
				t.Fatal(err)
			}
			return st.Sys().(*syscall.Stat_t).Uid
		}
		w, err := user.Create("/0/deep/x.txt", owner)
		if err != nil {
			t.Fatalf("writing /0/deep/x.txt: %v", err)
		}
		w.WriteString("x")
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"0", "0/deep", "0/deep/x.txt"} {
			if uidOf(p) != 1000 {
				t.Errorf("%s is not the user's", p)
			}
		}
		if created, err := user.MkdirAll("/top/a/b", owner); err != nil || !created {
			t.Fatalf("MkdirAll /top/a/b: %v %v", created, err)
		}
		for _, p := range []string{"top", "top/a", "top/a/b"} {
			if fi, _ := os.Stat(filepath.Join(f.root, p)); uidOf(p) != 1000 || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: uid %d mode %v", p, uidOf(p), fi.Mode())
			}
		}
		// Inside Do the same holds.
		err = user.Do(func(u *Root) error {
			w, err := u.Create("/1/x", owner)
			if err != nil {
				return err
			}
			w.WriteString("y")
			return w.Commit()
		})
		if err != nil || uidOf("1") != 1000 {
			t.Errorf("inside Do: %v", err)
		}
		if _, err := user.Create("/etc/new", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user created a file in /etc: %v", err)
		}
		if _, err := user.Create("/root/d/x", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user made a dir in /root: %v", err)
		}
		if err := user.Rename("/0/deep/x.txt", "/2/x.txt", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("Rename made parents for the user: %v", err)
		}
		// A file the user may write in a directory it may not: the new
		// version keeps the file's owner and mode.
		shared := filepath.Join(f.root, "etc/shared")
		os.WriteFile(shared, []byte("old"), 0o666)
		os.Chmod(shared, 0o666)
		w, err = user.Create("/etc/shared", owner)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("new")
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(shared); uidOf("etc/shared") != 0 || fi.Mode().Perm() != 0o666 {
			t.Errorf("shared file: uid %d mode %v", uidOf("etc/shared"), fi.Mode())
		}
	})
}

// Closing a PendingFile as if it were an *os.File must not look like a
// successful write.
func TestPendingCloseIsNotCommit(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := r.Create("/x", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("Close of an uncommitted PendingFile returned nil")
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("after Close: entries %v (err %v), want none", ents, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
