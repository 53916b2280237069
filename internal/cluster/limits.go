package cluster

// Team limits in a cluster. An admin writes them to the Team object
// (spec.limits, `sandpit teams set --kubeconfig`); the api replicas read
// them from a watched copy and enforce, at the API, what the API can see:
//
//   - maxSandboxes, cluster-wide: a create counts the team's Sandbox
//     objects (Lost ones aside: their node is gone) plus the creates in
//     flight, which each replica announces as a reservation in the Team's
//     status written with the resourceVersion it read before counting.
//     Two replicas admitting at once both write with the same version, so
//     one gets a conflict and counts again: the limit holds exactly. A
//     Sandbox carries its reservation's ID (an annotation) so a create
//     recorded but not yet released is not counted twice. A replica that
//     dies mid-create leaves a reservation that lapses after
//     reservationTTL. Only teams with the limit pay for it: two requests
//     (read the Team, list its Sandboxes) and two writes (reserve,
//     release) per create.
//   - createsPerSecond/createBurst: a token bucket per team in each
//     replica, so with R replicas behind a load balancer a team may create
//     up to R times its rate (a shared bucket would cost a write per
//     create).
//   - maxLifetime, from the Sandbox's creation: a create's or a new
//     timeout past it is refused, and connect, resume and refreshes are
//     cut to it, as on one machine (one read of the Sandbox per change,
//     for teams with the limit).
//
// The per-sandbox limits (CPUs, memory, disk, egress) and template
// storage are a node's to enforce and the nodes see only the key they
// share: they are stored for `teams list` but not enforced in a cluster
// yet.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/sandpit-dev/sandpit/internal/store"
)

// TeamLimits are a team's limits as its Team object holds them; zero is
// no limit. They mirror store.Limits.
type TeamLimits struct {
	MaxSandboxes int `json:"maxSandboxes,omitempty"`
	// CreatesPerSecond is a decimal string: CRDs discourage floats.
	CreatesPerSecond     string `json:"createsPerSecond,omitempty"`
	CreateBurst          int    `json:"createBurst,omitempty"`
	MaxLifetimeSeconds   int64  `json:"maxLifetimeSeconds,omitempty"`
	MaxCPUs              int    `json:"maxCPUs,omitempty"`
	MaxMemoryMB          int    `json:"maxMemoryMB,omitempty"`
	MaxDiskMB            int    `json:"maxDiskMB,omitempty"`
	MaxTemplateStorageMB int    `json:"maxTemplateStorageMB,omitempty"`
	MaxEgressRate        int64  `json:"maxEgressRate,omitempty"`
	MaxEgressConns       int    `json:"maxEgressConns,omitempty"`
}

// TeamLimitsOf is l as a Team object holds it.
func TeamLimitsOf(l store.Limits) *TeamLimits {
	if l == (store.Limits{}) {
		return nil
	}
	tl := &TeamLimits{
		MaxSandboxes: l.MaxSandboxes, CreateBurst: l.CreateBurst, MaxLifetimeSeconds: int64(l.MaxLifetime / time.Second),
		MaxCPUs: l.MaxCPUs, MaxMemoryMB: l.MaxMemoryMB, MaxDiskMB: l.MaxDiskMB, MaxTemplateStorageMB: l.MaxTemplateStorageMB,
		MaxEgressRate: l.MaxEgressRate, MaxEgressConns: l.MaxEgressConns,
	}
	if l.CreatesPerSecond != 0 {
		tl.CreatesPerSecond = strconv.FormatFloat(l.CreatesPerSecond, 'g', -1, 64)
	}
	return tl
}

