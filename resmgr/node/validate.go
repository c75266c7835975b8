package node

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// MaxVolumeSize is the largest volume accepted: ext4's file size limit,
// far beyond any test image, and a guard against a size that is a typo.
const MaxVolumeSize int64 = 16 << 40

// ParseSize reads a size as upstream's normalize_data_size does (a number
// with an optional unit B, K, M, G or T, powers of 1024, case-insensitive,
// "20G", "512MiB" and "1.5G" alike) and returns bytes as int64, so 20G works
// where upstream's XML-RPC replies broke at 2 GiB. Sizes must be whole
// bytes, above zero and at most MaxVolumeSize.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	m := sizeRE.FindStringSubmatch(t)
	if m == nil {
		return 0, fmt.Errorf("size %q is not a number with an optional unit B, K, M, G or T", s)
	}
	mult := int64(1)
	switch strings.ToUpper(m[2]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	}
	var n int64
	if !strings.Contains(m[1], ".") {
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || v > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large (at most %d bytes)", s, MaxVolumeSize)
		}
		n = v * mult
	} else {
		f, err := strconv.ParseFloat(m[1], 64)
		if err != nil || f*float64(mult) > float64(MaxVolumeSize) {
			return 0, fmt.Errorf("size %q is too large (at most %d bytes)", s, MaxVolumeSize)
		}
		n = int64(f * float64(mult))
		if float64(n) != f*float64(mult) {
			return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
		}
	}
	return n, CheckSize(n)
}

var sizeRE = regexp.MustCompile(`^([0-9]{1,20}(?:\.[0-9]{1,9})?)\s*(?i:([BKMGT])(?:i?B)?)?$`)

func CheckSize(n int64) error {
	if n <= 0 {
		return fmt.Errorf("size %d must be above zero", n)
	}
	if n > MaxVolumeSize {
		return fmt.Errorf("size %d is too large (at most %d bytes)", n, MaxVolumeSize)
	}
	return nil
}

// SizeArg reads a size from an RPC argument: an int, or a string as
// ParseSize reads it (upstream keeps sizes as strings of bytes).
func SizeArg(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), CheckSize(int64(x))
	case int64:
		return x, CheckSize(x)
	case string:
		return ParseSize(x)
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %s is not a whole number of bytes", x)
		}
		return n, CheckSize(n)
	case nil:
		return 0, fmt.Errorf("no size given")
	}
	return 0, fmt.Errorf("size must be an int or a string, not %T", v)
}

// nameRE is what a file, pool or interface name may be made of: no shell
// metacharacters, no spaces, no leading '-' (it would read as an option).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.+][A-Za-z0-9_.+-]{0,254}$`)

// CheckFilename accepts a relative path of plain names inside a pool.
func CheckFilename(name string) error {
	if name == "" {
		return fmt.Errorf("empty file name")
	}
	if filepath.IsAbs(name) {
		return fmt.Errorf("file name %q must be relative to the pool", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "." || el == ".." || !nameRE.MatchString(el) {
			return fmt.Errorf("file name %q: element %q must be letters, digits, '_', '.', '+' or '-' (not '.' or '..')", name, el)
		}
	}
	return nil
}

// CheckAbsPath accepts a clean absolute path of plain names.
func CheckAbsPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("path %q must be absolute and clean", p)
	}
	if p == "/" {
		return fmt.Errorf("path %q: the root directory cannot be a pool", p)
	}
	return CheckFilename(strings.TrimPrefix(p, "/"))
}

// ifnameRE is a Linux interface name (IFNAMSIZ 16 with the NUL).
var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$`)

func CheckIfname(n string) error {
	if !ifnameRE.MatchString(n) {
		return fmt.Errorf("interface name %q must be 1-15 letters, digits, '_', '.' or '-'", n)
	}
	return nil
}

// mountOptionsRE: comma-separated options as mount(8) takes them, one argv
// item, nothing a shell or mount could read as something else.
var mountOptionsRE = regexp.MustCompile(`^[A-Za-z0-9_]+(=[A-Za-z0-9_.:/-]+)?(,[A-Za-z0-9_]+(=[A-Za-z0-9_.:/-]+)?)*$`)

// hostRE: an NFS server name or IPv4/IPv6 address.
var hostRE = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})$`)

// ValidName reports whether n is a plain name: letters, digits, '_', '.',
// '+' or '-', not starting with '-'.
func ValidName(n string) bool { return nameRE.MatchString(n) }

// ValidHost reports whether h is an NFS server name or address.
func ValidHost(h string) bool { return hostRE.MatchString(h) }
