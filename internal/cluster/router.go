package cluster

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandpit-dev/sandpit/internal/restapi"
)

// RouterConfig configures the API role's Router.
type RouterConfig struct {
	Client *Client
	Placer *Placer
	// Domain is reported to SDKs in create answers (PORT-ID.DOMAIN), in
	// place of the node's own: clients reach sandboxes through the API
	// replicas, never a node directly.
	Domain string
	// APIKey, when set, is the key creates must carry (X-API-KEY) before
	// they are placed: a reservation is a write to the API server, which
	// strangers must not cause. The nodes check every request's key too.
	APIKey string
	// Keys, when set, authenticates every control-plane request by its
	// X-API-KEY against the cluster's APIKeys (APIKey above still counts,
	// as the team with no ID): the request is then scoped to the key's
	// team (its creates carry spec.teamID; another team's sandbox looks
	// unknown) and goes to the node with APIKey in its place, the key the
	// nodes share.
	Keys *KeyCache
	// Teams, when set, holds the teams' limits, which creates are
	// admitted under (limits.go).
	Teams  *TeamCache
	Logger *slog.Logger
	// Audit receives the entries of what the Router decides alone
	// (audit.go), one record each with msg "audit"; Logger when nil.
	Audit *slog.Logger
}

// Router is the API role's HTTP handler. It holds no state of its own:
// creates are placed on a live node and forwarded there, and the Sandbox
// object written once the node answers; every request that names a
// sandbox (its control-plane paths, or sandbox traffic by E2b-Sandbox-Id
// or Host) goes to the node in the sandbox's status. A sandbox whose node's
// Lease ran out is answered as not found, E2B's shape for a sandbox that
// is gone. Other requests (templates, keys) go to any live node.
type Router struct {
	cfg   RouterConfig
	log   *slog.Logger
	audit *slog.Logger
	rp    *httputil.ReverseProxy

	mu        sync.Mutex
	live      map[string]string // node name -> address
	liveAt    time.Time
	sandboxes map[string]route // sandbox ID -> its node, as last read
	templates []SandboxTemplate
	tplAt     time.Time
	// everywhere holds the templates every live node keeps warm (the
	// built-in ones): no SandboxTemplate to look for.
	everywhere map[string]bool
	// liveFailedAt is when the live nodes last could not be read.
	liveFailedAt time.Time
	// fromView says rt.live came from the Placer's watch, at viewGen.
	fromView bool
	viewGen  uint64
	// buckets are the teams' create rate limits in this replica.
	buckets map[string]*rate.Limiter
}

type route struct {
	node string
	team string
	at   time.Time
}

// teamKey carries the authenticated team's ID in a request's context.
type teamKey struct{}

// teamOf returns the team a request was authenticated as, and false when
// the Router does not scope requests by team (no Keys).
func teamOf(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(teamKey{}).(string)
	return t, ok
}

const unauthorized = "invalid or missing API key: send it in the X-API-KEY header (E2B_API_KEY for the SDKs)"

// authenticate finds the team of r's key and returns r scoped to it,
// carrying the nodes' shared key instead of the client's, and naming the
// caller for the node's audit log (audit.go).
func (rt *Router) authenticate(r *http.Request) (*http.Request, bool) {
	key := r.Header.Get("X-Api-Key")
	var k KeyInfo
	ok := false
	if rt.cfg.APIKey != "" && subtle.ConstantTimeCompare([]byte(key), []byte(rt.cfg.APIKey)) == 1 {
		ok = true
	} else {
		k, ok = rt.cfg.Keys.Lookup(key)
	}
	if !ok {
		return nil, false
	}
	ctx := context.WithValue(r.Context(), teamKey{}, k.TeamID)
	r = r.WithContext(context.WithValue(ctx, keyInfoKey{}, k))
	r.Header = r.Header.Clone()
	r.Header.Set("X-Api-Key", rt.cfg.APIKey)
	if k.ID != "" {
		r.Header.Set(restapi.OnBehalfTeamID, k.TeamID)
		r.Header.Set(restapi.OnBehalfTeamName, k.TeamName)
		r.Header.Set(restapi.OnBehalfKeyID, k.ID)
		r.Header.Set(restapi.OnBehalfKeyName, k.Name)
		r.Header.Set(restapi.OnBehalfClient, r.RemoteAddr)
		r.Header.Set(restapi.OnBehalfAdmin, strconv.FormatBool(k.Admin))
	}
	return r, true
}

// keyInfoKey carries the authenticated key (zero for the shared key).
type keyInfoKey struct{}

// The Router's caches: a live-node view this old is read again, and a
// sandbox's node is read again after sandboxTTL (it does not move, but
// another replica may have deleted it).
const (
	liveTTL = time.Second
	// staleLiveTTL is how long the last live-node view serves while the
	// API server cannot be read, and liveReadTimeout how long a read may
	// take before the last view serves (client-go retries a refused
	// connection for many seconds).
	staleLiveTTL    = 30 * time.Second
	liveReadTimeout = 2 * time.Second
	sandboxTTL      = 30 * time.Second
	// viewRecheck is how long a live-node view made from the watch
	// serves while the watch brings nothing new.
	viewRecheck = 250 * time.Millisecond
	// maxCreateBody bounds the create request the Router reads to learn
	// the template and timeout.
	maxCreateBody = 1 << 20
)