// Store is tl as store.Limits; nil is no limits.
func (tl *TeamLimits) Store() store.Limits {
	if tl == nil {
		return store.Limits{}
	}
	cps, _ := strconv.ParseFloat(tl.CreatesPerSecond, 64)
	return store.Limits{
		MaxSandboxes: tl.MaxSandboxes, CreatesPerSecond: cps, CreateBurst: tl.CreateBurst,
		MaxLifetime: time.Duration(tl.MaxLifetimeSeconds) * time.Second,
		MaxCPUs:     tl.MaxCPUs, MaxMemoryMB: tl.MaxMemoryMB, MaxDiskMB: tl.MaxDiskMB,
		MaxTemplateStorageMB: tl.MaxTemplateStorageMB, MaxEgressRate: tl.MaxEgressRate, MaxEgressConns: tl.MaxEgressConns,
	}
}

// TeamStatus holds the creates in flight the api replicas admitted.
type TeamStatus struct {
	Reservations []Reservation `json:"reservations,omitempty"`
}

// Reservation is a create (or fork of Count sandboxes) admitted under the
// team's maxSandboxes and not yet recorded as Sandboxes.
type Reservation struct {
	ID    string      `json:"id"`
	Count int         `json:"count"`
	Until metav1.Time `json:"until"`
}

// ReservationAnnotation on a Sandbox names the reservation it was
// admitted under.
const ReservationAnnotation = "sandpit.dev/reservation"

// reservationTTL is how long a reservation counts without its Sandbox: a
// create takes seconds; one whose replica died lapses.
const reservationTTL = 2 * time.Minute

// UpdateTeam writes t's spec (its limits); a stale t.ResourceVersion
// fails with a conflict.
func (c *Client) UpdateTeam(ctx context.Context, t *Team) (*Team, error) {
	t.APIVersion, t.Kind = Group+"/"+Version, "Team"
	u, err := toUnstructured(t)
	if err != nil {
		return nil, err
	}
	out, err := c.teams().Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating Team %s: %w", t.TeamName(), err)
	}
	return fromUnstructured[Team](out)
}

func (c *Client) updateTeamStatus(ctx context.Context, t *Team) (*Team, error) {
	t.APIVersion, t.Kind = Group+"/"+Version, "Team"
	u, err := toUnstructured(t)
	if err != nil {
		return nil, err
	}
	out, err := c.teams().UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of Team %s: %w", t.TeamName(), err)
	}
	return fromUnstructured[Team](out)
}

// TeamCache answers a team's object by ID from a watched copy of the
// Teams (few, rarely changed), so a create of a team without limits costs
// no request.
type TeamCache struct {
	inf cache.SharedIndexInformer

	mu   sync.RWMutex
	byID map[string]Team
}

// WatchTeams starts a TeamCache that lasts until ctx is done.
func (c *Client) WatchTeams(ctx context.Context) *TeamCache {
	tc := &TeamCache{byID: map[string]Team{}}
	tc.inf = dynamicinformer.NewFilteredDynamicInformer(c.dyn, teamsGVR, c.ns, 0, cache.Indexers{}, nil).Informer()
	_, _ = tc.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { tc.rebuild() },
		UpdateFunc: func(_, _ any) { tc.rebuild() },
		DeleteFunc: func(any) { tc.rebuild() },
	})
	go tc.inf.Run(ctx.Done())
	return tc
}

func (tc *TeamCache) rebuild() {
	m := map[string]Team{}
	for _, o := range tc.inf.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if t, err := fromUnstructured[Team](u); err == nil {
			m[t.Spec.ID] = *t
		}
	}
	tc.mu.Lock()
	tc.byID = m
	tc.mu.Unlock()
}

// Synced reports whether the first list of teams is in.
func (tc *TeamCache) Synced() bool { return tc.inf.HasSynced() }

// Team returns the team of ID id as last watched.
func (tc *TeamCache) Team(id string) (Team, bool) {
	if tc == nil || id == "" {
		return Team{}, false
	}
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	t, ok := tc.byID[id]
	return t, ok
}

// limitError is a create a team's limit refuses, answered in E2B's error
// shape.
type limitError struct {
	code  int
	msg   string
	retry time.Duration // 0: waiting does not help
}

func (e *limitError) Error() string { return e.msg }

