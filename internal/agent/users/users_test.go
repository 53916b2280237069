package users

import (
	"errors"
	"net/http"
	"os/user"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func TestFromHeader(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		wantErr      bool
	}{
		{"", "", false},
		{"Basic dXNlcjo=", "user", false}, // "user:"
		{"Basic cm9vdDo=", "root", false}, // "root:"
		{"Basic cm9vdA==", "root", false}, // "root" without the colon
		{"Bearer x", "", true},
		{"Basic !!!", "", true},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Authorization", tc.header)
		}
		got, err := FromHeader(h)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("FromHeader(%q) = %q, %v", tc.header, got, err)
		}
		if err != nil && !errors.Is(err, errdefs.ErrUnauthenticated) {
			t.Errorf("FromHeader(%q) error %v is not unauthenticated", tc.header, err)
		}
	}
}

func TestLookup(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	u, err := Lookup(me.Username)
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != me.Username || u.Home != me.HomeDir || len(u.Groups) == 0 {
		t.Errorf("Lookup(%q) = %+v", me.Username, u)
	}
	_, err = Lookup("no-such-user-xyz")
	if !errors.Is(err, errdefs.ErrUnauthenticated) || err.Error() != "error looking up user 'no-such-user-xyz'" {
		t.Errorf("unknown user: %v", err)
	}
	h := http.Header{}
	if u, err := Resolve(h, me.Username); err != nil || u.Name != me.Username {
		t.Errorf("Resolve with default: %+v %v", u, err)
	}
}

func FuzzFromHeader(f *testing.F) {
	f.Add("Basic dXNlcjo=")
	f.Add("Basic ")
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{}
		h.Set("Authorization", s)
		_, _ = FromHeader(h)
	})
}
