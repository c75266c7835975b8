package vm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Spec describes one guest. It travels as JSON (vm.start's argument) and
// becomes a QEMU argv in argv(); no field ever reaches a shell, and every
// field that QEMU would parse as an option list is either validated to
// hold no separator or passed in QEMU's JSON syntax.
type Spec struct {
	Name string `json:"name"`
	// Owner is the partition the VM belongs to (the hand-over stops VMs
	// of other owners).
	Owner string `json:"owner,omitempty"`
	// Arch selects qemu-system-<arch>; default x86_64.
	Arch      string `json:"arch,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"` // default 256
	VCPUs     int    `json:"vcpus,omitempty"`      // default 1
	// Machine is QEMU's machine type. Both ends of a migration must use
	// the same one; default q35.
	Machine string `json:"machine,omitempty"`
	// Accel is auto (KVM when /dev/kvm is usable and the CPU has vmx or
	// svm, else TCG), kvm or tcg; default auto.
	Accel string `json:"accel,omitempty"`
	// Kernel, Initrd and Cmdline boot a kernel directly; without Kernel
	// the VM boots from its first disk.
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	Disks   []Disk `json:"disks,omitempty"`
	NICs    []NIC  `json:"nics,omitempty"`
	// Incoming makes this VM a migration destination listening on it,
	// e.g. "tcp:0.0.0.0:0" (port 0: QEMU picks one; Started.Incoming
	// says which).
	Incoming string `json:"incoming,omitempty"`
}

// Disk is a volume given to the guest as a virtio-blk device.
type Disk struct {
	Path   string `json:"path"`
	Format string `json:"format,omitempty"` // qcow2 or raw; default raw
	// Cache is none (O_DIRECT, the default) or writeback.
	Cache string `json:"cache,omitempty"`
}

// NIC is a tap port given to the guest as a virtio-net device.
type NIC struct {
	Ifname string `json:"ifname"`
	MAC    string `json:"mac"`
}

// maxSpec bounds vm.start's JSON argument.
const maxSpec = 64 << 10

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	machineRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	ifnameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	macRE      = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	incomingRE = regexp.MustCompile(`^(tcp:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}|defer)$`)
)

// packages names the Debian package of each qemu-system-<arch>.
var packages = map[string]string{
	"x86_64":  "qemu-system-x86",
	"i386":    "qemu-system-x86",
	"aarch64": "qemu-system-arm",
	"ppc64":   "qemu-system-ppc",
	"s390x":   "qemu-system-s390x",
}

// ParseSpec decodes and validates vm.start's JSON argument, filling
// defaults. Unknown fields are refused, so a typo never goes unnoticed.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	if len(data) > maxSpec {
		return s, fmt.Errorf("spec is %d bytes, more than %d", len(data), maxSpec)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("spec: %w", err)
	}
	return s, s.normalize()
}

func (s *Spec) normalize() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("spec: name %q must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", s.Name)
	}
	if len(s.Owner) > 256 || strings.IndexByte(s.Owner, 0) >= 0 {
		return fmt.Errorf("spec: owner must be at most 256 bytes without NUL")
	}
	if s.Arch == "" {
		s.Arch = "x86_64"
	}
	if _, ok := packages[s.Arch]; !ok {
		return fmt.Errorf("spec: arch %q is not one of x86_64, i386, aarch64, ppc64, s390x", s.Arch)
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 256
	}
	if s.MemoryMiB < 16 || s.MemoryMiB > 1<<20 {
		return fmt.Errorf("spec: memory_mib must be within 16..1048576, got %d", s.MemoryMiB)
	}
	if s.VCPUs == 0 {
		s.VCPUs = 1
	}
	if s.VCPUs < 1 || s.VCPUs > 256 {
		return fmt.Errorf("spec: vcpus must be within 1..256, got %d", s.VCPUs)
	}
	if s.Machine == "" {
		s.Machine = "q35"
	}
	if !machineRE.MatchString(s.Machine) {
		return fmt.Errorf("spec: machine %q is not a machine type name", s.Machine)
	}
	switch s.Accel {
	case "":
		s.Accel = "auto"
	case "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("spec: accel must be auto, kvm or tcg, got %q", s.Accel)
	}
	for _, p := range []struct{ what, path string }{{"kernel", s.Kernel}, {"initrd", s.Initrd}} {
		if p.path != "" && !filepath.IsAbs(p.path) {
			return fmt.Errorf("spec: %s must be an absolute path, got %q", p.what, p.path)
		}
	}
	if s.Kernel == "" && (s.Initrd != "" || s.Cmdline != "") {
		return fmt.Errorf("spec: initrd and cmdline need a kernel")
	}
	if s.Kernel == "" && len(s.Disks) == 0 {
		return fmt.Errorf("spec: nothing to boot: give a kernel or at least one disk")
	}
	if len(s.Disks) > 16 || len(s.NICs) > 16 {
		return fmt.Errorf("spec: at most 16 disks and 16 nics")
	}
	for i := range s.Disks {
		d := &s.Disks[i]
		if !filepath.IsAbs(d.Path) {
			return fmt.Errorf("spec: disks[%d].path must be an absolute path, got %q", i, d.Path)
		}
		if d.Format == "" {
			d.Format = "raw"
		}
		if d.Format != "raw" && d.Format != "qcow2" {
			return fmt.Errorf("spec: disks[%d].format must be raw or qcow2, got %q", i, d.Format)
		}
		if d.Cache == "" {
			d.Cache = "none"
		}
		if d.Cache != "none" && d.Cache != "writeback" {
			return fmt.Errorf("spec: disks[%d].cache must be none or writeback, got %q", i, d.Cache)
		}
	}
	for i, n := range s.NICs {
		if !ifnameRE.MatchString(n.Ifname) {
			return fmt.Errorf("spec: nics[%d].ifname %q is not an interface name", i, n.Ifname)
		}
		if !macRE.MatchString(n.MAC) {
			return fmt.Errorf("spec: nics[%d].mac %q is not a MAC address (xx:xx:xx:xx:xx:xx)", i, n.MAC)
		}
	}
	if s.Incoming != "" && !incomingRE.MatchString(s.Incoming) {
		return fmt.Errorf("spec: incoming %q must be tcp:HOST:PORT or defer", s.Incoming)
	}
	return nil
}