func (e *limitError) write(w http.ResponseWriter) {
	if e.code == http.StatusTooManyRequests {
		// E2B's Python SDK retries 429s unless told not to.
		w.Header().Set("Should-Retry", strconv.FormatBool(e.retry > 0))
		if e.retry > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((e.retry+time.Second-1)/time.Second), 10))
		}
	}
	writeJSONError(w, e.code, e.msg)
}

// admission is what admit took for one create: release gives it back
// once the create's Sandboxes are recorded (or it failed).
type admission struct {
	team  string // the Team's object name
	token string // the reservation, "" when the team has no maxSandboxes
}

// admit checks a create of n sandboxes of the request's team against the
// team's limits and reserves a place for them under maxSandboxes. A
// refusal is a *limitError.
func (rt *Router) admit(ctx context.Context, n int, timeout time.Duration) (admission, error) {
	id, _ := teamOf(ctx)
	t, ok := rt.cfg.Teams.Team(id)
	if !ok || t.Spec.Limits == nil {
		return admission{}, nil
	}
	l := t.Spec.Limits.Store()
	if l.MaxLifetime > 0 && timeout > l.MaxLifetime {
		return admission{}, &limitError{code: http.StatusBadRequest, msg: fmt.Sprintf(
			"timeout %s is longer than team %q's maximum sandbox lifetime of %s (max-lifetime)", timeout, t.TeamName(), l.MaxLifetime)}
	}
	if err := rt.takeToken(t.TeamName(), id, l); err != nil {
		return admission{}, err
	}
	if l.MaxSandboxes <= 0 {
		return admission{}, nil
	}
	return rt.reserve(ctx, t.Name, id, n, l.MaxSandboxes)
}

// takeToken takes one create from the team's bucket in this replica.
func (rt *Router) takeToken(name, id string, l store.Limits) error {
	if l.CreatesPerSecond <= 0 {
		return nil
	}
	burst := l.CreateBurst
	if burst <= 0 {
		burst = max(1, int(math.Ceil(l.CreatesPerSecond)))
	}
	rt.mu.Lock()
	if rt.buckets == nil {
		rt.buckets = map[string]*rate.Limiter{}
	}
	b, ok := rt.buckets[id]
	if !ok || b.Limit() != rate.Limit(l.CreatesPerSecond) || b.Burst() != burst {
		b = rate.NewLimiter(rate.Limit(l.CreatesPerSecond), burst)
		rt.buckets[id] = b
	}
	rt.mu.Unlock()
	now := time.Now()
	res := b.ReserveN(now, 1)
	if d := res.DelayFrom(now); !res.OK() || d > 0 {
		res.CancelAt(now)
		wait := max(time.Second, d.Round(time.Second))
		return &limitError{code: http.StatusTooManyRequests, retry: wait, msg: fmt.Sprintf(
			"team %q is over its rate limit (creates-per-second %g, burst %d); retry in %s", name, l.CreatesPerSecond, burst, wait)}
	}
	return nil
}

// reserve admits n sandboxes of team (object name obj, ID id) under its
// limit of max: count, then write a reservation with the Team's version
// read before the count.
func (rt *Router) reserve(ctx context.Context, obj, id string, n, limit int) (admission, error) {
	c := rt.cfg.Client
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := conflictBackoff(ctx, start, attempt, "reserving a sandbox of team "+obj+": the team's reservations changed"); err != nil {
				return admission{}, err
			}
		}
		u, err := c.teams().Get(ctx, obj, metav1.GetOptions{})
		if err != nil {
			return admission{}, fmt.Errorf("reading Team %s: %w", obj, err)
		}
		t, err := fromUnstructured[Team](u)
		if err != nil {
			return admission{}, err
		}
		sbs, err := c.ListSandboxes(ctx, TeamLabel+"="+id)
		if err != nil {
			return admission{}, err
		}
		used := 0
		recorded := map[string]int{}
		for _, sb := range sbs {
			if sb.Status.Phase == PhaseLost {
				continue
			}
			used++
			if tok := sb.Annotations[ReservationAnnotation]; tok != "" {
				recorded[tok]++
			}
		}
		now := time.Now()
		t.Status.Reservations = slices.DeleteFunc(t.Status.Reservations, func(r Reservation) bool { return now.After(r.Until.Time) })
		for _, r := range t.Status.Reservations {
			used += max(0, r.Count-recorded[r.ID])
		}
		if used+n > limit {
			return admission{}, &limitError{code: http.StatusTooManyRequests, msg: fmt.Sprintf(
				"team %q has %d sandboxes, its limit (max-sandboxes %d); kill one or raise the limit", t.TeamName(), used, limit)}
		}
		var b [8]byte
		_, _ = rand.Read(b[:])
		tok := hex.EncodeToString(b[:])
		t.Status.Reservations = append(t.Status.Reservations, Reservation{ID: tok, Count: n, Until: metav1.NewTime(now.Add(reservationTTL))})
		_, err = c.updateTeamStatus(ctx, t)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return admission{}, err
		}
		return admission{team: obj, token: tok}, nil
	}
}

