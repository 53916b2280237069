package safepath

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

const secret = "HOST-SECRET"

// fixture is a root directory with an account database and hostile
// symlinks, next to an "outside" directory holding a secret that no
// operation may read, change or add to.
type fixture struct {
	dir     string // parent of root and outside
	root    string
	outside string
	r       *Root
}

func newFixture(t testing.TB, useOpenat2 bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, root: filepath.Join(dir, "root"), outside: filepath.Join(dir, "outside")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "home/user/sub", "tmp", "proc"} {
		must(os.MkdirAll(filepath.Join(f.root, d), 0o755))
	}
	must(os.MkdirAll(f.outside, 0o755))
	must(os.WriteFile(filepath.Join(f.outside, "secret.txt"), []byte(secret), 0o644))
	must(os.WriteFile(filepath.Join(f.root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/bash\n"), 0o644))
	must(os.WriteFile(filepath.Join(f.root, "etc/group"), []byte("root:x:0:\nuser:x:1000:\n"), 0o644))
	must(os.WriteFile(filepath.Join(f.root, "home/user/file.txt"), []byte("inside"), 0o644))
	must(os.WriteFile(filepath.Join(f.root, "secret.txt"), []byte("root-secret-is-fine"), 0o644))
	links := map[string]string{
		"home/user/abs":        "/etc",
		"home/user/up":         "../../..",
		"home/user/deep":       "../../../../../../../../../../outside/secret.txt",
		"home/user/loop":       "loop",
		"home/user/procroot":   "/proc/self/root",
		"home/user/procfd":     "/proc/self/fd",
		"home/user/dangling":   "/nonexistent/x",
		"home/user/hostabs":    filepath.Join(f.outside, "secret.txt"),
		"home/user/hostdir":    f.outside,
		"home/user/relsecret":  "../../../outside/secret.txt",
		"home/user/dotdot":     "..",
		"home/user/chain1":     "chain2",
		"home/user/chain2":     "/home/user/up/../../outside",
		"home/user/rootlink":   "/",
		"home/user/slashdots":  "/../../../../",
		"home/user/sub/parent": "../../../..",
	}
	for name, target := range links {
		must(os.Symlink(target, filepath.Join(f.root, name)))
	}
	r, err := open(f.root, useOpenat2)
	must(err)
	t.Cleanup(func() { r.Close() })
	f.r = r
	return f
}

// snapshot lists everything under the outside directory with contents.
func (f *fixture) snapshot(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(p, f.root+"/") || p == f.root {
			return nil
		}
		b.WriteString(p)
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			b.WriteString("=" + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// insideRoot reports whether the open file f is inside the fixture's root.
func (f *fixture) insideRoot(t testing.TB, file *os.File) bool {
	t.Helper()
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(file.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return real == f.root || strings.HasPrefix(real, f.root+"/")
}

func hostilePaths(f *fixture) []string {
	return []string{
		"..", "../..", "../../outside/secret.txt", "/../outside/secret.txt",
		"/../../../../outside/secret.txt", "~/../../../outside/secret.txt",
		"../../../outside", "./../../outside/secret.txt", "sub/../../../../outside/secret.txt",
		"/home/user/up/outside/secret.txt", "/home/user/up/../outside/secret.txt",
		"/home/user/deep", "/home/user/abs/../../outside/secret.txt", "/home/user/relsecret",
		"/home/user/hostabs", "/home/user/hostdir/secret.txt", "/home/user/hostdir",
		"/home/user/dotdot/dotdot/dotdot/outside/secret.txt", "/home/user/chain1/secret.txt",
		"/home/user/rootlink/../outside/secret.txt", "/home/user/slashdots/outside/secret.txt",
		"/home/user/sub/parent/outside/secret.txt", "/home/user/sub/parent/../outside/secret.txt",
		"/home/user/procroot" + f.outside + "/secret.txt", "/home/user/procroot/etc/passwd",
		"/home/user/procfd/0", "/proc/self/root" + f.outside + "/secret.txt",
		"/proc/self/cwd/secret.txt", "/proc/1/root/etc/shadow",
		f.outside + "/secret.txt", f.dir + "/outside/secret.txt", f.root + "/../outside/secret.txt",
		"/home/user/loop", "/home/user/loop/x", "/home/user/dangling",
		"home/user/up/up/up", "//outside//secret.txt", "/./../outside/./secret.txt",
		"~", "~/", "~/abs/passwd", "/home/user/file.txt/../../../outside/secret.txt",
		"/home/user/file.txt/x", strings.Repeat("../", 100) + "outside/secret.txt",
		strings.Repeat("a/", 3000) + "x", "/" + strings.Repeat("x", 300),
	}
}

func forModes(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, mode := range []struct {
		name    string
		openat2 bool
	}{{"openat2", true}, {"securejoin", false}} {
		t.Run(mode.name, func(t *testing.T) { fn(t, newFixture(t, mode.openat2)) })
	}
}

func TestTraversalRead(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		before := f.snapshot(t)
		for _, p := range hostilePaths(f) {
			abs, err := Resolve(p, "/home/user", "")
			if err != nil {
				continue
			}
			if file, _, err := f.r.OpenRegular(abs); err == nil {
				data, _ := io.ReadAll(file)
				if bytes.Contains(data, []byte(secret)) || !f.insideRoot(t, file) {
					t.Errorf("OpenRegular(%q) escaped the root", p)
				}
				file.Close()
			}
			for _, flags := range []int{unix.O_RDONLY, unix.O_PATH, unix.O_RDONLY | unix.O_DIRECTORY, unix.O_RDWR} {
				if file, err := f.r.OpenFile(abs, flags); err == nil {
					if !f.insideRoot(t, file) {
						t.Errorf("OpenFile(%q, %#x) escaped the root", p, flags)
					}
					file.Close()
				}
			}
			if fi, err := f.r.Stat(abs); err == nil && fi.Size() == int64(len(secret)) {
				t.Errorf("Stat(%q) looks like the host secret", p)
			}
			f.r.Lstat(abs)
			f.r.Readlink(abs)
			f.r.ReadDir(abs)
			f.r.Metadata(abs)
		}
		if after := f.snapshot(t); after != before {
			t.Fatalf("outside changed:\n%s\n---\n%s", before, after)
		}
	})
}

func TestTraversalWrite(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		before := f.snapshot(t)
		for _, p := range hostilePaths(f) {
			abs, err := Resolve(p, "/home/user", "")
			if err != nil {
				continue
			}
			if file, err := f.r.Create(abs, Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}); err == nil {
				if !f.insideRoot(t, file.File) {
					t.Errorf("Create(%q) escaped the root", p)
				}
				file.WriteString("pwned")
				file.Commit()
			}
			f.r.MkdirAll(abs+"/newdir", Owner{})
			f.r.MkdirAll(abs, Owner{})
			f.r.Rename(abs, "/tmp/moved", Owner{})
			f.r.Rename("/tmp/moved", abs, Owner{})
			f.r.Rename("/home/user/file.txt", abs+"/x", Owner{})
		}
		if after := f.snapshot(t); after != before {
			t.Fatalf("outside changed:\n%s\n---\n%s", before, after)
		}
		for _, p := range hostilePaths(f) {
			if abs, err := Resolve(p, "/home/user", ""); err == nil && abs != "/" {
				f.r.RemoveAll(abs)
			}
		}
		if after := f.snapshot(t); after != before {
			t.Fatalf("outside changed by RemoveAll:\n%s\n---\n%s", before, after)
		}
	})
}

