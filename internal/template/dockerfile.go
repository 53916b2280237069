package template

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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

// expandVars substitutes references to ARGs in s: $NAME, ${NAME},
// ${NAME:-word}, ${NAME-word}, ${NAME:+word} and ${NAME+word}. Any other
// "$" (a variable no ARG declares, a shell form such as ${#x}) is left
// exactly as written, for the shell or the build's ENV to expand.
//
// BuildKit's shell lexer is not used: it substitutes every variable
// (unknown ones as empty) and removes quotes, but the template's env comes
// from FROM at build time and RUN's text belongs to the shell.
func expandVars(s string, vars map[string]string) string {
	if len(vars) == 0 || !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			b.WriteString(s[i : i+2]) // escaped: not a reference
			i += 2
		case s[i] == '$':
			if v, n, ok := argRef(s[i:], vars); ok {
				b.WriteString(v)
				i += n
				continue
			}
			b.WriteByte('$')
			i++
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

// argRef expands the reference at the start of s (which starts with "$")
// when it names an ARG, and returns its value and length.
func argRef(s string, vars map[string]string) (string, int, bool) {
	if len(s) > 1 && s[1] != '{' {
		name := identifier(s[1:])
		v, ok := vars[name]
		return v, 1 + len(name), ok && name != ""
	}
	end := closingBrace(s)
	if end < 0 {
		return "", 0, false
	}
	body := s[2:end]
	name := identifier(body)
	v, ok := vars[name]
	if !ok || name == "" {
		return "", 0, false
	}
	op, word := body[len(name):], ""
	for _, o := range []string{":-", ":+", "-", "+"} {
		if w, found := strings.CutPrefix(op, o); found {
			op, word = o, w
			break
		}
	}
	switch op {
	case "", "-": // declared, so set
	case ":-":
		if v == "" {
			v = expandVars(word, vars)
		}
	case ":+":
		if v != "" {
			v = expandVars(word, vars)
		}
	case "+":
		v = expandVars(word, vars)
	default:
		return "", 0, false // ${NAME#x} and friends: the shell's
	}
	return v, end + 1, true
}

// identifier returns the variable name s starts with.
func identifier(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return s[:i]
	}
	return s
}

// closingBrace returns the index of the "}" that closes the "${" s starts
// with, or -1.
func closingBrace(s string) int {
	depth := 0
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '{' && s[i-1] == '$':
			depth++
		case s[i] == '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}