type nodeKey struct{}

// NewRouter returns the API role's handler.
func NewRouter(cfg RouterConfig) *Router {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &Router{cfg: cfg, log: log, audit: cmp.Or(cfg.Audit, log), sandboxes: map[string]route{}}
	rt.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			addr := pr.In.Context().Value(nodeKey{}).(string)
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
			// The node's proxy routes PORT-ID.DOMAIN hosts too.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		// Process output and code results stream: pass each chunk on.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rt.log.Warn("forwarding to a node", "node", r.Context().Value(nodeKey{}), "path", r.URL.Path, "err", err)
			writeJSONError(w, http.StatusBadGateway, "the sandbox's node did not answer")
		},
	}
	return rt
}

// Run keeps the Router's background work going until ctx is done: the
// Placer's watch of the nodes, which routing reads too, and the Lost
// marks of dead nodes' Sandboxes, from the same watch.
func (rt *Router) Run(ctx context.Context) {
	rt.cfg.Placer.Watch(ctx)
	sw := NewLostSweeper(rt.cfg.Client, rt.log)
	sw.leases = func(ctx context.Context) ([]coordinationv1.Lease, error) {
		if ls, ok := rt.cfg.Placer.watchedLeases(); ok {
			return ls, nil
		}
		return rt.cfg.Client.ListLeases(ctx)
	}
	sw.Run(ctx, 2*time.Second)
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only the Router names a caller to the nodes.
	if hasOnBehalf(r.Header) {
		r = r.Clone(r.Context())
		for _, h := range onBehalfHeaders {
			r.Header.Del(h)
		}
	}
	if id, ok, err := sandboxTraffic(r); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	} else if ok {
		rt.toSandbox(w, r, id, true)
		return
	}
	p := r.URL.Path
	if rt.cfg.Keys != nil && p != "/health" {
		ar, ok := rt.authenticate(r)
		if !ok {
			rt.recordAudit(r, "auth.refused", "", http.StatusUnauthorized, r.Method+" "+p)
			writeJSONError(w, http.StatusUnauthorized, unauthorized)
			return
		}
		r = ar
	}
	switch {
	case p == "/health":
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
	case r.Method == http.MethodPost && (p == "/sandboxes" || p == "/v2/sandboxes"):
		rt.create(w, r)
	case r.Method == http.MethodGet && p == "/v2/sandboxes":
		rt.listPaged(w, r)
	case r.Method == http.MethodGet && p == "/sandboxes":
		rt.list(w, r, "sandboxID")
	case r.Method == http.MethodGet && p == "/templates":
		rt.list(w, r, "templateID")
	case r.Method == http.MethodGet && p == "/snapshots":
		rt.list(w, r, "snapshotID")
	case r.Method == http.MethodGet && p == "/sandpit/v1/audit":
		rt.auditLog(w, r)
	case r.Method == http.MethodPost && p == "/v3/templates":
		rt.newTemplate(w, r)
	case p == "/templates/tags" && (r.Method == http.MethodPost || r.Method == http.MethodDelete):
		rt.templateTags(w, r)
	case strings.HasPrefix(p, "/sandpit/v1/keys") || strings.HasPrefix(p, "/sandpit/v1/teams"):
		// A node's own keys and teams mean nothing in a cluster.
		writeJSONError(w, http.StatusNotImplemented, "in a cluster, API keys and teams live in the Kubernetes API: use `sandpit keys|teams ... --kubeconfig FILE`")
	default:
		if id := pathSandboxID(p); id != "" {
			rt.toSandbox(w, r, id, false)
			return
		}
		ref := pathTemplateRef(r.URL.EscapedPath())
		if ref != "" && !rt.templateAllowed(w, r, ref, r.Method != http.MethodGet && r.Method != http.MethodHead) {
			return
		}
		addr, ok := rt.templateAddr(r.Context(), ref)
		if !ok {
			var err error
			if addr, err = rt.anyNode(r.Context()); err != nil {
				writeJSONError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		if r.Method == http.MethodPatch && ref != "" && isTemplatePath(r.URL.EscapedPath()) {
			rt.updateTemplate(w, r, ref, addr)
			return
		}
		rt.forward(w, r, addr)
	}
}

// sandboxTraffic finds the sandbox a request for a sandbox's port names,
// as the node's proxy does: the E2b-Sandbox-Id/-Port headers, or a Host
// of PORT-SANDBOXID.DOMAIN.
func sandboxTraffic(r *http.Request) (id string, ok bool, err error) {
	hid, hport := r.Header.Get("E2b-Sandbox-Id"), r.Header.Get("E2b-Sandbox-Port")
	if hid != "" || hport != "" {
		if hid == "" || hport == "" {
			return "", true, errors.New("missing header: E2b-Sandbox-Id and E2b-Sandbox-Port go together")
		}
		return hid, true, nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	label, _, found := strings.Cut(host, ".")
	if !found {
		return "", false, nil
	}
	ps, sid, found := strings.Cut(label, "-")
	if port, err := strconv.Atoi(ps); !found || sid == "" || err != nil || port < 1 || port > 65535 {
		return "", false, nil
	}
	return sid, true, nil
}

// pathSandboxID is the sandbox a control-plane path names:
// /sandboxes/{id}[/...] or /v2/sandboxes/{id}[/...].
func pathSandboxID(p string) string {
	p = strings.TrimPrefix(p, "/v2")
	rest, ok := strings.CutPrefix(p, "/sandboxes/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// toSandbox forwards r to the node of sandbox id.
func (rt *Router) toSandbox(w http.ResponseWriter, r *http.Request, id string, traffic bool) {
	node, addr, team, err := rt.sandboxNode(r.Context(), id)
	if mine, scoped := teamOf(r.Context()); err == nil && scoped && !traffic && team != mine {
		// Another team's sandbox looks unknown, as on one machine.
		err = errGone
	}
	if err != nil {
		if !errors.Is(err, errGone) {
			rt.log.Warn("looking up a sandbox's node", "sandbox_id", id, "err", err)
			writeJSONError(w, http.StatusServiceUnavailable, "looking up the sandbox failed")
			return
		}
		if traffic {
			writeGone(w, id)
		} else {
			writeJSONError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q not found", id))
		}
		return
	}
	if !traffic && r.Method == http.MethodDelete && pathSandboxID(r.URL.Path) == id && strings.Count(strings.TrimPrefix(r.URL.Path, "/v2"), "/") == 2 {
		// Held until the Sandbox is deleted, so a killed sandbox is gone
		// from kubectl once the client hears so.
		buf := &bufferedWriter{header: http.Header{}}
		rt.forward(buf, r, addr)
		if buf.status/100 == 2 || buf.status == http.StatusNotFound {
			rt.forget(r.Context(), id)
		}
		buf.flushTo(w)
		return
	}
	if !traffic && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/snapshots") {
		rt.snapshot(w, r, node, addr)
		return
	}
	if !traffic && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/fork") {
		rt.fork(w, r, node, addr)
		return
	}
	if ch, ok := lifecycleOf(r, traffic); ok {
		if ch.end != nil {
			var err error
			r, err = rt.holdToLifetime(r, id, &ch)
			if le := (*limitError)(nil); errors.As(err, &le) {
				le.write(w)
				return
			}
			if err != nil {
				rt.log.Warn("checking a sandbox's lifetime", "sandbox_id", id, "err", err)
				writeJSONError(w, http.StatusServiceUnavailable, "checking the team's limits failed")
				return
			}
		}
		// Held until the change is recorded, so a client that paused a
		// sandbox finds it Paused in kubectl; these answers are small.
		buf := &bufferedWriter{header: http.Header{}}
		rt.forward(buf, r, addr)
		if buf.status/100 == 2 {
			rt.record(r.Context(), id, ch)
		}
		buf.flushTo(w)
		return
	}
	rt.forward(w, r, addr)
}

// lifecycleChange is what a successful request changes in its sandbox's
// object: the phase (pause, resume, connect) and the end time (timeout,
// refreshes, and the timeout of resume and connect).
type lifecycleChange struct {
	phase string
	end   *metav1.Time
}

// maxLifecycleBody bounds the lifecycle request bodies the Router reads.
const maxLifecycleBody = 64 << 10

// lifecycleOf finds the change r makes if it succeeds. It reads r's body
// (small JSON) and puts it back for the node.
func lifecycleOf(r *http.Request, traffic bool) (lifecycleChange, bool) {
	if traffic || r.Method != http.MethodPost {
		return lifecycleChange{}, false
	}
	var ch lifecycleChange
	field := "timeout"
	switch {
	case strings.HasSuffix(r.URL.Path, "/pause"):
		return lifecycleChange{phase: PhasePaused}, true
	case strings.HasSuffix(r.URL.Path, "/resume"), strings.HasSuffix(r.URL.Path, "/connect"):
		ch.phase = PhaseRunning
	case strings.HasSuffix(r.URL.Path, "/timeout"):
	case strings.HasSuffix(r.URL.Path, "/refreshes"):
		field = "duration"
	default:
		return lifecycleChange{}, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxLifecycleBody))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ch, ch.phase != ""
	}
	var fields map[string]json.RawMessage
	var secs int64
	if json.Unmarshal(body, &fields) == nil && json.Unmarshal(fields[field], &secs) == nil && secs > 0 {
		end := metav1.NewTime(time.Now().Add(time.Duration(secs) * time.Second))
		ch.end = &end
	}
	return ch, ch.phase != "" || ch.end != nil
}

