package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sandpit-dev/sandpit/internal/template"
	"github.com/sandpit-dev/sandpit/templates"
)

const templateUsage = `usage:
  sandpit template build (-f DOCKERFILE | NAME) [--name NAME] [--context DIR] [--cpu N] [--memory MB] [--no-cache]
  sandpit template list
  sandpit template rm NAME
  sandpit template logs NAME [--build ID]

The client verbs talk to the server at $SANDPIT_URL (else $E2B_API_URL, else
http://127.0.0.1:49982) with the key in $SANDPIT_API_KEY or $E2B_API_KEY (else
the data dir's api-key file). Ready-made templates: %s. Built under
its own name, a ready-made template is made public: every team can start
it (that takes an admin key; with another it stays the key's team's).
`

// templateCmd runs `sandpit template ...`.
func templateCmd(args []string, stdout, stderr io.Writer) error {
	usage := fmt.Sprintf(templateUsage, strings.Join(templates.Names(), ", "))
	if len(args) == 0 {
		return errors.New(usage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch args[0] {
	case "build":
		return templateBuild(ctx, args[1:], stdout, stderr)
	case "list", "ls":
		return templateList(ctx, args[1:], stdout)
	case "rm", "remove", "delete":
		return templateRemove(ctx, args[1:], stdout)
	case "logs":
		return templateLogs(ctx, args[1:], stdout)
	default:
		return errors.New(usage)
	}
}

func templateBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("template build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "Dockerfile to build")
	name := fs.String("name", "", "template name (default: NAME, or the Dockerfile's directory)")
	contextDir := fs.String("context", "", "directory COPY sources are taken from (default: the Dockerfile's)")
	cpu := fs.Int("cpu", 0, "default CPUs of sandboxes from the template")
	mem := fs.Int("memory", 0, "default memory (MB) of sandboxes from the template")
	noCache := fs.Bool("no-cache", false, "run every step again")
	c := clientFlags(fs)
	if err := fs.Parse(interleave(args)); err != nil {
		return err
	}
	b := &builder{client: c, out: stdout, cpu: *cpu, mem: *mem, force: *noCache}
	switch {
	case *file != "" && fs.NArg() == 0:
		df, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		dir := filepath.Dir(*file)
		if *contextDir != "" {
			dir = *contextDir
		}
		n := *name
		if n == "" {
			abs, _ := filepath.Abs(dir)
			n = strings.ToLower(filepath.Base(abs))
		}
		return b.build(ctx, n, df, dir, false)
	case *file == "" && fs.NArg() == 1:
		ready := fs.Arg(0)
		df, err := templates.Dockerfile(ready)
		if err != nil {
			return fmt.Errorf("no ready-made template %q (there are: %s); build a Dockerfile with -f", ready, strings.Join(templates.Names(), ", "))
		}
		n := *name
		if n == "" {
			n = ready
		}
		// Under its own name a ready-made template is every team's.
		return b.build(ctx, n, df, "", n == ready)
	default:
		return errors.New("sandpit template build: give -f DOCKERFILE or the NAME of a ready-made template")
	}
}

type builder struct {
	client     *apiClient
	out        io.Writer
	cpu, mem   int
	force      bool
	inProgress []string // ready-made templates being built, to catch loops
}

// build builds the Dockerfile df as name; COPY sources come from dir. A
// FROM naming a ready-made template that the server lacks builds that
// first. A public build is made public (every team may start it) once
// built.
func (b *builder) build(ctx context.Context, name string, df []byte, dir string, public bool) error {
	spec, warnings, err := template.ParseDockerfile(bytes.NewReader(df), nil)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(b.out, "warning:", w)
	}
	if from := spec.FromImage; slices.Contains(templates.Names(), from) && !slices.Contains(b.inProgress, from) {
		var alias struct{ TemplateID string }
		if err := b.client.do(ctx, "GET", "/templates/aliases/"+esc(from), nil, &alias); isNotFound(err) {
			fmt.Fprintf(b.out, "==> %s needs %s: building it first\n", name, from)
			parent, _ := templates.Dockerfile(from)
			b.inProgress = append(b.inProgress, name)
			if err := b.build(ctx, from, parent, "", true); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	var req struct {
		TemplateID string `json:"templateID"`
		BuildID    string `json:"buildID"`
	}
	if err := b.client.do(ctx, "POST", "/v3/templates", map[string]any{"name": name, "cpuCount": b.cpu, "memoryMB": b.mem}, &req); err != nil {
		return err
	}
	for i, s := range spec.Steps {
		if s.Type != template.StepCopy {
			continue
		}
		if dir == "" {
			return fmt.Errorf("step %d (%s) copies files but there is no build context", i+1, s)
		}
		hash, err := b.upload(ctx, req.TemplateID, dir, s.Args[0])
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s, err)
		}
		spec.Steps[i].FilesHash = hash
	}
	spec.Force = b.force
	start := time.Now()
	fmt.Fprintf(b.out, "==> building %s (template %s, build %s)\n", name, req.TemplateID, req.BuildID)
	if err := b.client.do(ctx, "POST", "/v2/templates/"+esc(req.TemplateID)+"/builds/"+esc(req.BuildID), spec, nil); err != nil {
		return err
	}
	if err := followBuild(ctx, b.client, req.TemplateID, req.BuildID, b.out); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "==> %s is ready (%s); create sandboxes from it with template %q\n", name, time.Since(start).Round(time.Millisecond), name)
	if public {
		b.makePublic(ctx, name, req.TemplateID)
	}
	return nil
}

