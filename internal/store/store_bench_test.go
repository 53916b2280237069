package store

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// The store calls that every API request (key and team lookup) and every
// sandbox create and kill (record, deletion, audit entry) make: under load
// their statements' parsing showed in the daemon's profile.

func openBench(b *testing.B) *SQLite {
	b.Helper()
	s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "sandpit.db"))
	if err != nil {
		b.Fatalf("OpenSQLite: %v", err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkTeamByName(b *testing.B) {
	s := openBench(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Team(ctx, DefaultTeamName); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyKey(b *testing.B) {
	s := openBench(b)
	ctx := b.Context()
	plain, _, err := s.CreateKey(ctx, NewKey{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := s.VerifyKey(ctx, plain); err != nil || !ok {
			b.Fatalf("VerifyKey = %v, %v", ok, err)
		}
	}
}

func benchRecord(id string) SandboxRecord {
	now := time.Now()
	return SandboxRecord{
		ID: id, TeamID: "team", TemplateID: "base", Alias: "base",
		Metadata: map[string]string{"user": "bench"},
		Env:      map[string]string{"E2B_SANDBOX": "true", "E2B_SANDBOX_ID": id},
		CPUCount: 2, MemoryMB: 512, DiskMB: 1024,
		StartedAt: now, EndAt: now.Add(5 * time.Minute), State: "running",
		AccessToken: "token", Secure: true, AllowInternet: true, Pid: 4242,
		EnvdVersion: "0.2.0",
	}
}

// BenchmarkPutDeleteSandbox is a sandbox's life as the store sees it,
// one at a time: each write commits in a volatile group of its own.
func BenchmarkPutDeleteSandbox(b *testing.B) {
	s := openBench(b)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("sb%d", i)
		i++
		if err := s.PutSandbox(ctx, benchRecord(id)); err != nil {
			b.Fatal(err)
		}
		if err := s.DeleteSandbox(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutDeleteSandboxParallel makes concurrent writes share groups,
// so each runs in a savepoint.
func BenchmarkPutDeleteSandboxParallel(b *testing.B) {
	s := openBench(b)
	ctx := b.Context()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("sb%d", n.Add(1))
			if err := s.PutSandbox(ctx, benchRecord(id)); err != nil {
				b.Error(err)
				return
			}
			if err := s.DeleteSandbox(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkAppendAudit(b *testing.B) {
	s := openBench(b)
	ctx := b.Context()
	entries := []AuditEntry{{
		TeamID: "team", TeamName: DefaultTeamName, KeyID: "key_1", KeyName: "bench",
		Action: "sandbox.create", Target: "sb1", Result: "201", Client: "127.0.0.1",
		Duration: time.Millisecond,
	}}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AppendAudit(ctx, entries); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTemplateLookup resolves a template reference as a create does
// (template.Registry): as an ID first, then as a name.
func BenchmarkTemplateLookup(b *testing.B) {
	s := openBench(b)
	ctx := b.Context()
	rec := TemplateRecord{ID: "tpl0123456789", Spec: []byte(`{"from":"debian"}`), BuildID: "b1", TeamID: "team", Names: []string{"base"}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := s.PutTemplate(ctx, rec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetTemplate(ctx, "base"); err == nil {
			b.Fatal("a name found as an ID")
		}
		if got, err := s.TemplateByName(ctx, "base"); err != nil || got.ID != rec.ID {
			b.Fatalf("TemplateByName = %v, %v", got.ID, err)
		}
	}
}
