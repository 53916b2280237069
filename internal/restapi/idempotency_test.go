package restapi_test

import (
	"sync"
	"testing"
)

// A create retried with the same Idempotency-Key (as the SDKs retry)
// answers the first sandbox; other keys, other API keys and no key create.
func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, "")
	create := func(apiKey, idem, template string) response {
		t.Helper()
		h := map[string]string{"X-API-KEY": apiKey}
		if idem != "" {
			h["Idempotency-Key"] = idem
		}
		return e.doKey(t, "POST", "/v2/sandboxes", `{"templateID":"`+template+`"}`, h)
	}
	id := func(r response) string {
		t.Helper()
		if r.status != 201 {
			t.Fatalf("create = %d %s", r.status, r.body)
		}
		return r.json(t)["sandboxID"].(string)
	}
	first := id(create(e.key, "retry-1", "base"))
	if again := id(create(e.key, "retry-1", "base")); again != first {
		t.Errorf("retry with the same key created %s, want %s", again, first)
	}
	if other := id(create(e.key, "retry-2", "base")); other == first {
		t.Error("another key answered the first sandbox")
	}
	if other := id(create(extraKey, "retry-1", "base")); other == first {
		t.Error("another API key's create answered the first sandbox")
	}
	if a, b := id(create(e.key, "", "base")), id(create(e.key, "", "base")); a == b {
		t.Error("creates without a key answered the same sandbox")
	}
	wantError(t, create(e.key, "Not_Valid", "base"), 400, "Idempotency-Key")

	// A failed create is not remembered: the retry creates.
	wantError(t, create(e.key, "fails-first", "nope"), 404, "")
	id(create(e.key, "fails-first", "base"))

	// Concurrent retries wait for the first and share its sandbox.
	var wg sync.WaitGroup
	rs := make([]response, 8)
	for i := range rs {
		wg.Go(func() { rs[i] = create(e.key, "burst", "base") })
	}
	wg.Wait()
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = id(r)
	}
	for _, got := range ids {
		if got != ids[0] {
			t.Fatalf("concurrent creates with one key gave %v", ids)
		}
	}
}
