package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Bytes is an amount of memory or disk, written with a binary unit:
// "256MiB", "2GiB", "10TiB" (K, M, G and T mean the same), or "0".
// It is a flag.Value.
type Bytes int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{
	{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
	{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40}, {"B", 0},
}

// ParseBytes reads a size such as "256MiB".
func ParseBytes(s string) (Bytes, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || n < 0 || n > (1<<62)>>u.shift {
			break
		}
		return Bytes(n << u.shift), nil
	}
	return 0, fmt.Errorf("size %q: want a number with a unit, such as 512MiB, 2GiB or 10TiB, or 0", s)
}

// String writes b in the largest unit that divides it.
func (b Bytes) String() string {
	if b == 0 {
		return "0"
	}
	for i := 3; i >= 0; i-- {
		if u := byteUnits[i]; b%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(b>>u.shift), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// Set implements flag.Value.
func (b *Bytes) Set(s string) error {
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
