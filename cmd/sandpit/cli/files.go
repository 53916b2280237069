package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"text/tabwriter"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// files: ls, cat, put, get.
func (c *cli) files(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError("files needs a subcommand: ls, cat, put or get")
	}
	sub := args[0]
	fs := flag.NewFlagSet("files "+sub, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON (ls)")
	depth := fs.Int("depth", 1, "levels to descend (ls)")
	user := fs.String("user", "", "act as this sandbox user (default: the sandbox's)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"ls": 2, "cat": 2, "put": 3, "get": 3}[sub]
	if want == 0 {
		return usageError("unknown files subcommand " + sub)
	}
	if len(pos) != want {
		if want == 2 {
			return usageError("usage: sandpit files " + sub + " ID PATH")
		}
		return usageError("usage: sandpit files " + sub + " ID SRC DST")
	}
	sb, err := c.connect(ctx, pos[0])
	if err != nil {
		return err
	}
	var opts []sandpit.FileOption
	if *user != "" {
		opts = append(opts, sandpit.WithUser(*user))
	}
	switch sub {
	case "ls":
		entries, err := sb.Files.List(ctx, pos[1], append(opts, sandpit.WithDepth(*depth))...)
		if err != nil {
			return err
		}
		if *asJSON {
			if entries == nil {
				entries = []sandpit.EntryInfo{}
			}
			return writeJSON(c.stdout, entries)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 1, ' ', 0)
		for _, e := range entries {
			name := e.Path
			if e.Type == sandpit.TypeDir {
				name += "/"
			}
			if e.SymlinkTarget != "" {
				name += " -> " + e.SymlinkTarget
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", e.Permissions, e.Owner, e.Group, e.Size, e.ModifiedTime.Local().Format("Jan _2 15:04"), name)
		}
		return tw.Flush()
	case "cat":
		_, err := sb.Files.ReadTo(ctx, pos[1], c.stdout, opts...)
		return err
	case "put":
		src, dst := pos[1], pos[2]
		var r io.Reader = c.stdin
		var size int64 = -1
		if src != "-" {
			f, err := os.Open(src)
			if err != nil {
				return err
			}
			defer f.Close()
			if st, err := f.Stat(); err == nil {
				size = st.Size()
				if st.IsDir() {
					return fmt.Errorf("%s is a directory; put copies one file", src)
				}
			}
			r = f
			if dst == "." || dst == "" || dst[len(dst)-1] == '/' {
				dst = path.Join(dst, path.Base(src))
			}
		}
		p := c.progress("uploading", size)
		e, err := sb.Files.WriteStream(ctx, dst, io.TeeReader(r, p), opts...)
		p.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "wrote %s (%s)\n", e.Path, bytesText(p.n))
		return nil
	case "get":
		src, dst := pos[1], pos[2]
		var w io.Writer = c.stdout
		var tmp *os.File
		if dst != "-" {
			if st, err := os.Stat(dst); err == nil && st.IsDir() {
				dst = dst + "/" + path.Base(src)
			}
			tmp, err = os.CreateTemp(pathDir(dst), ".sandpit-get-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			w = tmp
		}
		var size int64 = -1
		if st, err := sb.Files.Stat(ctx, src, opts...); err == nil {
			size = st.Size
		}
		p := c.progress("downloading", size)
		_, err := sb.Files.ReadTo(ctx, src, io.MultiWriter(w, p), opts...)
		p.done()
		if err != nil {
			return err
		}
		if tmp != nil {
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "wrote %s (%s)\n", dst, bytesText(p.n))
		}
		return nil
	}
	return nil
}

func pathDir(p string) string {
	d := path.Dir(p)
	if d == "" {
		return "."
	}
	return d
}

// progress reports a transfer on stderr when stderr is a terminal.
type progress struct {
	c     *cli
	what  string
	total int64
	n     int64
	last  time.Time
	shown bool
}

func (c *cli) progress(what string, total int64) *progress {
	return &progress{c: c, what: what, total: total, last: time.Now()}
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if f, ok := p.c.stderr.(*os.File); ok && isTerminal(f) && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.shown = true
		if p.total > 0 {
			fmt.Fprintf(p.c.stderr, "\r%s %s / %s (%d%%)  ", p.what, bytesText(p.n), bytesText(p.total), p.n*100/p.total)
		} else {
			fmt.Fprintf(p.c.stderr, "\r%s %s  ", p.what, bytesText(p.n))
		}
	}
	return len(b), nil
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.c.stderr, "\r\033[K")
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