func TestSymlinksResolveInsideRoot(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		cases := []struct {
			path string
			want string // content read, "" for an error
		}{
			{"/home/user/abs/passwd", "root:x:0:0"},
			{"/home/user/up/secret.txt", "root-secret-is-fine"},
			{"/home/user/relsecret", ""},
			{"/home/user/deep", ""},
			{"/home/user/hostabs", ""},
			{"/home/user/rootlink/home/user/file.txt", "inside"},
			{"/home/user/slashdots/home/user/file.txt", "inside"},
			{"/home/user/dotdot/user/file.txt", "inside"},
			{"/home/user/loop", ""},
		}
		for _, c := range cases {
			file, _, err := f.r.OpenRegular(c.path)
			if c.want == "" {
				if err == nil {
					file.Close()
					t.Errorf("OpenRegular(%q) succeeded", c.path)
				}
				continue
			}
			if err != nil {
				t.Errorf("OpenRegular(%q): %v", c.path, err)
				continue
			}
			data, _ := io.ReadAll(file)
			file.Close()
			if !strings.HasPrefix(string(data), c.want) {
				t.Errorf("OpenRegular(%q) = %q, want prefix %q", c.path, data, c.want)
			}
		}
	})
}

func TestErrorsCarryCategories(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		_, err := f.r.Stat("/nope")
		if !errors.Is(err, errdefs.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat missing: %v", err)
		}
		if strings.Contains(err.Error(), f.root) {
			t.Errorf("error leaks the host path: %v", err)
		}
		_, _, err = f.r.OpenRegular("/home")
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !errors.Is(err, unix.EISDIR) {
			t.Errorf("OpenRegular dir: %v", err)
		}
		if _, err := f.r.MkdirAll("/home/user/file.txt", Owner{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("MkdirAll over a file: %v", err)
		}
		if _, err := f.r.MkdirAll("/home/user/file.txt/x/y", Owner{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("MkdirAll below a file: %v", err)
		}
		if err := f.r.Rename("/missing", "/tmp/x", Owner{}); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Rename missing: %v", err)
		}
		if err := f.r.RemoveAll("/missing/really"); err != nil {
			t.Errorf("RemoveAll missing: %v", err)
		}
		if err := f.r.RemoveAll("/"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("RemoveAll root: %v", err)
		}
		if _, err := f.r.Stat("relative"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Stat relative: %v", err)
		}
		if _, err := f.r.Stat("/a/../b"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Stat unclean: %v", err)
		}
	})
}