// release drops a's reservation; its Sandboxes, recorded by now, count
// instead. A failure leaves it to lapse.
func (rt *Router) release(ctx context.Context, a admission) {
	if a.token == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	c := rt.cfg.Client
	for range 8 {
		u, err := c.teams().Get(ctx, a.team, metav1.GetOptions{})
		if err != nil {
			rt.log.Warn("releasing a team's reservation", "team", a.team, "err", err)
			return
		}
		t, err := fromUnstructured[Team](u)
		if err != nil {
			return
		}
		n := len(t.Status.Reservations)
		t.Status.Reservations = slices.DeleteFunc(t.Status.Reservations, func(r Reservation) bool { return r.ID == a.token })
		if len(t.Status.Reservations) == n {
			return
		}
		if _, err = c.updateTeamStatus(ctx, t); !apierrors.IsConflict(err) {
			if err != nil {
				rt.log.Warn("releasing a team's reservation", "team", a.team, "err", err)
			}
			return
		}
	}
}

// holdToLifetime holds the new end a lifecycle request (ch) asks for to
// its team's max-lifetime: a new timeout past it is refused, as on one
// machine, and connect, resume and refreshes are cut to it (r's body
// rewritten).
func (rt *Router) holdToLifetime(r *http.Request, id string, ch *lifecycleChange) (*http.Request, error) {
	team, _ := teamOf(r.Context())
	t, ok := rt.cfg.Teams.Team(team)
	if !ok || t.Spec.Limits == nil || t.Spec.Limits.MaxLifetimeSeconds <= 0 {
		return r, nil
	}
	limit := time.Duration(t.Spec.Limits.MaxLifetimeSeconds) * time.Second
	sb, err := rt.cfg.Client.GetSandbox(r.Context(), id)
	if err != nil {
		return r, err
	}
	maxEnd := sb.CreationTimestamp.Add(limit)
	if !ch.end.After(maxEnd) {
		return r, nil
	}
	left := time.Until(maxEnd).Truncate(time.Second)
	if strings.HasSuffix(r.URL.Path, "/timeout") {
		return r, &limitError{code: http.StatusBadRequest, msg: fmt.Sprintf(
			"timeout %s would take sandbox %s past its team's maximum lifetime (max-lifetime %s); it may live %s more",
			time.Until(ch.end.Time).Round(time.Second), id, limit, max(0, left))}
	}
	field := "timeout"
	if strings.HasSuffix(r.URL.Path, "/refreshes") {
		field = "duration"
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return r, fmt.Errorf("reading the request for %s: %w", id, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return r, fmt.Errorf("reading the request for %s: %w", id, err)
	}
	fields[field], _ = json.Marshal(max(1, int(left/time.Second)))
	if body, err = json.Marshal(fields); err != nil {
		return r, err
	}
	r = r.Clone(r.Context())
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	r.Header.Del("Content-Length")
	end := metav1.NewTime(maxEnd)
	ch.end = &end
	return r, nil
}
