package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// Snapshots are per team: a name and tag name one snapshot of a team (a
// second snapshot of the name replaces its content, keeping its id), lists
// filter by sandbox and name and page, and they survive reopening.
func TestSnapshots(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	at := time.Unix(1700000000, 0).UTC()
	put := func(rec SnapshotRecord) SnapshotRecord {
		t.Helper()
		rec.Spec, rec.CreatedAt = []byte(`{"v":"`+rec.ID+`"}`), at
		got, err := s.PutSnapshot(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for i := range 5 {
		put(SnapshotRecord{ID: fmt.Sprintf("s%d", i), TeamID: "a", SandboxID: "sb1"})
	}
	put(SnapshotRecord{ID: "other", TeamID: "b", SandboxID: "sb1"})
	first := put(SnapshotRecord{ID: "n1", TeamID: "a", Name: "named", Tag: "default", SandboxID: "sb2"})
	second := put(SnapshotRecord{ID: "n2", TeamID: "a", Name: "named", Tag: "default", SandboxID: "sb3", Bytes: 42})
	if first.ID != "n1" || second.ID != "n1" {
		t.Fatalf("a second snapshot of a name got id %q, want the first's (%q)", second.ID, first.ID)
	}
	put(SnapshotRecord{ID: "n3", TeamID: "b", Name: "named", Tag: "default"}) // another team's name
	got, err := s.SnapshotByName(ctx, "a", "named", "default")
	if err != nil || string(got.Spec) != `{"v":"n2"}` || got.SandboxID != "sb3" || got.Bytes != 42 {
		t.Fatalf("by name: %+v, %v", got, err)
	}
	if _, err := s.SnapshotByName(ctx, "a", "named", "v2"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("another tag: %v, want not found", err)
	}

	var ids []string
	next := ""
	for range 10 {
		page, n, err := s.ListSnapshots(ctx, SnapshotFilter{TeamID: "a", SandboxID: "sb1", Limit: 2, Next: next})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			ids = append(ids, r.ID)
		}
		if next = n; next == "" {
			break
		}
	}
	if fmt.Sprint(ids) != "[s4 s3 s2 s1 s0]" {
		t.Errorf("pages of team a's snapshots of sb1: %v", ids)
	}
	if page, _, err := s.ListSnapshots(ctx, SnapshotFilter{TeamID: "a", Name: "named"}); err != nil || len(page) != 1 || page[0].ID != "n1" {
		t.Errorf("by name: %+v %v", page, err)
	}
	if _, _, err := s.ListSnapshots(ctx, SnapshotFilter{Next: "!!"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad cursor: %v", err)
	}

	if err := s.DeleteSnapshot(ctx, "s0"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.GetSnapshot(ctx, "s0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("deleted snapshot: %v", err)
	}
	if all, _, err := s2.ListSnapshots(ctx, SnapshotFilter{}); err != nil || len(all) != 7 {
		t.Errorf("after reopening: %d snapshots, %v; want 7", len(all), err)
	}
}
