package safepath

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func TestAsUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching identities needs root")
	}
	forModes(t, func(t *testing.T, f *fixture) {
		os.MkdirAll(filepath.Join(f.root, "root"), 0o700)
		os.WriteFile(filepath.Join(f.root, "root/secret"), []byte("r"), 0o600)
		os.WriteFile(filepath.Join(f.root, "home/user/mine"), []byte("m"), 0o600)
		os.Chown(filepath.Join(f.root, "home/user"), 1000, 1000)
		os.Chown(filepath.Join(f.root, "home/user/mine"), 1000, 1000)
		os.Chmod(filepath.Join(f.root, "tmp"), 0o1777)
		user := f.r.As(Cred{UID: 1000, GID: 1000})
		owner := Owner{UID: 1000, GID: 1000}

		if _, err := user.Create("/root/x", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user created in /root: %v", err)
		}
		if _, _, err := user.OpenRegular("/root/secret"); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user read /root/secret: %v", err)
		}
		if _, err := user.MkdirAll("/root/d", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user made a dir in /root: %v", err)
		}
		if err := user.RemoveAll("/root/secret"); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user removed /root/secret: %v", err)
		}
		if _, err := user.ReadDir("/root"); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user listed /root: %v", err)
		}
		if err := user.Rename("/root/secret", "/tmp/stolen", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("user moved /root/secret: %v", err)
		}
		// What the user may do works, and what it makes is its own.
		w, err := user.Create("/home/user/new/file", owner)
		if err != nil {
			t.Fatal(err)
		}
		w.Commit()
		for _, p := range []string{"home/user/new", "home/user/new/file"} {
			st, _ := os.Stat(filepath.Join(f.root, p))
			if st.Sys().(*syscall.Stat_t).Uid != 1000 {
				t.Errorf("%s not owned by the user", p)
			}
		}
		if r, _, err := user.OpenRegular("/home/user/mine"); err != nil {
			t.Errorf("user read its own file: %v", err)
		} else {
			r.Close()
		}
		// Do switches once for many operations.
		err = user.Do(func(u *Root) error {
			if _, _, err := u.OpenRegular("/root/secret"); !errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Errorf("user read /root/secret inside Do: %v", err)
			}
			if _, err := u.Stat("/home/user/mine"); err != nil {
				t.Errorf("stat inside Do: %v", err)
			}
			if _, err := u.Create("/root/y", owner); !errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Errorf("user created in /root inside Do: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if r, _, err := f.r.OpenRegular("/root/secret"); err != nil {
			t.Errorf("root lost access after Do: %v", err)
		} else {
			r.Close()
		}
		// The agent's own identity is back after each operation, on every
		// thread, under concurrency.
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				if i%2 == 0 {
					user.OpenRegular("/root/secret")
					return
				}
				r, _, err := f.r.OpenRegular("/root/secret")
				if err != nil {
					t.Errorf("root lost access: %v", err)
					return
				}
				r.Close()
			})
		}
		wg.Wait()
	})
}

func TestAccountGroups(t *testing.T) {
	f := newFixture(t, true)
	os.WriteFile(filepath.Join(f.root, "etc/group"), []byte("root:x:0:\nuser:x:1000:\nwheel:x:10:user,bob\ndocker:x:999:user\n"), 0o644)
	a, err := f.r.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := a.User("user")
	if c := u.Cred(); len(c.Groups) != 3 || c.Groups[0] != 10 || c.Groups[1] != 999 || c.Groups[2] != 1000 {
		t.Errorf("groups %v", c.Groups)
	}
}