// record writes ch to sandbox id's object; a failure only leaves
// kubectl's view stale, so it is logged.
func (rt *Router) record(ctx context.Context, id string, ch lifecycleChange) {
	ctx = context.WithoutCancel(ctx)
	for range 3 {
		sb, err := rt.cfg.Client.GetSandbox(ctx, id)
		if err == nil && ch.end != nil {
			sb.Spec.EndAt = ch.end
			sb, err = rt.cfg.Client.UpdateSandbox(ctx, sb)
		}
		if err == nil && ch.phase != "" && sb.Status.Phase != ch.phase {
			sb.Status.Phase = ch.phase
			_, err = rt.cfg.Client.UpdateSandboxStatus(ctx, sb)
		}
		if !apierrors.IsConflict(err) {
			if err != nil {
				rt.log.Warn("recording a sandbox's lifecycle", "sandbox_id", id, "phase", ch.phase, "err", err)
			}
			return
		}
	}
}

var errGone = errors.New("sandbox gone")

// sandboxNode returns the name and address of the live node that runs
// sandbox id and the sandbox's team, or errGone.
func (rt *Router) sandboxNode(ctx context.Context, id string) (node, addr, team string, err error) {
	rt.mu.Lock()
	rte, ok := rt.sandboxes[id]
	rt.mu.Unlock()
	if !ok || time.Since(rte.at) > sandboxTTL {
		sb, err := rt.cfg.Client.GetSandbox(ctx, id)
		if apierrors.IsNotFound(err) {
			rt.mu.Lock()
			delete(rt.sandboxes, id)
			rt.mu.Unlock()
			return "", "", "", errGone
		}
		if err != nil {
			return "", "", "", err
		}
		// The node is in the label, written with the object; the status
		// may lag it (create writes it after answering).
		rte = route{node: cmp.Or(sb.Labels[NodeLabel], sb.Status.NodeName), team: sb.Spec.TeamID, at: time.Now()}
		rt.mu.Lock()
		rt.sandboxes[id] = rte
		rt.mu.Unlock()
	}
	live, err := rt.liveNodes(ctx)
	if err != nil {
		return "", "", "", err
	}
	addr, ok = live[rte.node]
	if !ok || addr == "" {
		return "", "", "", errGone
	}
	return rte.node, addr, rte.team, nil
}

