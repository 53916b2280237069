package restapi

import (
	"fmt"
	"testing"
	"time"
)

// The remembered creates stay within the cap, the oldest going first, and
// answers past their TTL are dropped.
func TestIdempotencyCapped(t *testing.T) {
	d := &idempotency{max: 3}
	now := time.Unix(1_000_000, 0)
	for i := range 5 {
		e, first := d.begin(fmt.Sprint("k", i), now)
		if !first {
			t.Fatalf("key k%d: not first", i)
		}
		d.finish(fmt.Sprint("k", i), e, i, true)
	}
	if len(d.entries) != 3 {
		t.Fatalf("%d entries remembered, want the cap of 3", len(d.entries))
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := d.entries[fmt.Sprint("k", i)]; ok != want {
			t.Errorf("k%d remembered = %v, want %v", i, ok, want)
		}
	}
	// A retry of a remembered key answers it and adds nothing.
	if _, first := d.begin("k4", now); first {
		t.Error("a retry of k4 was told to create")
	}
	// A failed create is forgotten; its queue element is skipped later.
	e, _ := d.begin("fails", now)
	d.finish("fails", e, nil, false)
	if _, ok := d.entries["fails"]; ok {
		t.Error("a failed create was remembered")
	}
	// Failed creates behind a live entry do not grow the queue without bound.
	for i := range 1000 {
		e, _ := d.begin(fmt.Sprint("f", i), now)
		d.finish(fmt.Sprint("f", i), e, nil, false)
	}
	if len(d.order) > 2*len(d.entries)+65 {
		t.Errorf("%d queued for %d entries after 1000 failed creates", len(d.order), len(d.entries))
	}
	// Past the TTL everything goes at the next begin.
	later := now.Add(idempotencyTTL + time.Second)
	d.begin("fresh", later)
	if len(d.entries) != 1 || len(d.order) != 1 {
		t.Errorf("after the TTL: %d entries, %d queued; want 1 and 1", len(d.entries), len(d.order))
	}
}
