package restapi

import (
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// idempotencyTTL is how long a create's Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

// idempotencyMax caps the remembered creates, so a client that sends a new
// key with every create cannot grow the daemon's memory without bound.
// The oldest answer goes first: the SDKs retry within seconds, so a key
// that old is no longer being retried.
const idempotencyMax = 16384

// idempotencyKeyRe is the key shape the SDKs allow (and check before
// sending): 1-255 lowercase letters, digits and hyphens.
var idempotencyKeyRe = regexp.MustCompile(`^[a-z0-9-]{1,255}$`)

// idempotency remembers, per API key, the answer to each sandbox create
// that carried an Idempotency-Key, so that a create the SDK retries (it
// resends the key) answers the first sandbox again instead of starting a
// second one. Only successful creates are remembered: after a failure the
// next attempt creates. It lives in memory: a restarted daemon forgets.
type idempotency struct {
	mu      sync.Mutex
	entries map[string]*idemEntry // API key + "\x00" + idempotency key
	// order holds the scopes in the order their entries were made (so
	// oldest first); an element whose entry was since replaced or dropped
	// is skipped when it reaches the front.
	order []idemRef
	max   int // idempotencyMax when 0
}

type idemRef struct {
	scope string
	e     *idemEntry
}

type idemEntry struct {
	done chan struct{} // closed when the first create finished
	ok   bool          // it succeeded; body is its answer
	body any
	at   time.Time
}

// begin returns the entry for scope and whether the caller is the first,
// who must create and then call finish. Others wait for the first (or
// for ctx) and replay its answer when it succeeded.
func (d *idempotency) begin(scope string, now time.Time) (*idemEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.entries == nil {
		d.entries = map[string]*idemEntry{}
	}
	d.prune(now)
	if e, ok := d.entries[scope]; ok && (!e.ok || now.Sub(e.at) <= idempotencyTTL) {
		return e, false
	}
	e := &idemEntry{done: make(chan struct{}), at: now}
	d.entries[scope] = e
	d.order = append(d.order, idemRef{scope, e})
	return e, true
}

// prune drops, oldest first, the entries past their TTL and those over the
// cap (making room for one more). A create still running is never dropped
// for its age, only for the cap: its waiters keep their entry either way.
func (d *idempotency) prune(now time.Time) {
	limit := d.max
	if limit == 0 {
		limit = idempotencyMax
	}
	for len(d.order) > 0 {
		ref := d.order[0]
		if cur, ok := d.entries[ref.scope]; !ok || cur != ref.e {
			d.order = d.order[1:] // replaced or dropped since
			continue
		}
		expired := ref.e.ok && now.Sub(ref.e.at) > idempotencyTTL
		if !expired && len(d.entries) < limit {
			break
		}
		delete(d.entries, ref.scope)
		d.order = d.order[1:]
	}
	if len(d.order) > 2*len(d.entries)+64 {
		// Failed creates leave their elements behind a live front one:
		// keep only the live ones, so the queue stays bounded too.
		live := make([]idemRef, 0, len(d.entries))
		for _, ref := range d.order {
			if d.entries[ref.scope] == ref.e {
				live = append(live, ref)
			}
		}
		d.order = live
	}
}

// finish records the first create's outcome and wakes those waiting.
func (d *idempotency) finish(scope string, e *idemEntry, body any, ok bool) {
	d.mu.Lock()
	e.ok, e.body = ok, body
	if !ok {
		delete(d.entries, scope)
	}
	d.mu.Unlock()
	close(e.done)
}

// idempotent runs create at most once per Idempotency-Key of r's API key
// and writes its answer; without the header it just runs create. create
// returns the 201 body or an error, which is written and not remembered.
func (s *server) idempotent(w http.ResponseWriter, r *http.Request, create func() (any, error)) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		s.writeCreated(w, r, create)
		return
	}
	if !idempotencyKeyRe.MatchString(key) {
		s.writeError(w, r, errdefs.New(errdefs.ErrInvalidArgument,
			"Idempotency-Key must be 1-255 lowercase letters, digits or hyphens"))
		return
	}
	scope := apiKey(r.Header) + "\x00" + key
	for {
		e, first := s.idem.begin(scope, time.Now())
		if first {
			body, err := create()
			s.idem.finish(scope, e, body, err == nil)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusCreated, body)
			return
		}
		select {
		case <-e.done:
		case <-r.Context().Done():
			s.writeError(w, r, errdefs.New(errdefs.ErrUnavailable, "gave up waiting for the create with the same Idempotency-Key"))
			return
		}
		s.idem.mu.Lock()
		ok, body := e.ok, e.body
		s.idem.mu.Unlock()
		if ok {
			writeJSON(w, http.StatusCreated, body)
			return
		}
		// The first attempt failed: this one creates (or waits for another).
	}
}

func (s *server) writeCreated(w http.ResponseWriter, r *http.Request, create func() (any, error)) {
	body, err := create()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, body)
}