func TestMkdirCreateRenameRemove(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		owner := Owner{UID: 1000, GID: 1000}
		if os.Getuid() != 0 {
			owner = Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
		}
		created, err := f.r.MkdirAll("/home/user/a/b/c", owner)
		if err != nil || !created {
			t.Fatalf("MkdirAll = %v, %v", created, err)
		}
		if created, err := f.r.MkdirAll("/home/user/a/b/c", owner); err != nil || created {
			t.Fatalf("MkdirAll again = %v, %v", created, err)
		}
		// Through an absolute symlink: lands in root/etc.
		if _, err := f.r.MkdirAll("/home/user/abs/newdir", owner); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(f.root, "etc/newdir")); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"home/user/a", "home/user/a/b", "home/user/a/b/c"} {
			st, err := os.Stat(filepath.Join(f.root, d))
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscallStat)
			if sys.Uid != owner.UID || sys.Gid != owner.GID || st.Mode().Perm() != 0o755 {
				t.Errorf("%s: uid %d gid %d mode %v", d, sys.Uid, sys.Gid, st.Mode())
			}
		}
		w, err := f.r.Create("/home/user/x/y/z.txt", owner)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("hello")
		w.Commit()
		w, err = f.r.Create("/home/user/x/y/z.txt", owner)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString("hi")
		w.Commit()
		if data, _ := os.ReadFile(filepath.Join(f.root, "home/user/x/y/z.txt")); string(data) != "hi" {
			t.Fatalf("overwrite left %q", data)
		}
		// Create through a dangling symlink inside the root.
		if err := os.Symlink("/tmp/target.txt", filepath.Join(f.root, "home/user/tolink")); err != nil {
			t.Fatal(err)
		}
		if w, err := f.r.Create("/home/user/tolink", owner); err == nil {
			w.Commit()
			if f.r.openat2 {
				if _, err := os.Stat(filepath.Join(f.root, "tmp/target.txt")); err != nil {
					t.Errorf("create through dangling symlink: %v", err)
				}
			}
		}
		if _, err := f.r.Create("/home/user", owner); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create over a dir: %v", err)
		}
		if err := syscallMkfifo(filepath.Join(f.root, "tmp/fifo")); err != nil {
			t.Fatal(err)
		}
		if _, err := f.r.Create("/tmp/fifo", owner); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create over a fifo: %v", err)
		}
		if _, _, err := f.r.OpenRegular("/tmp/fifo"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("OpenRegular fifo: %v", err)
		}
		if err := f.r.Rename("/home/user/x", "/tmp/new/place", owner); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(f.root, "tmp/new/place/y/z.txt")); err != nil {
			t.Fatal(err)
		}
		// Renaming a symlink moves the link.
		if err := f.r.Rename("/home/user/hostdir", "/tmp/hostdir", owner); err != nil {
			t.Fatal(err)
		}
		if fi, err := f.r.Lstat("/tmp/hostdir"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("Lstat moved link = %v, %v", fi, err)
		}
		if err := f.r.RemoveAll("/tmp"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(f.root, "tmp")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("tmp still there: %v", err)
		}
		// Removing a symlink to a directory removes the link only.
		if err := f.r.RemoveAll("/home/user/abs"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(f.root, "etc/passwd")); err != nil {
			t.Fatal("RemoveAll followed a symlink")
		}
	})
}

