package store

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

var uuidShape = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDefaultTeamExists(t *testing.T) {
	s, _ := openTest(t)
	def, err := s.Team(t.Context(), DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	if !uuidShape.MatchString(def.ID) || def.Limits != (Limits{}) || def.CreatedAt.IsZero() {
		t.Errorf("default team = %+v, want a v4 UUID, no limits, a creation time", def)
	}
	byID, err := s.Team(t.Context(), def.ID)
	if err != nil || byID != def {
		t.Errorf("Team(by ID) = %+v, %v; want %+v", byID, err, def)
	}
	// Each database gets its own default team ID.
	s2, _ := openTest(t)
	def2, err := s2.Team(t.Context(), DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	if def2.ID == def.ID {
		t.Errorf("two databases share the default team ID %s", def.ID)
	}
}

func TestTeams(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	lim := Limits{
		MaxSandboxes: 3, CreatesPerSecond: 0.5, CreateBurst: 2, MaxLifetime: 90 * time.Minute,
		MaxCPUs: 2, MaxMemoryMB: 1024, MaxDiskMB: 4096, MaxTemplateStorageMB: 10240,
	}
	a, err := s.CreateTeam(ctx, "acme", lim)
	if err != nil {
		t.Fatal(err)
	}
	if !uuidShape.MatchString(a.ID) || a.Name != "acme" || a.Limits != lim {
		t.Errorf("CreateTeam = %+v", a)
	}
	got, err := s.Team(ctx, "acme")
	if err != nil || got.ID != a.ID || got.Limits != lim || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("Team(acme) = %+v, %v; want %+v", got, err, a)
	}
	if _, err := s.CreateTeam(ctx, "b_2-x", Limits{}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		lim  Limits
		want error
	}{
		{"acme", Limits{}, errdefs.ErrAlreadyExists},
		{DefaultTeamName, Limits{}, errdefs.ErrAlreadyExists},
		{"", Limits{}, errdefs.ErrInvalidArgument},
		{"Acme", Limits{}, errdefs.ErrInvalidArgument},
		{"-x", Limits{}, errdefs.ErrInvalidArgument},
		{"a b", Limits{}, errdefs.ErrInvalidArgument},
		{strings.Repeat("a", 64), Limits{}, errdefs.ErrInvalidArgument},
		{a.ID, Limits{}, errdefs.ErrInvalidArgument}, // a name shaped like an ID
		{"neg", Limits{MaxSandboxes: -1}, errdefs.ErrInvalidArgument},
		{"neg", Limits{CreatesPerSecond: -0.1}, errdefs.ErrInvalidArgument},
		{"neg", Limits{MaxLifetime: -time.Second}, errdefs.ErrInvalidArgument},
	} {
		if _, err := s.CreateTeam(ctx, tc.name, tc.lim); !errors.Is(err, tc.want) {
			t.Errorf("CreateTeam(%q, %+v) = %v, want %v", tc.name, tc.lim, err, tc.want)
		}
	}
	if _, err := s.CreateTeam(ctx, strings.Repeat("a", 63), Limits{}); err != nil {
		t.Errorf("63-character name: %v", err)
	}

	teams, err := s.ListTeams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tm := range teams {
		names = append(names, tm.Name)
	}
	if want := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa acme b_2-x default"; strings.Join(names, " ") != want {
		t.Errorf("ListTeams = %v, want %s", names, want)
	}

	lim2 := Limits{MaxSandboxes: 1}
	set, err := s.SetTeamLimits(ctx, a.ID, lim2)
	if err != nil || set.Limits != lim2 || set.Name != "acme" {
		t.Fatalf("SetTeamLimits = %+v, %v", set, err)
	}
	if got, _ := s.Team(ctx, "acme"); got.Limits != lim2 {
		t.Errorf("limits after set = %+v, want %+v", got.Limits, lim2)
	}
	if _, err := s.SetTeamLimits(ctx, "nope", lim2); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("SetTeamLimits(unknown) = %v, want not found naming it", err)
	}
	if _, err := s.SetTeamLimits(ctx, "acme", Limits{MaxCPUs: -2}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetTeamLimits(negative) = %v", err)
	}
	if _, err := s.Team(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Team(unknown) = %v, want not found naming it", err)
	}
}

