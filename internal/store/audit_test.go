package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

func TestAudit(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	acme, err := s.CreateTeam(ctx, "acme", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	def, err := s.Team(ctx, DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	entries := []AuditEntry{
		{Time: t0, TeamID: acme.ID, TeamName: "acme", KeyID: "key_1", KeyName: "ci", Action: "sandbox.create",
			Target: "sb1", Result: "201", Client: "10.0.0.1:5000", Duration: 12 * time.Millisecond},
		{Time: t0.Add(time.Minute), TeamID: acme.ID, TeamName: "acme", Action: "process.start",
			Target: "sb1", Result: "200", Detail: "python3 -c 'print(1)'"},
		{Time: t0.Add(2 * time.Minute), TeamID: def.ID, TeamName: "default", KeyID: "key_2", Action: "sandbox.kill",
			Target: "sb2", Result: "204"},
		{Time: t0.Add(3 * time.Minute), TeamID: acme.ID, TeamName: "acme", KeyName: "cli", Action: "team.update",
			Target: acme.ID, Result: "ok", Client: "local"},
	}
	if err := s.AppendAudit(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, nil); err != nil {
		t.Errorf("AppendAudit(none) = %v", err)
	}

	all, err := s.QueryAudit(ctx, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("QueryAudit(all) = %d entries, want 4", len(all))
	}
	for i, e := range all {
		want := entries[i]
		want.ID = e.ID
		if e != want {
			t.Errorf("entry %d = %+v\nwant %+v", i, e, want)
		}
		if i > 0 && e.ID <= all[i-1].ID {
			t.Errorf("ids not increasing: %d after %d", e.ID, all[i-1].ID)
		}
	}

	actions := func(q AuditQuery) string {
		t.Helper()
		got, err := s.QueryAudit(ctx, q)
		if err != nil {
			t.Fatalf("QueryAudit(%+v): %v", q, err)
		}
		var out []string
		for _, e := range got {
			out = append(out, e.Action)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		q    AuditQuery
		want string
	}{
		{AuditQuery{Team: "acme"}, "sandbox.create process.start team.update"},
		{AuditQuery{Team: def.ID}, "sandbox.kill"},
		{AuditQuery{Action: "sandbox."}, "sandbox.create sandbox.kill"},
		{AuditQuery{Action: "sandbox"}, ""}, // exact, not a prefix
		{AuditQuery{Action: "process.start"}, "process.start"},
		{AuditQuery{Since: t0.Add(time.Minute)}, "process.start sandbox.kill team.update"},
		{AuditQuery{Limit: 2}, "sandbox.kill team.update"}, // the newest two, oldest first
		{AuditQuery{Team: "acme", Action: "sandbox.", Since: t0}, "sandbox.create"},
	} {
		if got := actions(tc.q); got != tc.want {
			t.Errorf("QueryAudit(%+v) = %q, want %q", tc.q, got, tc.want)
		}
	}
	if _, err := s.QueryAudit(ctx, AuditQuery{Team: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("QueryAudit(unknown team) = %v, want not found", err)
	}

	// A removed team's entries stay, found by the name they carry.
	gone, err := s.CreateTeam(ctx, "gone", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, []AuditEntry{{TeamID: gone.ID, TeamName: "gone", Action: "team.create"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTeam(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	got, err := s.QueryAudit(ctx, AuditQuery{Team: "gone"})
	if err != nil || len(got) != 1 || got[0].Time.IsZero() {
		t.Errorf("QueryAudit(removed team) = %+v, %v; want its one entry, stamped", got, err)
	}

	// All or nothing: an invalid entry stores none of its batch.
	if err := s.AppendAudit(ctx, []AuditEntry{{Action: "x.y"}, {}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("AppendAudit(no action) = %v", err)
	}
	if got := actions(AuditQuery{Action: "x.y"}); got != "" {
		t.Errorf("part of a refused batch was stored: %q", got)
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.AppendAudit(ctx, []AuditEntry{{Action: "key.create", KeyName: "cli", Target: "key_1"}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE audit_log SET action = 'nothing'`,
		`UPDATE audit_log SET time = 0`,
	} {
		_, err := s.db.ExecContext(ctx, q)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the trigger's refusal", q, err)
		}
	}
	got, err := s.QueryAudit(ctx, AuditQuery{})
	if err != nil || len(got) != 1 || got[0].Action != "key.create" {
		t.Errorf("after refused updates: %+v, %v", got, err)
	}
}

func TestPruneAudit(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var batch []AuditEntry
	for i := range 10 {
		batch = append(batch, AuditEntry{Time: t0.Add(time.Duration(i) * time.Hour), Action: fmt.Sprintf("a.%d", i)})
	}
	if err := s.AppendAudit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneAudit(ctx, t0.Add(4*time.Hour))
	if err != nil || n != 4 {
		t.Fatalf("PruneAudit = %d, %v; want 4", n, err)
	}
	left, err := s.QueryAudit(ctx, AuditQuery{})
	if err != nil || len(left) != 6 || left[0].Action != "a.4" {
		t.Fatalf("after prune: %+v, %v", left, err)
	}
	if n, err := s.PruneAudit(ctx, t0); err != nil || n != 0 {
		t.Errorf("PruneAudit(nothing older) = %d, %v", n, err)
	}
	// Ids keep increasing after pruning the newest rows too.
	if _, err := s.PruneAudit(ctx, t0.Add(100*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, []AuditEntry{{Action: "b"}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.QueryAudit(ctx, AuditQuery{})
	if err != nil || len(got) != 1 || got[0].ID <= left[len(left)-1].ID {
		t.Errorf("id after pruning everything = %+v, want above %d", got, left[len(left)-1].ID)
	}
}