// Binary is the QEMU program for the spec's architecture.
func (s *Spec) Binary() string { return "qemu-system-" + s.Arch }

// Package is the Debian package that provides Binary.
func (s *Spec) Package() string { return packages[s.Arch] }

// files are where a VM's QEMU puts its sockets and logs.
type files struct {
	dir, qmp, console string
}

func filesIn(dir string) files {
	return files{dir: dir, qmp: filepath.Join(dir, "qmp.sock"), console: filepath.Join(dir, "console.log")}
}

// relFiles are the same names relative to the VM's directory, QEMU's
// working directory.
var relFiles = files{dir: ".", qmp: "qmp.sock", console: "console.log"}

// argv is the QEMU command line. Devices get fixed ids and PCI slots in
// the order of the spec, so the source and the destination of a
// migration, built from the same spec, have the same device layout.
func (s *Spec) argv(binary, accel string, f files) []string {
	a := []string{binary,
		"-name", s.Name,
		"-accel", accel,
		"-machine", s.Machine,
		"-m", strconv.Itoa(s.MemoryMiB),
		"-smp", strconv.Itoa(s.VCPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		// QMP on the VM's Unix socket in its 0700 directory, never TCP.
		"-chardev", "socket,id=qmp,path=" + f.qmp + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "file,id=con0,path=" + f.console,
		"-serial", "chardev:con0",
	}
	if s.Kernel != "" {
		a = append(a, "-kernel", s.Kernel)
		if s.Initrd != "" {
			a = append(a, "-initrd", s.Initrd)
		}
		if s.Cmdline != "" {
			a = append(a, "-append", s.Cmdline)
		}
	}
	for i, d := range s.Disks {
		// -blockdev in JSON: a path with commas cannot turn into options.
		bd, _ := json.Marshal(map[string]any{
			"driver": d.Format, "node-name": fmt.Sprintf("disk%d", i),
			"cache": map[string]any{"direct": d.Cache == "none"},
			"file": map[string]any{"driver": "file", "filename": d.Path, "aio": "threads",
				"cache": map[string]any{"direct": d.Cache == "none"}},
		})
		dev := fmt.Sprintf("virtio-blk-pci,drive=disk%d,id=vd%d", i, i)
		if i == 0 && s.Kernel == "" {
			dev += ",bootindex=0"
		}
		a = append(a, "-blockdev", string(bd), "-device", dev)
	}
	for i, n := range s.NICs {
		a = append(a,
			"-netdev", fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", i, n.Ifname),
			// romfile= skips the iPXE option ROM, which a direct boot does
			// not need.
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d,mac=%s,id=nic%d,romfile=", i, strings.ToLower(n.MAC), i))
	}
	if s.Incoming != "" {
		a = append(a, "-incoming", s.Incoming)
	}
	return a
}

// chooseAccel resolves auto: KVM only when /dev/kvm opens read-write and
// the CPU flags show vmx or svm. A /dev/kvm without them (this CI's PVM
// module, docs/vms.md) cannot run a stock guest.
func chooseAccel(want string) string {
	if want != "auto" {
		return want
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	cpu, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "tcg"
	}
	for _, line := range strings.Split(string(cpu), "\n") {
		if strings.HasPrefix(line, "flags") {
			for _, fl := range strings.Fields(line) {
				if fl == "vmx" || fl == "svm" {
					return "kvm"
				}
			}
			return "tcg"
		}
	}
	return "tcg"
}
