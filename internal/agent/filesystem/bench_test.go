package filesystem

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/sandpit-dev/sandpit/gen/proto/filesystem"
)

// BenchmarkStat is files.exists/getInfo: one unary JSON round trip.
func BenchmarkStat(b *testing.B) {
	h := newHarness(b)
	os.WriteFile(filepath.Join(h.root, "home/user/a.txt"), []byte("a"), 0o644)
	ctx := b.Context()
	for b.Loop() {
		if _, err := h.client.Stat(ctx, connect.NewRequest(&pb.StatRequest{Path: "a.txt"})); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListDir1000 lists a directory of 1000 files.
func BenchmarkListDir1000(b *testing.B) {
	h := newHarness(b)
	d := filepath.Join(h.root, "home/user/many")
	os.Mkdir(d, 0o755)
	for i := range 1000 {
		os.WriteFile(filepath.Join(d, strconv.Itoa(i)), []byte("x"), 0o644)
	}
	ctx := b.Context()
	for b.Loop() {
		res, err := h.client.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{Path: "many"}))
		if err != nil || len(res.Msg.Entries) != 1000 {
			b.Fatal(err)
		}
	}
}