// liveNodes returns the live nodes' addresses by name, read at most once
// per liveTTL. When the API server cannot be read (within
// liveReadTimeout), the last view serves up to staleLiveTTL, so an API
// server away for a moment does not cut running sandboxes' traffic; the
// read is tried again once per liveTTL meanwhile.
func (rt *Router) liveNodes(ctx context.Context) (map[string]string, error) {
	// From the watch when it is healthy: the view made from it serves
	// until the watch changes or viewRecheck passes (Leases run out with
	// time alone).
	if gen, ok := rt.cfg.Placer.viewGen(); ok {
		rt.mu.Lock()
		live, fresh := rt.live, rt.fromView && rt.viewGen == gen && time.Since(rt.liveAt) < viewRecheck
		rt.mu.Unlock()
		if fresh {
			return live, nil
		}
		if nodes, gen, ok := rt.cfg.Placer.watchedLiveNodes(); ok {
			return rt.setLive(nodes, true, gen), nil
		}
	}
	rt.mu.Lock()
	// A view from a watch now unhealthy is read again at once.
	live, age, failed, watched := rt.live, time.Since(rt.liveAt), time.Since(rt.liveFailedAt) < liveTTL, rt.fromView
	rt.mu.Unlock()
	if live != nil && ((age < liveTTL && !watched) || (failed && age < staleLiveTTL)) {
		return live, nil
	}
	readCtx, cancel := context.WithTimeout(ctx, liveReadTimeout)
	defer cancel()
	fresh, err := rt.refreshLive(readCtx)
	if err == nil {
		return fresh, nil
	}
	rt.mu.Lock()
	rt.liveFailedAt = time.Now()
	rt.mu.Unlock()
	if live != nil && age < staleLiveTTL && ctx.Err() == nil {
		rt.log.Warn("reading the live nodes; the last view serves meanwhile", "age", age.Round(time.Millisecond), "err", err)
		return live, nil
	}
	return nil, err
}

// refreshLive reads the live nodes and keeps the view.
func (rt *Router) refreshLive(ctx context.Context) (map[string]string, error) {
	nodes, err := rt.cfg.Placer.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	return rt.setLive(nodes, false, 0), nil
}

// setLive keeps nodes as the live-node view, computing the templates
// every node holds.
func (rt *Router) setLive(nodes []SandboxNode, fromView bool, gen uint64) map[string]string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.fromView, rt.viewGen = fromView, gen
	live := make(map[string]string, len(nodes))
	everywhere := map[string]bool{}
	for i, n := range nodes {
		live[n.Name] = n.Spec.Address
		// The warm pools' templates (the built-in ones), not every
		// template a node holds: one pulled onto every node still has
		// a SandboxTemplate, and a builder its requests go to.
		for _, t := range n.Status.WarmTemplates {
			if i == 0 || everywhere[t] {
				everywhere[t] = true
			}
		}
		for t := range everywhere {
			if !slices.Contains(n.Status.WarmTemplates, t) {
				delete(everywhere, t)
			}
		}
	}
	rt.live, rt.liveAt, rt.everywhere = live, time.Now(), everywhere
	return live
}

