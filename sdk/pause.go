package sandpit

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// Metric is one sample of a sandbox's resource use.
type Metric struct {
	Time       time.Time
	CPUCount   int
	CPUUsedPct float64 // of the sandbox's CPUs since the sample before
	MemUsed    int64   // bytes
	MemTotal   int64
	MemCache   int64
	DiskUsed   int64
	DiskTotal  int64
}

// Metrics samples a sandbox's resource use now and returns every sample
// taken of it so far, oldest first.
func (c *Client) Metrics(ctx context.Context, id string) ([]Metric, error) {
	var raw []openapi.SandboxMetric
	if _, err := c.api(ctx, "get metrics of sandbox "+id, http.MethodGet, "/sandboxes/"+url.PathEscape(id)+"/metrics", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]Metric, 0, len(raw))
	for _, m := range raw {
		out = append(out, Metric{
			Time: time.Unix(m.TimestampUnix, 0), CPUCount: int(m.CpuCount), CPUUsedPct: float64(m.CpuUsedPct),
			MemUsed: m.MemUsed, MemTotal: m.MemTotal, MemCache: m.MemCache, DiskUsed: m.DiskUsed, DiskTotal: m.DiskTotal,
		})
	}
	return out, nil
}
