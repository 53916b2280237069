package template

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDockerfile(t *testing.T) {
	df := `# syntax=docker/dockerfile:1
FROM base
ARG VERSION=1.2
ENV APP_HOME=/srv/app \
    GREETING="hello world"
ENV LEGACY some value
WORKDIR $APP_HOME
COPY --chown=user:user --chmod=755 ./bin/tool conf.d /srv/app/
RUN echo building ${VERSION} && \
    touch /done
RUN ["echo", "exec form", "it's"]
USER user:user
EXPOSE 8000
ENTRYPOINT ["python3", "-m"]
CMD ["http.server", "8000"]
`
	spec, warnings, err := ParseDockerfile(strings.NewReader(df), map[string]string{"VERSION": "2.0"})
	if err != nil {
		t.Fatal(err)
	}
	want := BuildSpec{
		FromImage: "base",
		StartCmd:  "python3 -m http.server 8000",
		Steps: []Step{
			{Type: "USER", Args: []string{"root"}},
			{Type: "WORKDIR", Args: []string{"/"}},
			{Type: "ENV", Args: []string{"APP_HOME", "/srv/app", "GREETING", "hello world"}},
			{Type: "ENV", Args: []string{"LEGACY", "some value"}},
			{Type: "WORKDIR", Args: []string{"$APP_HOME"}},
			{Type: "COPY", Args: []string{"bin/tool", "/srv/app/", "user", "0755"}},
			{Type: "COPY", Args: []string{"conf.d", "/srv/app/", "user", "0755"}},
			{Type: "RUN", Args: []string{"echo building 2.0 &&  touch /done"}},
			{Type: "RUN", Args: []string{`echo 'exec form' 'it'\''s'`}},
			{Type: "USER", Args: []string{"user"}},
		},
	}
	if !reflect.DeepEqual(spec, want) {
		t.Fatalf("got  %+v\nwant %+v", spec, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "EXPOSE") {
		t.Fatalf("warnings %v", warnings)
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	for _, tc := range []struct{ df, want string }{
		{"RUN true", "before FROM"},
		{"FROM a\nFROM b", "multi-stage"},
		{"FROM a\nCOPY --from=x a b", "multi-stage"},
		{"FROM a\nADD https://x/y /y", "remote"},
		{"FROM a\nFROBNICATE", "unknown instruction"},
		{"# nothing", "no FROM"},
		{"FROM a\nRUN [\"unterminated\"", "JSON array"},
	} {
		_, _, err := ParseDockerfile(strings.NewReader(tc.df), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.df, err, tc.want)
		}
	}
}

func FuzzParseDockerfile(f *testing.F) {
	f.Add("FROM base\nRUN echo hi\nENV A=1 B=\"2 3\"\nCOPY a b\nCMD [\"x\"]\n")
	f.Fuzz(func(t *testing.T, df string) {
		_, _, _ = ParseDockerfile(strings.NewReader(df), map[string]string{"A": "1"})
	})
}

// TestDockerfileArgExpansion: ARGs are expanded with the shell's default
// and alternative forms; every other variable stays as written (for the
// shell, or for the template's env at build time), defaults included.
func TestDockerfileArgExpansion(t *testing.T) {
	df := "FROM base\nARG V=2.0\nARG EMPTY\n" +
		"RUN echo ${HOME:-/root} $HOME ${V} $V ${V:-x} ${EMPTY:-dflt} ${EMPTY-unset} ${V:+alt} ${EMPTY:+no} ${V+plus} ${NOPE:-${V}} ${#V} \\$V $1 $$\n" +
		"WORKDIR ${APP_HOME:-/srv}/$V\n"
	spec, _, err := ParseDockerfile(strings.NewReader(df), nil)
	if err != nil {
		t.Fatal(err)
	}
	run, wd := spec.Steps[2].Args[0], spec.Steps[3].Args[0]
	if want := `echo ${HOME:-/root} $HOME 2.0 2.0 2.0 dflt  alt  plus ${NOPE:-2.0} ${#V} \$V $1 $$`; run != want {
		t.Errorf("RUN is\n%q\nwant\n%q", run, want)
	}
	if want := "${APP_HOME:-/srv}/2.0"; wd != want {
		t.Errorf("WORKDIR is %q, want %q", wd, want)
	}
}