func (rt *Router) anyNode(ctx context.Context) (string, error) {
	live, err := rt.liveNodes(ctx)
	if err != nil {
		return "", err
	}
	for _, addr := range live {
		return addr, nil
	}
	return "", ErrNoNode
}

func (rt *Router) forget(ctx context.Context, id string) {
	rt.mu.Lock()
	delete(rt.sandboxes, id)
	rt.mu.Unlock()
	if err := rt.cfg.Client.DeleteSandbox(context.WithoutCancel(ctx), id); err != nil && !apierrors.IsNotFound(err) {
		rt.log.Warn("deleting a killed sandbox's object", "sandbox_id", id, "err", err)
	}
}

func (rt *Router) forward(w http.ResponseWriter, r *http.Request, addr string) {
	// Process output streams back while the client may still be sending:
	// without full duplex the server would cut the request body at the
	// first event, and the stream with it (as the node's proxy says).
	_ = http.NewResponseController(w).EnableFullDuplex()
	rt.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nodeKey{}, addr)))
}

// create places the sandbox, has the chosen node create it, and records
// it as a Sandbox before answering, so any replica can route to it.
func (rt *Router) create(w http.ResponseWriter, r *http.Request) {
	if _, scoped := teamOf(r.Context()); !scoped && rt.cfg.APIKey != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Api-Key")), []byte(rt.cfg.APIKey)) != 1 {
		writeJSONError(w, http.StatusUnauthorized, unauthorized)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	var req struct {
		TemplateID string            `json:"templateID"`
		Timeout    *int              `json:"timeout"`
		Metadata   map[string]string `json:"metadata"`
	}
	_ = json.Unmarshal(body, &req) // the node validates; this only reads what placement needs
	timeout := 300
	if req.Timeout != nil {
		timeout = *req.Timeout
	}
	adm, err := rt.admit(r.Context(), 1, time.Duration(timeout)*time.Second)
	if le := (*limitError)(nil); errors.As(err, &le) {
		rt.recordAudit(r, "sandbox.create", "", le.code, le.msg)
		le.write(w)
		return
	}
	if err != nil {
		rt.log.Warn("admitting a create under its team's limits", "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "checking the team's limits failed")
		return
	}
	// Released after the answer: the Sandboxes carry the reservation,
	// so it is not counted twice meanwhile.
	defer func() { go rt.release(r.Context(), adm) }()
	if !rt.templateAllowed(w, r, req.TemplateID, false) {
		return
	}
	// A template built through the API starts on the node that built it,
	// or, once in the registry, on any node (which pulls it when it lacks
	// it; placement prefers the nodes that hold it).
	holder, err := rt.templateNodeBy(r.Context(), req.TemplateID, sandboxTemplateNode)
	if err != nil {
		rt.log.Warn("looking up a template's node", "template", req.TemplateID, "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "looking up the template failed")
		return
	}
	// Nodes report the templates they hold by ID and name, untagged.
	tplName, _, _ := strings.Cut(req.TemplateID, ":")
	// A node that refuses the connection never saw the create: it died
	// and its Lease has not run out yet. Place again without it.
	var (
		node   *SandboxNode
		res    *http.Response
		failed []string
	)
	for {
		node, err = rt.cfg.Placer.PlaceAmong(r.Context(), tplName, func(n string) bool {
			return !slices.Contains(failed, n) && (holder == "" || n == holder)
		})
		if errors.Is(err, ErrNoNode) {
			w.Header().Set("Retry-After", "1")
			writeJSONError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if err != nil {
			rt.log.Warn("placing a sandbox", "err", err)
			w.Header().Set("Retry-After", "1")
			writeJSONError(w, http.StatusServiceUnavailable, "placing the sandbox failed")
			return
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+node.Spec.Address+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			writeJSONError(w, http.StatusInternalServerError, err.Error())
			return
		}
		out.Header = r.Header.Clone()
		res, err = http.DefaultTransport.RoundTrip(out)
		if err == nil {
			break
		}
		rt.log.Warn("creating a sandbox on its node", "node", node.Name, "err", err)
		if !errors.Is(err, syscall.ECONNREFUSED) || len(failed) == 2 {
			writeJSONError(w, http.StatusBadGateway, "the node chosen for the sandbox did not answer")
			return
		}
		failed = append(failed, node.Name)
	}
	defer res.Body.Close()
	resBody, err := io.ReadAll(res.Body)
	if err != nil {
		writeJSONError(w, http.StatusBadGateway, "reading the node's answer failed")
		return
	}
	if res.StatusCode/100 != 2 {
		copyHeader(w.Header(), res.Header)
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(resBody)
		return
	}
	var created map[string]any
	if err := json.Unmarshal(resBody, &created); err != nil {
		writeJSONError(w, http.StatusBadGateway, "the node's answer is not JSON")
		return
	}
	id, _ := created["sandboxID"].(string)
	tpl, _ := created["templateID"].(string)
	alias, _ := created["alias"].(string)
	if err := rt.recordSandbox(r.Context(), node, id, tpl, alias, timeout, req.Metadata, adm.token); err != nil {
		// Unrecorded, the sandbox would be unreachable: end it.
		rt.log.Warn("recording a new sandbox", "sandbox_id", id, "node", node.Name, "err", err)
		rt.killOn(r, node.Spec.Address, id)
		writeJSONError(w, http.StatusServiceUnavailable, "recording the sandbox failed")
		return
	}
	rt.recordAudit(r, "sandbox.place", id, res.StatusCode, "node="+node.Name)
	if rt.cfg.Domain != "" {
		created["domain"] = rt.cfg.Domain
	}
	copyHeader(w.Header(), res.Header)
	w.Header().Del("Content-Length")
	w.WriteHeader(res.StatusCode)
	_ = json.NewEncoder(w).Encode(created)
}

// recordSandbox writes the Sandbox of a sandbox node has just started:
// one write before the answer, as its label routes it; the status (a
// second write, the subresource's) follows in the background.
func (rt *Router) recordSandbox(ctx context.Context, node *SandboxNode, id, tpl, alias string, timeout int, metadata map[string]string, reservation string) error {
	end := metav1.NewTime(time.Now().Add(time.Duration(timeout) * time.Second))
	now := metav1.Now()
	labels := map[string]string{NodeLabel: node.Name}
	team, _ := teamOf(ctx)
	if team != "" {
		labels[TeamLabel] = team
	}
	var annotations map[string]string
	if reservation != "" {
		annotations = map[string]string{ReservationAnnotation: reservation}
	}
	rec, err := rt.cfg.Client.CreateSandbox(ctx, &Sandbox{
		ObjectMeta: metav1.ObjectMeta{Name: id, Labels: labels, Annotations: annotations},
		Spec:       SandboxSpec{TemplateID: tpl, Alias: alias, TeamID: team, EndAt: &end, Metadata: metadata},
	})
	if err != nil {
		return err
	}
	go rt.writeStatus(context.WithoutCancel(ctx), rec, SandboxStatus{
		Phase: PhaseRunning, NodeName: node.Name, Address: node.Spec.Address, StartedAt: &now,
	})
	rt.mu.Lock()
	rt.sandboxes[id] = route{node: node.Name, team: team, at: time.Now()}
	rt.mu.Unlock()
	return nil
}

// fork forwards a fork to the parent's node and records each fork the
// node started, there.
func (rt *Router) fork(w http.ResponseWriter, r *http.Request, node, addr string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxLifecycleBody))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "reading the request failed")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		Timeout *int `json:"timeout"`
		Count   *int `json:"count"`
	}
	_ = json.Unmarshal(body, &req)
	timeout := 15 // E2B's default for forks
	if req.Timeout != nil {
		timeout = *req.Timeout
	}
	count := 1
	if req.Count != nil && *req.Count > 0 {
		count = *req.Count
	}
	adm, err := rt.admit(r.Context(), count, time.Duration(timeout)*time.Second)
	if le := (*limitError)(nil); errors.As(err, &le) {
		rt.recordAudit(r, "sandbox.fork", pathSandboxID(r.URL.Path), le.code, le.msg)
		le.write(w)
		return
	}
	if err != nil {
		rt.log.Warn("admitting a fork under its team's limits", "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "checking the team's limits failed")
		return
	}
	// Released after the answer: the Sandboxes carry the reservation,
	// so it is not counted twice meanwhile.
	defer func() { go rt.release(r.Context(), adm) }()
	buf := &bufferedWriter{header: http.Header{}}
	rt.forward(buf, r, addr)
	var results []map[string]json.RawMessage
	if buf.status/100 != 2 || json.Unmarshal(buf.body.Bytes(), &results) != nil {
		buf.flushTo(w)
		return
	}
	sn := &SandboxNode{ObjectMeta: metav1.ObjectMeta{Name: node}, Spec: NodeSpec{Address: addr}}
	for _, res := range results {
		var sb map[string]any
		if res["sandbox"] == nil || json.Unmarshal(res["sandbox"], &sb) != nil {
			continue
		}
		id, _ := sb["sandboxID"].(string)
		tpl, _ := sb["templateID"].(string)
		if id == "" {
			continue
		}
		if err := rt.recordSandbox(r.Context(), sn, id, tpl, "", timeout, nil, adm.token); err != nil {
			rt.log.Warn("recording a fork", "sandbox_id", id, "node", node, "err", err)
			rt.killOn(r, addr, id)
			res["sandbox"] = nil
			res["error"], _ = json.Marshal(map[string]any{"code": http.StatusServiceUnavailable, "message": "recording the fork failed"})
			continue
		}
		if rt.cfg.Domain != "" {
			sb["domain"] = rt.cfg.Domain
			res["sandbox"], _ = json.Marshal(sb)
		}
	}
	out, err := json.Marshal(results)
	if err != nil {
		buf.flushTo(w)
		return
	}
	copyHeader(w.Header(), buf.header)
	w.Header().Del("Content-Length")
	w.WriteHeader(buf.status)
	_, _ = w.Write(out)
}