func TestLstatAndReadDir(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		fi, err := f.r.Lstat("/home/user/abs")
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 || fi.Name() != "abs" {
			t.Fatalf("Lstat = %v, %v", fi, err)
		}
		target, err := f.r.Readlink("/home/user/abs")
		if err != nil || target != "/etc" {
			t.Fatalf("Readlink = %q, %v", target, err)
		}
		fi, err = f.r.Stat("/home/user/abs")
		if err != nil || !fi.IsDir() {
			t.Fatalf("Stat = %v, %v", fi, err)
		}
		entries, err := f.r.ReadDir("/home/user")
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, e := range entries {
			names[e.Name()] = true
		}
		if !names["file.txt"] || !names["abs"] || !names["sub"] || names["."] || names[".."] {
			t.Fatalf("ReadDir names = %v", names)
		}
		for _, flags := range []int{unix.O_RDONLY, unix.O_PATH, unix.O_PATH | unix.O_DIRECTORY, unix.O_RDONLY | unix.O_DIRECTORY} {
			if d, err := f.r.OpenFile("/home/user/abs", flags); err != nil {
				t.Errorf("OpenFile(%#x): %v", flags, err)
			} else {
				d.Close()
			}
		}
		if fi, err := f.r.Lstat("/"); err != nil || !fi.IsDir() || fi.Name() != "/" {
			t.Fatalf("Lstat root = %v, %v", fi, err)
		}
	})
}

// TestSymlinkSwapRace swaps a directory for a symlink that points outside
// (by absolute host path and by "..") while requests run through it.
func TestSymlinkSwapRace(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		before := f.snapshot(t)
		swap := filepath.Join(f.root, "home/user/swap")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			targets := []string{f.outside, "../../../outside", "/proc/self/root" + f.outside}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				os.RemoveAll(swap)
				if i%2 == 0 {
					os.Mkdir(swap, 0o755)
					os.WriteFile(filepath.Join(swap, "secret.txt"), []byte("inside"), 0o644)
				} else {
					os.Symlink(targets[i%len(targets)], swap)
				}
			}
		})
		for i := 0; i < 2000; i++ {
			if file, _, err := f.r.OpenRegular("/home/user/swap/secret.txt"); err == nil {
				data, _ := io.ReadAll(file)
				if string(data) == secret || !f.insideRoot(t, file) {
					t.Errorf("read the host secret through a swapped symlink")
				}
				file.Close()
			}
			if file, err := f.r.Create("/home/user/swap/new.txt", Owner{}); err == nil {
				if !f.insideRoot(t, file.File) {
					t.Errorf("created outside through a swapped symlink")
				}
				file.Commit()
			}
			f.r.MkdirAll("/home/user/swap/d", Owner{})
			f.r.RemoveAll("/home/user/swap/secret.txt")
		}
		close(stop)
		wg.Wait()
		if after := f.snapshot(t); after != before {
			t.Fatalf("outside changed:\n%s\n---\n%s", before, after)
		}
	})
}

// TestMagicLinks mounts a real procfs inside the root: /proc/self/root
// then points at the host's root, and must be refused.
func TestMagicLinks(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting procfs inside the test root needs root")
	}
	f := newFixture(t, true)
	proc := filepath.Join(f.root, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Skipf("cannot mount procfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(proc, unix.MNT_DETACH) })
	for _, p := range []string{
		"/proc/self/root" + f.outside + "/secret.txt",
		"/proc/self/cwd",
		"/proc/1/root/etc/passwd",
		"/home/user/procroot" + f.outside + "/secret.txt",
		"/proc/self/fd/0",
		"/proc/thread-self/root/etc/passwd",
	} {
		if file, _, err := f.r.OpenRegular(p); err == nil {
			file.Close()
			t.Errorf("OpenRegular(%q) followed a magic link", p)
		} else if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EACCES) {
			t.Errorf("OpenRegular(%q): %v", p, err)
		}
		if file, err := f.r.Create(p, Owner{}); err == nil {
			file.Abort()
			t.Errorf("Create(%q) followed a magic link", p)
		}
	}
	// Plain procfs files are readable: only magic links are refused.
	if file, _, err := f.r.OpenRegular("/proc/self/status"); err != nil {
		t.Errorf("reading /proc/self/status: %v", err)
	} else {
		file.Close()
	}
}

