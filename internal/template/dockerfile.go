package template

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// ParseDockerfile turns a Dockerfile into a BuildSpec: FROM (a sandpit
// template or an OCI image), RUN, COPY and ADD (local files only), ENV,
// WORKDIR, USER, ARG, and CMD/ENTRYPOINT as the start command. args
// override ARG defaults. COPY steps come back without FilesHash: the
// client tars their sources from its build context and fills it in.
// Instructions with no sandpit meaning (EXPOSE, LABEL, ...) are skipped
// and named in the warnings; multi-stage builds are an error. As with E2B's
// SDK, steps run as root in / and the template ends as user in /home/user
// unless the Dockerfile sets USER or WORKDIR.
func ParseDockerfile(r io.Reader, args map[string]string) (BuildSpec, []string, error) {
	var spec BuildSpec
	var warnings []string
	vars := map[string]string{}
	var entrypoint, cmd string
	froms := 0
	lines, err := logicalLines(r)
	if err != nil {
		return spec, nil, err
	}
	for _, ln := range lines {
		word, rest, _ := strings.Cut(ln.text, " ")
		word = strings.ToUpper(word)
		rest = strings.TrimSpace(rest)
		bad := func(msg string) error {
			return errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("Dockerfile line %d (%s): %s", ln.no, word, msg))
		}
		if word != "ARG" {
			rest = expandVars(rest, vars)
		}
		switch word {
		case "FROM":
			froms++
			if froms > 1 {
				return spec, nil, bad("multi-stage builds are not supported")
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				return spec, nil, bad("needs an image or template")
			}
			spec.FromImage = f[0]
		case "ARG":
			name, def, hasDef := strings.Cut(rest, "=")
			name = strings.TrimSpace(name)
			if v, ok := args[name]; ok {
				vars[name] = v
			} else if hasDef {
				vars[name] = unquote(strings.TrimSpace(def))
			} else {
				vars[name] = ""
			}
		case "RUN":
			if froms == 0 {
				return spec, nil, bad("comes before FROM")
			}
			script, err := shellOrExec(rest)
			if err != nil {
				return spec, nil, bad(err.Error())
			}
			spec.Steps = append(spec.Steps, Step{Type: StepRun, Args: []string{script}})
		case "COPY", "ADD":
			steps, err := copySteps(rest)
			if err != nil {
				return spec, nil, bad(err.Error())
			}
			spec.Steps = append(spec.Steps, steps...)
		case "ENV":
			kv, err := envPairs(rest)
			if err != nil {
				return spec, nil, bad(err.Error())
			}
			spec.Steps = append(spec.Steps, Step{Type: StepEnv, Args: kv})
		case "WORKDIR":
			spec.Steps = append(spec.Steps, Step{Type: StepWorkdir, Args: []string{unquote(rest)}})
		case "USER":
			user, _, _ := strings.Cut(rest, ":")
			spec.Steps = append(spec.Steps, Step{Type: StepUser, Args: []string{user}})
		case "CMD":
			if cmd, err = shellOrExec(rest); err != nil {
				return spec, nil, bad(err.Error())
			}
		case "ENTRYPOINT":
			if entrypoint, err = shellOrExec(rest); err != nil {
				return spec, nil, bad(err.Error())
			}
		case "EXPOSE", "LABEL", "MAINTAINER", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "VOLUME", "ONBUILD":
			warnings = append(warnings, fmt.Sprintf("line %d: %s is ignored", ln.no, word))
		default:
			return spec, nil, bad("unknown instruction")
		}
	}
	if froms == 0 {
		return spec, nil, errdefs.New(errdefs.ErrInvalidArgument, "Dockerfile has no FROM")
	}
	spec.StartCmd = strings.TrimSpace(entrypoint + " " + cmd)
	// As E2B's SDK does with a Dockerfile: steps run as root in / (as
	// Docker's would), and the template ends as user in its home unless
	// the Dockerfile said otherwise.
	userSet, wdSet := false, false
	for _, s := range spec.Steps {
		userSet = userSet || s.Type == StepUser
		wdSet = wdSet || s.Type == StepWorkdir
	}
	spec.Steps = append([]Step{{Type: StepUser, Args: []string{"root"}}, {Type: StepWorkdir, Args: []string{"/"}}}, spec.Steps...)
	if !userSet {
		spec.Steps = append(spec.Steps, Step{Type: StepUser, Args: []string{defaultUser}})
	}
	if !wdSet {
		spec.Steps = append(spec.Steps, Step{Type: StepWorkdir, Args: []string{"/home/" + defaultUser}})
	}
	for i, s := range spec.Steps {
		if s.Type == StepCopy {
			continue // validated once the client has set FilesHash
		}
		if err := s.Validate(i + 1); err != nil {
			return spec, nil, err
		}
	}
	return spec, warnings, nil
}

