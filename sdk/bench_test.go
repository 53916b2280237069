package sandpit_test

import (
	"context"
	"slices"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// BenchmarkCommandRunTrue is commands.run("true") through the daemon, as the
// SDKs send it (bash -l -c), without a JavaScript client's own cost.
func BenchmarkCommandRunTrue(b *testing.B) {
	sbx := benchSandbox(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t := time.Now()
		if _, err := sbx.Commands.Run(ctx, "true"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	reportP50(b, lat)
}

// BenchmarkFilesReadSmall is files.read of a 100-byte file.
func BenchmarkFilesReadSmall(b *testing.B) {
	sbx := benchSandbox(b)
	ctx := context.Background()
	if _, err := sbx.Files.Write(ctx, "/tmp/small", make([]byte, 100)); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t := time.Now()
		if _, err := sbx.Files.Read(ctx, "/tmp/small"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	reportP50(b, lat)
}

func benchSandbox(b *testing.B) *sandpit.Sandbox {
	b.Helper()
	if server == nil {
		b.Skip(skipReason)
	}
	c, err := sandpit.NewClient(sandpit.WithURL(server.URL), sandpit.WithAPIKey(server.APIKey))
	if err != nil {
		b.Fatal(err)
	}
	sbx, err := c.Create(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sbx.Close() })
	return sbx
}

func reportP50(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
