package restapi

import (
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

// wireTime is how timestamps go on the wire: UTC, RFC 3339 with at most
// millisecond precision (every SDK's parser takes that).
func wireTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *server) toSandbox(i sandbox.Info) openapi.Sandbox {
	return openapi.Sandbox{
		SandboxID:       i.ID,
		TemplateID:      i.TemplateID,
		ClientID:        ClientID,
		EnvdVersion:     i.EnvdVersion,
		EnvdAccessToken: optString(i.AccessToken),
		Domain:          optString(s.cfg.Domain),
		Alias:           optString(i.Alias),

		TrafficAccessToken: trafficToken(i),
	}
}

func (s *server) toDetail(i sandbox.Info) openapi.SandboxDetail {
	md := openapi.SandboxMetadata(i.Metadata)
	allow := !i.InternetBlocked
	return openapi.SandboxDetail{
		Network:             withWireTraffic(toWireNetwork(i.Network), i.Traffic),
		SandboxID:           i.ID,
		TemplateID:          i.TemplateID,
		ClientID:            ClientID,
		Alias:               optString(i.Alias),
		StartedAt:           wireTime(i.StartedAt),
		EndAt:               wireTime(i.EndAt),
		EnvdVersion:         i.EnvdVersion,
		EnvdAccessToken:     optString(i.AccessToken),
		CpuCount:            int32(i.CPUCount),
		MemoryMB:            int32(i.MemoryMB),
		DiskSizeMB:          int32(i.DiskMB),
		State:               openapi.SandboxState(i.State),
		Metadata:            &md,
		AllowInternetAccess: &allow,
		Domain:              optString(s.cfg.Domain),
		Lifecycle:           toLifecycle(i),
	}
}

// toLifecycle is E2B's lifecycle of a sandbox's info: what its timeout
// does, and whether traffic resumes it.
func toLifecycle(i sandbox.Info) *openapi.SandboxLifecycle {
	l := &openapi.SandboxLifecycle{OnTimeout: openapi.Kill, AutoResume: i.AutoResume}
	if i.AutoPause {
		l.OnTimeout = openapi.Pause
	}
	return l
}

func toListed(i sandbox.Info) openapi.ListedSandbox {
	md := openapi.SandboxMetadata(i.Metadata)
	return openapi.ListedSandbox{
		SandboxID:   i.ID,
		TemplateID:  i.TemplateID,
		ClientID:    ClientID,
		Alias:       optString(i.Alias),
		StartedAt:   wireTime(i.StartedAt),
		EndAt:       wireTime(i.EndAt),
		EnvdVersion: i.EnvdVersion,
		CpuCount:    int32(i.CPUCount),
		MemoryMB:    int32(i.MemoryMB),
		DiskSizeMB:  int32(i.DiskMB),
		State:       openapi.SandboxState(i.State),
		Metadata:    &md,
	}
}