// writeStatus writes a new Sandbox's first status, unless someone (a
// pause, the LostSweeper) wrote one first.
func (rt *Router) writeStatus(ctx context.Context, sb *Sandbox, st SandboxStatus) {
	for range 3 {
		sb.Status = st
		_, err := rt.cfg.Client.UpdateSandboxStatus(ctx, sb)
		if err == nil || apierrors.IsNotFound(err) {
			return
		}
		if !apierrors.IsConflict(err) {
			rt.log.Warn("writing a new sandbox's status", "sandbox_id", sb.Name, "err", err)
			return
		}
		if sb, err = rt.cfg.Client.GetSandbox(ctx, sb.Name); err != nil || sb.Status.Phase != "" {
			return
		}
	}
}

// snapshot forwards a snapshot request and records the snapshot like a
// template built on the sandbox's node: sandboxes started from it go
// there. Snapshot IDs (team/name:tag, id:default) are no object names, so
// the object is named after the ID's hash and holds the ID as an alias.
func (rt *Router) snapshot(w http.ResponseWriter, r *http.Request, node, addr string) {
	buf := &bufferedWriter{header: http.Header{}}
	rt.forward(buf, r, addr)
	var res struct {
		SnapshotID string   `json:"snapshotID"`
		Names      []string `json:"names"`
	}
	if buf.status/100 == 2 && json.Unmarshal(buf.body.Bytes(), &res) == nil && res.SnapshotID != "" {
		var aliases []string
		for _, a := range append(res.Names, res.SnapshotID) {
			name, _, _ := strings.Cut(a, ":")
			aliases = append(aliases, name)
		}
		slices.Sort(aliases)
		sum := sha256.Sum256([]byte(res.SnapshotID))
		if err := rt.cfg.Client.RecordTemplate(r.Context(), "snapshot-"+hex.EncodeToString(sum[:8]), node, "", slices.Compact(aliases)); err != nil {
			rt.log.Warn("recording a snapshot's node", "snapshot", res.SnapshotID, "node", node, "err", err)
		}
		rt.mu.Lock()
		rt.tplAt = time.Time{}
		rt.mu.Unlock()
	}
	buf.flushTo(w)
}