type logicalLine struct {
	no   int
	text string
}

// logicalLines joins continuation lines and drops comments and blanks.
func logicalLines(r io.Reader) ([]logicalLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []logicalLine
	var cur strings.Builder
	start, no := 0, 0
	for sc.Scan() {
		no++
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") {
			continue
		}
		if cur.Len() == 0 {
			if l == "" {
				continue
			}
			start = no
		}
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(l)
		out = append(out, logicalLine{no: start, text: strings.TrimSpace(cur.String())})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "reading Dockerfile: "+err.Error())
	}
	if cur.Len() > 0 {
		out = append(out, logicalLine{no: start, text: strings.TrimSpace(cur.String())})
	}
	return out, nil
}

// shellOrExec returns a command in shell form as is and one in exec form
// (a JSON array) quoted for the shell.
func shellOrExec(s string) (string, error) {
	if !strings.HasPrefix(s, "[") {
		if s == "" {
			return "", fmt.Errorf("needs a command")
		}
		return s, nil
	}
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil || len(argv) == 0 {
		return "", fmt.Errorf("exec form must be a JSON array of strings")
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " "), nil
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r == ',' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// copySteps parses COPY/ADD [--chown=u[:g]] [--chmod=mode] src... dest
// into one COPY step per source.
func copySteps(rest string) ([]Step, error) {
	var user, mode string
	var words []string
	if strings.HasPrefix(rest, "[") {
		if err := json.Unmarshal([]byte(rest), &words); err != nil {
			return nil, fmt.Errorf("exec form must be a JSON array of strings")
		}
	} else {
		words = strings.Fields(rest)
	}
	var paths []string
	for _, w := range words {
		switch {
		case strings.HasPrefix(w, "--chown="):
			user, _, _ = strings.Cut(strings.TrimPrefix(w, "--chown="), ":")
		case strings.HasPrefix(w, "--chmod="):
			mode = strings.TrimPrefix(w, "--chmod=")
			if len(mode) == 3 {
				mode = "0" + mode
			}
		case strings.HasPrefix(w, "--from="):
			return nil, fmt.Errorf("--from needs multi-stage builds, which are not supported")
		case strings.HasPrefix(w, "--"):
			// --link, --parents and the like change nothing here.
		default:
			paths = append(paths, unquote(w))
		}
	}
	if len(paths) < 2 {
		return nil, fmt.Errorf("needs at least one source and a destination")
	}
	dest := paths[len(paths)-1]
	srcs := paths[:len(paths)-1]
	if len(srcs) > 1 && !strings.HasSuffix(dest, "/") {
		dest += "/"
	}
	var out []Step
	for _, src := range srcs {
		if strings.Contains(src, "://") {
			return nil, fmt.Errorf("remote sources (%s) are not supported: sandboxes have no network yet", src)
		}
		out = append(out, Step{Type: StepCopy, Args: []string{strings.TrimPrefix(src, "./"), dest, user, mode}})
	}
	return out, nil
}

// envPairs parses ENV k=v k2="v 2" or the legacy ENV k v.
func envPairs(rest string) ([]string, error) {
	if !strings.Contains(strings.SplitN(rest, " ", 2)[0], "=") {
		k, v, _ := strings.Cut(rest, " ")
		if k == "" {
			return nil, fmt.Errorf("needs a name")
		}
		return []string{k, strings.TrimSpace(v)}, nil
	}
	var out []string
	for _, w := range splitWords(rest) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not name=value", w)
		}
		out = append(out, k, unquote(v))
	}
	return out, nil
}

// splitWords splits on spaces outside double or single quotes.
func splitWords(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			cur.WriteRune(r)
			escaped = true
		case quote != 0:
			cur.WriteRune(r)
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
			cur.WriteRune(r)
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		inner := s[1 : len(s)-1]
		if s[0] == '"' {
			inner = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(inner)
		}
		return inner
	}
	return s
}

// expandVars substitutes ARG values ($NAME, ${NAME}); other variables
// are left for the shell or the ENV step.
func expandVars(s string, vars map[string]string) string {
	if len(vars) == 0 || !strings.Contains(s, "$") {
		return s
	}
	return os.Expand(s, func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		if strings.ContainsAny(k, "{}") {
			return "${" + k + "}"
		}
		return "$" + k
	})
}
