// Command mkimage writes sandpit's container image as a docker-archive
// tarball (what `docker load`, `podman load`, `ctr images import` and
// `kind load image-archive` read) without a Docker engine or a registry:
// a base layer from a root filesystem on disk (scripts/image-base.sh
// builds one from Debian's packages) and a layer of files added on top
// (the sandpit binaries), with go-containerregistry. The output is
// reproducible from the same root and files: the files added and the
// image's creation are dated -epoch, the root's files keep their times,
// owners are numeric, entries are sorted, and the gzip streams carry no
// names or times.
//
// `make image` runs it; -check reads an image back and checks what a node
// needs is in it.
//
// Usage:
//
//	mkimage -base ROOT [-base-cache FILE] -add SRC:DEST ... -tag NAME:TAG ... -o OUT.tar
//	mkimage -check OUT.tar
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var spec Spec
	var adds, tags stringList
	fs.StringVar(&spec.Base, "base", "", "root filesystem `dir` of the base layer")
	fs.StringVar(&spec.BaseCache, "base-cache", "", "`file` keeping the base layer, gzipped, between runs (reused while newer than -base)")
	fs.Var(&adds, "add", "`SRC:DEST` file added in the top layer at absolute path DEST, mode kept (repeatable)")
	fs.Var(&tags, "tag", "`NAME:TAG` the image is tagged with (repeatable; the first is its name)")
	fs.Int64Var(&spec.Epoch, "epoch", 0, "Unix time of the files added and of the image's creation (SOURCE_DATE_EPOCH)")
	out := fs.String("o", "bin/sandpit-image.tar", "docker-archive tarball to write")
	check := fs.String("check", "", "read the docker-archive `tarball` back and check it holds the sandpit binaries and its entrypoint, instead of writing one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *check != "" {
		rep, err := Check(*check)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, rep)
		return nil
	}
	if spec.Base == "" || len(tags) == 0 {
		return errors.New("-base and -tag are required")
	}
	for _, a := range adds {
		src, dest, ok := strings.Cut(a, ":")
		if !ok || src == "" || !strings.HasPrefix(dest, "/") {
			return fmt.Errorf("-add %q: want SRC:/ABSOLUTE/DEST", a)
		}
		spec.Files = append(spec.Files, File{Src: src, Dest: dest})
	}
	spec.Tags = tags
	spec.Entrypoint = []string{"/usr/local/bin/sandpit"}
	spec.Cmd = []string{"serve"}
	digest, err := Write(spec, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s (%s)\n", *out, strings.Join(tags, ", "), digest)
	return nil
}