// templateNode returns the node of the template ref names, "" for the
// templates every node has. The SandboxTemplates are read at most once a
// second, and again on a miss.
func (rt *Router) templateNode(ctx context.Context, ref string) (string, error) {
	return rt.templateNodeBy(ctx, ref, templateNode)
}

// templateNodeBy is templateNode with the rule that reads the node off
// the SandboxTemplates (templateNode, sandboxTemplateNode).
func (rt *Router) templateNodeBy(ctx context.Context, ref string, nodeOf func([]SandboxTemplate, string) string) (string, error) {
	ts, err := rt.templatesFor(ctx, ref)
	if err != nil || ts == nil {
		return "", err
	}
	return nodeOf(ts, ref), nil
}

// templatesFor returns the SandboxTemplates, read again when none names
// ref, or nil for a ref that is a template every node has.
func (rt *Router) templatesFor(ctx context.Context, ref string) ([]SandboxTemplate, error) {
	if ref == "" {
		return nil, nil
	}
	if _, err := rt.liveNodes(ctx); err != nil {
		return nil, err
	}
	rt.mu.Lock()
	ts, fresh, common := rt.templates, time.Since(rt.tplAt) < liveTTL, rt.everywhere[ref]
	rt.mu.Unlock()
	if common {
		return nil, nil
	}
	if fresh && findTemplate(ts, ref) != nil {
		return ts, nil
	}
	// Not known here yet: another replica may have recorded it a moment
	// ago, so a miss reads again.
	return rt.readTemplates(ctx)
}

// readTemplates reads the SandboxTemplates and keeps them as the cache.
func (rt *Router) readTemplates(ctx context.Context) ([]SandboxTemplate, error) {
	ts, err := rt.cfg.Client.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	rt.templates, rt.tplAt = ts, time.Now()
	rt.mu.Unlock()
	return ts, nil
}

// templateAddr returns the address of the live node that holds template
// ref, if a SandboxTemplate records one.
func (rt *Router) templateAddr(ctx context.Context, ref string) (string, bool) {
	node, err := rt.templateNode(ctx, ref)
	if err != nil || node == "" {
		return "", false
	}
	live, err := rt.liveNodes(ctx)
	if err != nil {
		return "", false
	}
	addr, ok := live[node]
	return addr, ok
}

