package templates

import (
	"bytes"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/template"
)

func TestReadyMadeTemplatesParse(t *testing.T) {
	names := Names()
	if len(names) < 6 {
		t.Fatalf("ready-made templates: %v", names)
	}
	for _, n := range names {
		df, err := Dockerfile(n)
		if err != nil {
			t.Fatal(err)
		}
		spec, _, err := template.ParseDockerfile(bytes.NewReader(df), nil)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if len(spec.Steps) == 0 {
			t.Errorf("%s has no steps", n)
		}
	}
}
