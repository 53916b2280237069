// Command registry is the test cluster's OCI registry: go-containerregistry's
// registry server (pkg/registry) on loopback, blobs on disk, manifests in
// memory (a restart forgets them; the test cluster never restarts it).
// test/cluster/up.sh starts it and gives the nodes its URL (--registry);
// down.sh stops it. A real cluster uses a real registry (distribution,
// Harbor, a cloud's) over HTTPS instead.
//
// Usage: registry -listen 127.0.0.1:0 -dir DIR -addr-file FILE
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "loopback `host:port` to serve on (port 0: a free one)")
	dir := flag.String("dir", "", "`directory` the blobs are kept in")
	addrFile := flag.String("addr-file", "", "`file` the address served on is written to once it listens")
	flag.Parse()
	if *dir == "" {
		return errors.New("-dir is required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %s: loopback only (plain HTTP, no auth)", *listen)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return err
		}
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	srv := &http.Server{
		Handler:           registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)), registry.Logger(logger)),
		ReadHeaderTimeout: 30 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Printf("serving on %s, blobs in %s", ln.Addr(), *dir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return err
	case <-sig:
	}
	return srv.Close()
}