func TestDeleteTeamRefusals(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.DeleteTeam(ctx, DefaultTeamName); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("DeleteTeam(default) = %v, want conflict", err)
	}
	if err := s.DeleteTeam(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("DeleteTeam(unknown) = %v, want not found", err)
	}
	tm, err := s.CreateTeam(ctx, "acme", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, k1, err := s.CreateKey(ctx, NewKey{Name: "k1", Team: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	_, k2, err := s.CreateKey(ctx, NewKey{Name: "k2", Team: tm.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSandbox(ctx, SandboxRecord{ID: "sb1", TeamID: tm.ID, State: "running"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "tpl1", TeamID: tm.ID, Names: []string{"mine"}}); err != nil {
		t.Fatal(err)
	}
	refuse := func(wants ...string) {
		t.Helper()
		err := s.DeleteTeam(ctx, "acme")
		if !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("DeleteTeam = %v, want conflict", err)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("DeleteTeam = %q, want it to say %q", err, w)
			}
		}
	}
	refuse("2 unrevoked keys", "1 sandbox", "1 template")
	for _, id := range []string{k1.ID, k2.ID} {
		if err := s.RevokeKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	refuse("1 sandbox", "1 template")
	if err := s.DeleteSandbox(ctx, "sb1"); err != nil {
		t.Fatal(err)
	}
	refuse("1 template")
	if err := s.DeleteTemplate(ctx, "tpl1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTeam(ctx, "acme"); err != nil {
		t.Fatalf("DeleteTeam with nothing left: %v", err)
	}
	if _, err := s.Team(ctx, "acme"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Team after delete = %v", err)
	}
	keys, err := s.ListKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("the removed team's revoked keys are left: %+v", keys)
	}
	// The name is free again, under a new ID.
	again, err := s.CreateTeam(ctx, "acme", Limits{})
	if err != nil || again.ID == tm.ID {
		t.Errorf("recreating acme = %+v, %v", again, err)
	}
}

func TestKeysPerTeam(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	def, err := s.Team(ctx, DefaultTeamName)
	if err != nil {
		t.Fatal(err)
	}
	acme, err := s.CreateTeam(ctx, "acme", Limits{MaxSandboxes: 2})
	if err != nil {
		t.Fatal(err)
	}
	plainD, infoD, err := s.CreateKey(ctx, NewKey{Name: "ops", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if infoD.TeamID != def.ID || infoD.TeamName != DefaultTeamName || !infoD.Admin {
		t.Errorf("default key info = %+v", infoD)
	}
	plainA, infoA, err := s.CreateKey(ctx, NewKey{Name: "ci", Team: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if infoA.TeamID != acme.ID || infoA.TeamName != "acme" || infoA.Admin {
		t.Errorf("acme key info = %+v", infoA)
	}
	if _, _, err := s.CreateKey(ctx, NewKey{Name: "x", Team: "nope"}); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("CreateKey(unknown team) = %v, want not found naming it", err)
	}

	p, ok, err := s.VerifyKey(ctx, plainA)
	if err != nil || !ok {
		t.Fatalf("VerifyKey = %v, %v", ok, err)
	}
	want := Principal{KeyID: infoA.ID, KeyName: "ci", Admin: false, Team: acme}
	if p.KeyID != want.KeyID || p.KeyName != want.KeyName || p.Admin || p.Team.ID != acme.ID ||
		p.Team.Name != "acme" || p.Team.Limits != acme.Limits {
		t.Errorf("VerifyKey principal = %+v, want %+v", p, want)
	}
	p, ok, err = s.VerifyKey(ctx, plainD)
	if err != nil || !ok || !p.Admin || p.Team.ID != def.ID || p.KeyName != "ops" {
		t.Errorf("VerifyKey(admin key) = %+v, %v, %v", p, ok, err)
	}

	list := func(team string) []string {
		t.Helper()
		keys, err := s.ListKeys(ctx, team)
		if err != nil {
			t.Fatalf("ListKeys(%q): %v", team, err)
		}
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID+"/"+k.TeamName)
		}
		return ids
	}
	if got := list(""); len(got) != 2 || got[0] != infoD.ID+"/default" || got[1] != infoA.ID+"/acme" {
		t.Errorf("ListKeys(all) = %v", got)
	}
	if got := list("acme"); len(got) != 1 || got[0] != infoA.ID+"/acme" {
		t.Errorf("ListKeys(acme) = %v", got)
	}
	if got := list(acme.ID); len(got) != 1 {
		t.Errorf("ListKeys(acme's ID) = %v", got)
	}
	if _, err := s.ListKeys(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ListKeys(unknown team) = %v", err)
	}

	k, err := s.Key(ctx, infoA.Prefix+"…")
	if err != nil || k.ID != infoA.ID || k.TeamName != "acme" {
		t.Errorf("Key(prefix) = %+v, %v", k, err)
	}
	if _, err := s.Key(ctx, "key_nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Key(unknown) = %v", err)
	}

	// A revoked key fails verification, whatever its team.
	if err := s.RevokeKey(ctx, infoA.ID); err != nil {
		t.Fatal(err)
	}
	if p, ok, err := s.VerifyKey(ctx, plainA); err != nil || ok || p != (Principal{}) {
		t.Errorf("VerifyKey(revoked) = %+v, %v, %v; want zero, false, nil", p, ok, err)
	}
}

// TestVerifyKeySeesLimitChangesAtOnce: the CLI changes limits through its
// own connection to the file while the daemon runs; the daemon's next
// VerifyKey carries the new limits.
func TestVerifyKeySeesLimitChangesAtOnce(t *testing.T) {
	daemon, path := openTest(t)
	ctx := t.Context()
	if _, err := daemon.CreateTeam(ctx, "acme", Limits{MaxSandboxes: 5}); err != nil {
		t.Fatal(err)
	}
	plain, _, err := daemon.CreateKey(ctx, NewKey{Name: "ci", Team: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := daemon.VerifyKey(ctx, plain)
	if err != nil || !ok || p.Team.Limits.MaxSandboxes != 5 {
		t.Fatalf("VerifyKey = %+v, %v, %v", p, ok, err)
	}

	cli, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{MaxSandboxes: 1, CreatesPerSecond: 2, MaxLifetime: time.Hour}
	if _, err := cli.SetTeamLimits(ctx, "acme", lim); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}

	p, ok, err = daemon.VerifyKey(ctx, plain)
	if err != nil || !ok || p.Team.Limits != lim {
		t.Errorf("VerifyKey after the CLI's change = %+v, %v, %v; want limits %+v", p, ok, err, lim)
	}
}

func TestTemplateTeamAndPublic(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	now := time.Now()
	if err := s.PutTemplate(ctx, TemplateRecord{ID: "t1", TeamID: "team-a", Names: []string{"a"}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.TemplateByName(ctx, "a")
	if err != nil || rec.TeamID != "team-a" || rec.Public {
		t.Fatalf("TemplateByName = %+v, %v", rec, err)
	}
	if err := s.SetTemplatePublic(ctx, "t1", true); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.GetTemplate(ctx, "t1"); !rec.Public || rec.TeamID != "team-a" {
		t.Errorf("after SetTemplatePublic(true): %+v", rec)
	}
	list, err := s.ListTemplates(ctx)
	if err != nil || len(list) != 1 || !list[0].Public {
		t.Errorf("ListTemplates = %+v, %v", list, err)
	}
	if err := s.SetTemplatePublic(ctx, "t1", false); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.GetTemplate(ctx, "t1"); rec.Public {
		t.Errorf("after SetTemplatePublic(false): %+v", rec)
	}
	if err := s.SetTemplatePublic(ctx, "nope", true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("SetTemplatePublic(unknown) = %v", err)
	}
}

func TestSandboxTeam(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.PutSandbox(ctx, SandboxRecord{ID: "sb", TeamID: "team-a", State: "running"}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.GetSandbox(ctx, "sb")
	if err != nil || rec.TeamID != "team-a" {
		t.Errorf("GetSandbox = %+v, %v", rec, err)
	}
}
