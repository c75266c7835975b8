package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// Host facts are read below a movable root ("/" on a node, a fixture tree
// in tests) and parsed by pure functions. Sources:
//
//	proc/cpuinfo                vendor id, model name, cpu count
//	sys/devices/system/cpu/online   cpu count when cpuinfo lists none
//	proc/meminfo                mem total
//	proc/sys/kernel/osrelease   kernel release
//	dev/kvm                     kvm
//
// Arch and hostname come from the kernel (uname, gethostname) rather than
// the root, as Python's platform.machine() and socket.gethostname() do.

// errNoData marks a fact that is absent from an existing source.
var errNoData = errors.New("no data")

// hostService implements host.cpu.*, host.platform.* and host.memory.*.
type hostService struct {
	root     string
	log      *slog.Logger
	machine  func() (string, error)
	hostname func() (string, error)
}

// NewHostService returns the "host" service reading facts below root
// (empty means "/"). logger may be nil.
func NewHostService(root string, logger *slog.Logger) (Service, error) {
	if root == "" {
		root = "/"
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("agent: host service: root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("agent: host service: root %q is not a directory", root)
	}
	return &hostService{root: root, log: logger, machine: unameMachine, hostname: os.Hostname}, nil
}

func (h *hostService) Name() string { return "host" }

func (h *hostService) Methods() map[string]Method {
	return map[string]Method{
		"cpu.get_cpu_vendor_id":       h.noArgs(h.cpuVendorID),
		"cpu.get_cpu_model_name":      h.noArgs(h.cpuModelName),
		"cpu.get_cpu_count":           h.noArgs(h.cpuCount),
		"platform.get_arch":           h.noArgs(h.arch),
		"platform.get_hostname":       h.noArgs(h.hostnameFact),
		"platform.get_kernel_release": h.noArgs(h.kernelRelease),
		"platform.has_kvm":            h.noArgs(h.hasKVM),
		"memory.get_mem_total":        h.noArgs(h.memTotal),
	}
}

func (h *hostService) noArgs(f func() (any, error)) Method {
	return func(_ context.Context, args Args) (any, error) {
		if err := args.Want(0, 0); err != nil {
			return nil, err
		}
		return f()
	}
}

// path maps an absolute source path such as "/proc/cpuinfo" below root.
func (h *hostService) path(p string) string {
	return filepath.Join(h.root, filepath.FromSlash(p))
}

// read returns a source file, or the FileNotFoundError/OSError fault
// Python's open() raises, naming the path as the node sees it.
func (h *hostService) read(p string) (string, error) {
	data, err := os.ReadFile(h.path(p))
	if err != nil {
		h.log.Debug("host fact source unreadable", "path", h.path(p), "err", err)
		if errors.Is(err, fs.ErrNotExist) {
			return "", xmlrpc.Faultf("FileNotFoundError", "[Errno 2] No such file or directory: '%s'", p)
		}
		return "", xmlrpc.Faultf("OSError", "cannot read %s: %v", p, errors.Unwrap(err))
	}
	return string(data), nil
}

// noData turns a parser's errNoData into upstream's OSError wording.
func (h *hostService) noData(what string, err error) error {
	if errors.Is(err, errNoData) {
		h.log.Debug("host fact not found", "fact", what)
		return xmlrpc.Faultf("OSError", "The %s was NOT found!", what)
	}
	h.log.Debug("host fact unparsable", "fact", what, "err", err)
	return xmlrpc.Faultf("OSError", "%s: %v", what, err)
}

func (h *hostService) cpuVendorID() (any, error) {
	s, err := h.read("/proc/cpuinfo")
	if err != nil {
		return nil, err
	}
	v, err := parseCPUVendorID(s)
	if err != nil {
		return nil, h.noData("vendor id", err)
	}
	return v, nil
}

func (h *hostService) cpuModelName() (any, error) {
	s, err := h.read("/proc/cpuinfo")
	if err != nil {
		return nil, err
	}
	v, err := parseCPUModelName(s)
	if err != nil {
		return nil, h.noData("cpu model name", err)
	}
	return v, nil
}

func (h *hostService) cpuCount() (any, error) {
	s, err := h.read("/proc/cpuinfo")
	if err == nil {
		if n, perr := parseCPUCount(s); perr == nil {
			return n, nil
		}
	}
	online, oerr := h.read("/sys/devices/system/cpu/online")
	if oerr != nil {
		if err != nil {
			return nil, err
		}
		return nil, h.noData("cpu count", errNoData)
	}
	n, perr := parseCPUList(online)
	if perr != nil {
		return nil, h.noData("cpu count", perr)
	}
	return n, nil
}

func (h *hostService) memTotal() (any, error) {
	s, err := h.read("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	n, err := parseMemTotal(s)
	if err != nil {
		return nil, h.noData("memory total", err)
	}
	return n, nil
}

func (h *hostService) kernelRelease() (any, error) {
	s, err := h.read("/proc/sys/kernel/osrelease")
	if err != nil {
		return nil, err
	}
	v := strings.TrimSpace(s)
	if v == "" {
		return nil, h.noData("kernel release", errNoData)
	}
	return v, nil
}

func (h *hostService) hasKVM() (any, error) {
	fi, err := os.Stat(h.path("/dev/kvm"))
	if err != nil {
		return false, nil
	}
	// A regular file in a fixture tree stands for the device node.
	return fi.Mode()&fs.ModeCharDevice != 0 || fi.Mode().IsRegular(), nil
}

func (h *hostService) arch() (any, error) {
	m, err := h.machine()
	if err != nil {
		return nil, xmlrpc.Faultf("OSError", "uname: %v", err)
	}
	return m, nil
}

func (h *hostService) hostnameFact() (any, error) {
	n, err := h.hostname()
	if err != nil {
		return nil, xmlrpc.Faultf("OSError", "gethostname: %v", err)
	}
	return n, nil
}

// ---- pure parsers ----

// upstream's regex, so nodes report the same ids to selectors: ARM and
// s390x cpuinfo have no such line (or "IBM/S390", which \w+ rejects).
var vendorRE = regexp.MustCompile(`(?m)^vendor_id\s+:\s+(\w+)$`)

// parseCPUVendorID finds "vendor_id : GenuineIntel" as upstream's
// virttest.vt_utils.cpu does.
func parseCPUVendorID(cpuinfo string) (string, error) {
	m := vendorRE.FindStringSubmatch(cpuinfo)
	if m == nil {
		return "", errNoData
	}
	return m[1], nil
}

// cpuinfoFields returns the key/value pairs of cpuinfo in order.
func cpuinfoFields(cpuinfo string) [][2]string {
	var out [][2]string
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out
}

func firstField(fields [][2]string, key string) (string, bool) {
	for _, f := range fields {
		if f[0] == key && f[1] != "" {
			return f[1], true
		}
	}
	return "", false
}

// armParts names the ARM Ltd (implementer 0x41) cores lscpu would name;
// other parts are reported by their number, as lscpu does.
var armParts = map[string]string{
	"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
	"0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
	"0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
	"0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
	"0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710",
	"0xd48": "Cortex-X2", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
	"0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd8e": "Neoverse-N3",
}

// parseCPUModelName gives what lscpu prints as "Model name": cpuinfo's
// "model name" (x86, s390x has none), else the old ARM "Processor" line,
// POWER's "cpu" line, or the ARM part number.
func parseCPUModelName(cpuinfo string) (string, error) {
	f := cpuinfoFields(cpuinfo)
	if v, ok := firstField(f, "model name"); ok {
		return v, nil
	}
	if v, ok := firstField(f, "Processor"); ok {
		return v, nil
	}
	if v, ok := firstField(f, "cpu"); ok {
		// "POWER9 (raw), altivec supported" → lscpu says "POWER9 (raw)".
		name, _, _ := strings.Cut(v, ",")
		return strings.TrimSpace(name), nil
	}
	if part, ok := firstField(f, "CPU part"); ok {
		part = strings.ToLower(part)
		if impl, _ := firstField(f, "CPU implementer"); strings.EqualFold(impl, "0x41") {
			if name, ok := armParts[part]; ok {
				return name, nil
			}
		}
		return part, nil
	}
	return "", errNoData
}

// parseCPUCount counts the "processor" entries of cpuinfo ("processor : 3"
// on most arches, "processor 3: version = …" on s390x).
func parseCPUCount(cpuinfo string) (int, error) {
	n := 0
	for _, f := range cpuinfoFields(cpuinfo) {
		k := f[0]
		if k == "processor" {
			n++
			continue
		}
		if rest, ok := strings.CutPrefix(k, "processor "); ok {
			if _, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				n++
			}
		}
	}
	if n == 0 {
		return 0, errNoData
	}
	return n, nil
}

// parseCPUList counts the CPUs of a kernel cpu list such as "0-3,8,10-11".
func parseCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errNoData
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("bad cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("bad cpu list %q: %w", s, err)
			}
		}
		if b < a {
			return 0, fmt.Errorf("bad cpu list %q: range %d-%d is reversed", s, a, b)
		}
		n += b - a + 1
	}
	return n, nil
}

// parseMemTotal returns MemTotal from meminfo in bytes.
func parseMemTotal(meminfo string) (int, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("meminfo: MemTotal has no value")
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("meminfo: MemTotal %q is not a count", fields[0])
		}
		mult := int64(1)
		if len(fields) > 1 {
			switch strings.ToLower(fields[1]) {
			case "kb":
				mult = 1024
			case "mb":
				mult = 1024 * 1024
			default:
				return 0, fmt.Errorf("meminfo: MemTotal unit %q unknown", fields[1])
			}
		}
		return int(n * mult), nil
	}
	return 0, errNoData
}