// newTemplate sends a template request (POST /v3/templates) to the node
// that holds the template of that name, or to a node placement picks, and
// records the node in a SandboxTemplate: the template's builds, uploads
// and sandboxes go there.
func (rt *Router) newTemplate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCreateBody))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	var req struct {
		Name  string `json:"name"`
		Alias string `json:"alias"`
	}
	_ = json.Unmarshal(body, &req)
	name := cmp.Or(req.Name, req.Alias)
	holder, err := rt.templateNode(r.Context(), name)
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, "looking up the template failed")
		return
	}
	if a, _, err := rt.templateAccess(r.Context(), name); err == nil && a != accessOwn {
		writeJSONError(w, http.StatusConflict, fmt.Sprintf("template name %q is taken", name))
		return
	}
	node, err := rt.cfg.Placer.PlaceAmong(r.Context(), "", func(n string) bool { return holder == "" || n == holder })
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, "no live node for the template: "+err.Error())
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	buf := &bufferedWriter{header: http.Header{}}
	rt.forward(buf, r, node.Spec.Address)
	if buf.status/100 == 2 {
		var res struct {
			TemplateID string   `json:"templateID"`
			BuildID    string   `json:"buildID"`
			Aliases    []string `json:"aliases"`
			Names      []string `json:"names"`
		}
		if err := json.Unmarshal(buf.body.Bytes(), &res); err == nil && res.TemplateID != "" {
			var aliases []string
			for _, a := range append(res.Aliases, res.Names...) {
				name, _, _ := strings.Cut(a, ":")
				aliases = append(aliases, name)
			}
			slices.Sort(aliases)
			aliases = slices.Compact(aliases)
			if err := rt.cfg.Client.RecordTemplate(r.Context(), res.TemplateID, node.Name, res.BuildID, aliases); err != nil {
				rt.log.Warn("recording a template's node", "template", res.TemplateID, "node", node.Name, "err", err)
			}
			rt.mu.Lock()
			rt.tplAt = time.Time{}
			rt.mu.Unlock()
		}
	}
	buf.flushTo(w)
}

func (rt *Router) killOn(r *http.Request, addr, id string) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), http.MethodDelete, "http://"+addr+"/sandboxes/"+url.PathEscape(id), nil)
	if err != nil {
		return
	}
	req.Header.Set("X-API-KEY", r.Header.Get("X-API-KEY"))
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
}

// list asks every live node and joins their answers: each node lists only
// its own sandboxes, templates or snapshots. Items whose key field is
// already in the list (the templates every node has) are left out. The
// paged sandbox list is listPaged's; template and snapshot pages past
// each node's first are not joined yet.
func (rt *Router) list(w http.ResponseWriter, r *http.Request, key string) {
	live, err := rt.liveNodes(r.Context())
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	type answer struct {
		items []json.RawMessage
		err   error
		code  int
		body  []byte
	}
	answers := make(chan answer, len(live))
	for _, addr := range live {
		go func() {
			req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+addr+r.URL.RequestURI(), nil)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			req.Header = r.Header.Clone()
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil || res.StatusCode != http.StatusOK {
				answers <- answer{err: err, code: res.StatusCode, body: b}
				return
			}
			var items []json.RawMessage
			err = json.Unmarshal(b, &items)
			answers <- answer{items: items, err: err}
		}()
	}
	// A team sees only its own sandboxes: the nodes list everyone's.
	var mine map[string]bool
	if key == "sandboxID" {
		if mine, err = rt.teamFilter(r.Context()); err != nil {
			rt.log.Warn("listing a team's sandboxes", "err", err)
			writeJSONError(w, http.StatusServiceUnavailable, "listing the team's sandboxes failed")
			return
		}
	}
	hidden := func(string) bool { return false }
	if key == "templateID" || key == "snapshotID" {
		if hidden, err = rt.hiddenTemplates(r.Context()); err != nil {
			rt.log.Warn("listing a team's templates", "err", err)
			writeJSONError(w, http.StatusServiceUnavailable, "listing the team's templates failed")
			return
		}
	}
	all := []json.RawMessage{}
	seen := map[string]bool{}
	for range live {
		a := <-answers
		if answered, skip := rt.nodeAnswer(w, r, a.code, a.body, a.err); answered {
			return
		} else if skip {
			continue
		}
		for _, it := range a.items {
			var fields map[string]json.RawMessage
			if mine != nil {
				var id string
				if json.Unmarshal(it, &fields) != nil || json.Unmarshal(fields[key], &id) != nil || !mine[id] {
					continue
				}
			}
			if json.Unmarshal(it, &fields) == nil && fields[key] != nil {
				var id string
				if json.Unmarshal(fields[key], &id) == nil && hidden(id) {
					continue
				}
				if seen[string(fields[key])] {
					continue
				}
				seen[string(fields[key])] = true
			}
			all = append(all, it)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(all)
}

// bufferedWriter holds a whole response.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) flushTo(w http.ResponseWriter) {
	copyHeader(w.Header(), b.header)
	w.WriteHeader(cmp.Or(b.status, http.StatusOK))
	_, _ = w.Write(b.body.Bytes())
}

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append([]string(nil), vs...)
	}
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
}

// writeGone answers sandbox traffic for a sandbox that is gone as the
// node's proxy does (502 in E2B's shape), which the SDKs report as a
// sandbox not found or timed out.
func writeGone(w http.ResponseWriter, id string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	_ = json.NewEncoder(w).Encode(struct {
		SandboxID string `json:"sandboxId"`
		Message   string `json:"message"`
		Code      int    `json:"code"`
	}{id, "The sandbox was not found", http.StatusBadGateway})
}
