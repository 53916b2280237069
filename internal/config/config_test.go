package config

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	bad := Defaults()
	bad.Listen = "nonsense"
	bad.DataDir = ""
	bad.MaxTimeout = 0
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config validated")
	}
	for _, want := range []string{"listen address", "data dir", "max timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