// makePublic makes the template id, just built as name, public. It only
// warns when it cannot: the build itself succeeded, and the template is
// still there for the key's own team.
func (b *builder) makePublic(ctx context.Context, name, id string) {
	err := b.client.do(ctx, "PATCH", "/v2/templates/"+esc(id), map[string]bool{"public": true}, nil)
	var ae *apiError
	switch {
	case err == nil:
		fmt.Fprintf(b.out, "==> %s is public: every team can start it\n", name)
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		fmt.Fprintf(b.out, "warning: %s stays private to this key's team: %s\n", name, ae.Message)
	default:
		fmt.Fprintf(b.out, "warning: %s stays private to this key's team: making it public: %v\n", name, err)
	}
}

// upload tars src (a file or directory under dir) and sends it unless the
// server already has it. It returns the archive's hash.
func (b *builder) upload(ctx context.Context, templateID, dir, src string) (string, error) {
	archive, err := tarContext(dir, src)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(archive)
	hash := hex.EncodeToString(sum[:])
	var link struct {
		Present bool    `json:"present"`
		URL     *string `json:"url"`
	}
	if err := b.client.do(ctx, "GET", "/templates/"+esc(templateID)+"/files/"+hash, nil, &link); err != nil {
		return "", err
	}
	if link.Present {
		return hash, nil
	}
	if link.URL == nil {
		return "", errors.New("the server gave no upload link")
	}
	return hash, b.client.put(ctx, *link.URL, archive)
}

// tarContext makes a gzipped tar of src (relative to dir), entries named
// relative to dir, as the E2B SDK uploads for COPY.
func tarContext(dir, src string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	root := filepath.Join(dir, filepath.FromSlash(src))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("%s is outside the build context", p)
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packing %s: %w", src, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type logEntry struct {
	Timestamp time.Time `json:"timestamp"`
	Level     string    `json:"level"`
	Message   string    `json:"message"`
	Step      string    `json:"step"`
}

type buildStatus struct {
	Status     string     `json:"status"`
	LogEntries []logEntry `json:"logEntries"`
	Reason     *struct {
		Message string `json:"message"`
		Step    string `json:"step"`
	} `json:"reason"`
}