func TestResolve(t *testing.T) {
	cases := []struct {
		p, home, workdir, want string
		bad                    bool
	}{
		{"a.txt", "/home/user", "", "/home/user/a.txt", false},
		{"a.txt", "/home/user", "/work", "/work/a.txt", false},
		{"~/a.txt", "/home/user", "/work", "/home/user/a.txt", false},
		{"~", "/home/user", "", "/home/user", false},
		{"", "/home/user", "", "/home/user", false},
		{"", "/home/user", "/w", "/w", false},
		{"/abs/../x", "/home/user", "", "/x", false},
		{"../../../..", "/home/user", "", "/", false},
		{"~/../../..", "/home/user", "", "/", false},
		{"x", "", "", "/x", false},
		{"x", "relhome", "", "/relhome/x", false},
		{"~root/x", "/home/user", "", "", true},
		{"a\x00b", "/home/user", "", "", true},
		{"//a//b/", "/", "", "/a/b", false},
	}
	for _, c := range cases {
		got, err := Resolve(c.p, c.home, c.workdir)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("Resolve(%q, %q, %q) = %q, %v; want %q", c.p, c.home, c.workdir, got, err, c.want)
		}
	}
}

func TestAccounts(t *testing.T) {
	f := newFixture(t, true)
	a, err := f.r.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	u, ok := a.User("user")
	if !ok || u.UID != 1000 || u.Home != "/home/user" {
		t.Fatalf("User = %+v, %v", u, ok)
	}
	if a.UserName(0) != "root" || a.GroupName(1000) != "user" || a.UserName(4242) != "4242" {
		t.Fatal("names wrong")
	}
	if err := os.WriteFile(filepath.Join(f.root, "etc/passwd"), []byte("bob:x:7:7::/b:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, _ = f.r.Accounts()
	if _, ok := a.User("bob"); !ok {
		t.Fatal("Accounts did not notice /etc/passwd changed")
	}
	// /etc/passwd as a symlink to a host file is read inside the root.
	hostPasswd := filepath.Join(f.outside, "passwd")
	os.WriteFile(hostPasswd, []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.Remove(filepath.Join(f.root, "etc/passwd"))
	os.Symlink(hostPasswd, filepath.Join(f.root, "etc/passwd"))
	a, err = f.r.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.User("root"); ok {
		t.Fatal("read the host's /etc/passwd")
	}
}

func TestMetadata(t *testing.T) {
	forModes(t, func(t *testing.T, f *fixture) {
		w, err := f.r.Create("/home/user/m.txt", Owner{})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.r.SetMetadata(w.File, map[string]string{"a": "1", "b": "two"}); err != nil {
			t.Fatal(err)
		}
		w.Commit()
		md, err := f.r.Metadata("/home/user/m.txt")
		if err != nil || md["a"] != "1" || md["b"] != "two" || len(md) != 2 {
			t.Fatalf("Metadata = %v, %v", md, err)
		}
		w, _ = f.r.Create("/home/user/m.txt", Owner{})
		f.r.SetMetadata(w.File, map[string]string{"b": "3"})
		w.Commit()
		if md, _ := f.r.Metadata("/home/user/m.txt"); len(md) != 1 || md["b"] != "3" {
			t.Fatalf("Metadata after replace = %v", md)
		}
		w, _ = f.r.Create("/home/user/m.txt", Owner{})
		f.r.SetMetadata(w.File, nil)
		w.Commit()
		if md, _ := f.r.Metadata("/home/user/m.txt"); len(md) != 0 {
			t.Fatalf("Metadata after clear = %v", md)
		}
		if md, err := f.r.Metadata("/home/user/abs"); err != nil || md != nil {
			t.Fatalf("Metadata of a symlink = %v, %v", md, err)
		}
	})
}

func TestSidecarMetadata(t *testing.T) {
	var s sidecar
	k := fileKey{1, 2}
	s.set(k, map[string]string{"x": "y"})
	if s.get(k)["x"] != "y" {
		t.Fatal("sidecar lost a value")
	}
	s.set(k, nil)
	if s.get(k) != nil {
		t.Fatal("sidecar did not clear")
	}
}

func TestCloseTwice(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
