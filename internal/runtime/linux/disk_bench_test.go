package linux

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkDiskAttach times what a disk adds to a create: copy the empty
// image, bind a loop device, mount ext4.
func BenchmarkDiskAttach(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (loop devices)")
	}
	dir := b.TempDir()
	d, err := newDisks(dir)
	if err != nil {
		b.Skip(err)
	}
	defer d.close()
	if _, err := d.golden(1024); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		img := filepath.Join(dir, "d"+strconv.Itoa(i)+".img")
		fd, err := d.attach(img, 1024)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		unix.Close(fd)
		os.Remove(img)
		b.StartTimer()
	}
}