// followBuild prints a build's log as it grows until the build ends.
func followBuild(ctx context.Context, c *apiClient, templateID, buildID string, out io.Writer) error {
	offset := 0
	for {
		var st buildStatus
		path := fmt.Sprintf("/templates/%s/builds/%s/status?logsOffset=%d", esc(templateID), esc(buildID), offset)
		if err := c.do(ctx, "GET", path, nil, &st); err != nil {
			return err
		}
		offset += len(st.LogEntries)
		for _, e := range st.LogEntries {
			printLog(out, e)
		}
		if (st.Status == "ready" || st.Status == "error") && len(st.LogEntries) == 0 {
			if st.Status == "error" {
				msg := "the build failed"
				if st.Reason != nil {
					msg = st.Reason.Message
				}
				return errors.New(msg)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printLog(out io.Writer, e logEntry) {
	step := e.Step
	if step == "" {
		step = "-"
	}
	fmt.Fprintf(out, "%s %-8s %s\n", e.Timestamp.Local().Format("15:04:05.000"), "["+step+"]", e.Message)
}

func templateList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("template list", flag.ContinueOnError)
	c := clientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var list []struct {
		TemplateID  string    `json:"templateID"`
		Names       []string  `json:"names"`
		BuildID     string    `json:"buildID"`
		BuildStatus string    `json:"buildStatus"`
		CPUCount    int       `json:"cpuCount"`
		MemoryMB    int       `json:"memoryMB"`
		UpdatedAt   time.Time `json:"updatedAt"`
		Builtin     bool      `json:"builtin"`
	}
	if err := c.do(ctx, "GET", "/templates", nil, &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATUS\tCPU\tMEMORY\tUPDATED")
	for _, t := range list {
		names := strings.Join(t.Names, ",")
		if names == "" {
			names = t.TemplateID
		}
		updated := "built-in"
		if !t.Builtin {
			updated = t.UpdatedAt.Local().Format(time.DateTime)
		}
		mem := "-"
		if t.MemoryMB > 0 {
			mem = fmt.Sprintf("%d MB", t.MemoryMB)
		}
		cpu := "-"
		if t.CPUCount > 0 {
			cpu = fmt.Sprint(t.CPUCount)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", names, t.TemplateID, t.BuildStatus, cpu, mem, updated)
	}
	return tw.Flush()
}

func templateRemove(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("template rm", flag.ContinueOnError)
	c := clientFlags(fs)
	if err := fs.Parse(interleave(args)); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: sandpit template rm NAME [NAME]")
	}
	for _, n := range fs.Args() {
		if err := c.do(ctx, "DELETE", "/templates/"+esc(n), nil, nil); err != nil {
			return fmt.Errorf("removing %s: %w", n, err)
		}
		fmt.Fprintln(stdout, "removed", n)
	}
	return nil
}

func templateLogs(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("template logs", flag.ContinueOnError)
	buildID := fs.String("build", "", "build id (default: the template's last successful build)")
	c := clientFlags(fs)
	if err := fs.Parse(interleave(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sandpit template logs NAME [--build ID]")
	}
	ref := fs.Arg(0)
	var alias struct {
		TemplateID string `json:"templateID"`
	}
	if err := c.do(ctx, "GET", "/templates/aliases/"+esc(ref), nil, &alias); err != nil {
		return err
	}
	id := *buildID
	if id == "" {
		var list []struct {
			TemplateID string `json:"templateID"`
			BuildID    string `json:"buildID"`
		}
		if err := c.do(ctx, "GET", "/templates", nil, &list); err != nil {
			return err
		}
		for _, t := range list {
			if t.TemplateID == alias.TemplateID {
				id = t.BuildID
			}
		}
		if id == "" {
			return fmt.Errorf("template %s has no build with logs; pass --build ID", ref)
		}
	}
	return followBuild(ctx, c, alias.TemplateID, id, stdout)
}

// interleave moves flags after positional arguments to the front, so
// `template build python --cpu 2` works as Go's flag package wants.
func interleave(args []string) []string {
	return interleaveFlags(args, isBoolFlag)
}

// interleaveFS is interleave for any FlagSet: fs says which flags are
// booleans and so take no separate value.
func interleaveFS(fs *flag.FlagSet, args []string) []string {
	return interleaveFlags(args, func(a string) bool {
		f := fs.Lookup(strings.TrimLeft(a, "-"))
		if f == nil {
			return false
		}
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		return ok && b.IsBoolFlag()
	})
}

// interleaveFlags moves flags to the front; isBool says which flags take
// no separate value.
func interleaveFlags(args []string, isBool func(flag string) bool) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !isBool(a) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func isBoolFlag(a string) bool {
	return strings.TrimLeft(a, "-") == "no-cache"
}
