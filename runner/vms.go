package runner

// A test's "vms" section: QEMU guests on the test's nodes, their disks
// from the test's volume resources and their NICs from its tap ports.
//
//	"vms": [{
//	  "name": "vm1", "on": "src", "migrate_to": "dst",
//	  "memory_mib": 256, "vcpus": 1, "machine": "q35", "accel": "auto",
//	  "kernel": "../build/guest/current/vmlinux",      // relative: to the spec's dir
//	  "initrd": "../build/guest/current/initramfs.cpio.gz",
//	  "cmdline": "console=ttyS0 vmip={vm1.cidr}",      // placeholders as in steps
//	  "address": {"from": "src", "host": 200},         // or "10.0.0.5/24"
//	  "disks": [{"resource": "disk", "format": "qcow2"}],
//	  "nics": [{"port": "net", "mac": "52:54:00:12:34:56"}]   // mac: optional
//	}]
//
// upstream's tp-qemu names work in "params": "vms": "vm1" (the VMs, which
// then need no "vms" section when they only boot from disks... they do
// need one for their devices), "vm_node_vm1": "src" (= on),
// "mig_dest_node_vm1": "dst" (= migrate_to).
//
// A VM starts on "on" before the steps; the steps "wait_console", "qmp"
// and "migrate" act on it (vmsteps.go); every VM of the test is stopped
// before its resources are released (vmstage.go).

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vtcluster/vtcluster/agent/py"
	"github.com/vtcluster/vtcluster/agent/vm"
)

// VMSpec is one VM a test declares.
type VMSpec struct {
	Name string
	// On is the tag the VM starts on; MigrateTo the default destination
	// of a migrate step ("" : the step must name one).
	On, MigrateTo string
	MemoryMiB     int
	VCPUs         int
	Machine       string
	Accel         string
	// Kernel and Initrd are absolute (resolved against the spec's dir);
	// Cmdline may hold placeholders.
	Kernel, Initrd, Cmdline string
	// Address is the guest's IPv4 address with prefix ("" : none); the
	// placeholders {NAME.address} and {NAME.cidr} give it.
	Address string
	// AddressFrom/AddressHost derive Address from a node's /24 address.
	AddressFrom string
	AddressHost int
	Disks       []VMDisk
	NICs        []VMNIC
}

// VMDisk is a disk: a volume resource of the test, or a fixed path.
type VMDisk struct {
	Resource, Path, Format, Cache string
}

// VMNIC is a NIC on a port resource of the test (one tap per node).
type VMNIC struct {
	Port, MAC string
}

var macRE = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)

// isVMParam tells the tp-qemu VM parameters params accepts.
func isVMParam(k string) bool {
	return k == "vms" || strings.HasPrefix(k, "vm_node_") || strings.HasPrefix(k, "mig_dest_node_")
}

// vms reads the "vms" section and the tp-qemu VM parameters.
func (l *specLoader) vms(v *jsonValue, p string, params *jsonValue, pp string, t *Test, dir string) []VMSpec {
	var out []VMSpec
	var paths []string // each VM's place in the file
	byName := map[string]int{}
	if v != nil {
		if v.Kind != py.JSONArray {
			l.errorf(p, "expected a list of VM objects, got %s", v.Describe())
			return nil
		}
		for i, e := range v.Elems {
			at := jsonPath(p, i)
			vs, ok := l.vm(e, at, t, dir)
			if !ok {
				continue
			}
			if _, dup := byName[vs.Name]; dup {
				l.errorf(jsonPath(at, "name"), "VM %q declared twice", vs.Name)
				continue
			}
			byName[vs.Name] = len(out)
			out = append(out, vs)
			paths = append(paths, at)
		}
	}
	if params != nil && params.Kind == py.JSONObject {
		for _, m := range params.Members {
			at := jsonPath(pp, m.Key)
			if !isVMParam(m.Key) {
				continue
			}
			if m.Value.Kind != py.JSONString {
				l.errorf(at, "expected a string, got %s", m.Value.Describe())
				continue
			}
			switch {
			case m.Key == "vms":
				for _, name := range strings.Fields(m.Value.Str) {
					if _, ok := byName[name]; !ok {
						l.errorf(at, "VM %q has no entry in \"vms\" (its devices and boot files are declared there)", name)
					}
				}
			default:
				key, name, _ := strings.Cut(m.Key, "_node_")
				i, ok := byName[name]
				if !ok {
					l.errorf(at, "no VM %q in \"vms\"", name)
					continue
				}
				if !t.hasTag(m.Value.Str) {
					l.errorf(at, "unknown node tag %q (%s)", m.Value.Str, t.nodeList())
					continue
				}
				if key == "vm" {
					out[i].On = m.Value.Str
				} else {
					out[i].MigrateTo = m.Value.Str
				}
			}
		}
	}
	for i, vs := range out {
		if vs.On == "" {
			l.errorf(paths[i], "VM %q has no node: give \"on\" (or params vm_node_%s)", vs.Name, vs.Name)
		}
	}
	return out
}

var vmKeys = "name, on, migrate_to, memory_mib, vcpus, machine, accel, kernel, initrd, cmdline, address, disks, nics"

func (l *specLoader) vm(v *jsonValue, at string, t *Test, dir string) (VMSpec, bool) {
	nerr := len(l.errs)
	var s VMSpec
	tagOf := func(x *jsonValue, p string) string {
		tag := l.str(x, p)
		if x.Kind == py.JSONString && !t.hasTag(tag) {
			l.errorf(p, "unknown node tag %q (%s)", tag, t.nodeList())
		}
		return tag
	}
	path := func(x *jsonValue, p string) string {
		s := l.str(x, p)
		if s == "" || strings.IndexByte(s, 0) >= 0 {
			l.errorf(p, "expected a file path")
			return ""
		}
		if !filepath.IsAbs(s) {
			s = filepath.Join(dir, s)
		}
		return s
	}
	isObject := l.object(v, at, "a VM object", fields{
		"name": func(x *jsonValue, p string) {
			s.Name = l.str(x, p)
			if x.Kind == py.JSONString && !resourceNameRE.MatchString(s.Name) {
				l.errorf(p, "must be 1-64 letters, digits or '_' (it is a placeholder name)")
			}
			if t.hasTag(s.Name) {
				l.errorf(p, "VM name %q is also a node tag; placeholders {%s.…} would be ambiguous", s.Name, s.Name)
			}
		},
		"on":         set(&s.On, tagOf),
		"migrate_to": set(&s.MigrateTo, tagOf),
		"memory_mib": func(x *jsonValue, p string) { s.MemoryMiB = l.intIn(x, p, 16, 1<<20) },
		"vcpus":      func(x *jsonValue, p string) { s.VCPUs = l.intIn(x, p, 1, 256) },
		"machine":    set(&s.Machine, l.str),
		"accel": func(x *jsonValue, p string) {
			s.Accel = l.str(x, p)
			if x.Kind == py.JSONString && s.Accel != "auto" && s.Accel != "kvm" && s.Accel != "tcg" {
				l.errorf(p, "expected auto, kvm or tcg, got %q", s.Accel)
			}
		},
		"kernel":  set(&s.Kernel, path),
		"initrd":  set(&s.Initrd, path),
		"cmdline": set(&s.Cmdline, l.str),
		"address": func(x *jsonValue, p string) { l.vmAddress(x, p, t, &s) },
		"disks": func(x *jsonValue, p string) {
			l.eachObject(x, p, func(e *jsonValue, ep string) {
				var d VMDisk
				l.object(e, ep, "an object", fields{
					"resource": set(&d.Resource, l.str),
					"path":     set(&d.Path, path),
					"format":   set(&d.Format, l.str),
					"cache":    set(&d.Cache, l.str),
				}, l.atValue("allowed: resource, path, format, cache"))
				if (d.Resource == "") == (d.Path == "") {
					l.errorf(ep, "give exactly one of \"resource\" (a volume of the test) and \"path\"")
				}
				if d.Resource != "" && !t.hasResource(d.Resource, "volume") {
					l.errorf(ep, "the test declares no volume resource %q", d.Resource)
				}
				s.Disks = append(s.Disks, d)
			})
		},
		"nics": func(x *jsonValue, p string) {
			l.eachObject(x, p, func(e *jsonValue, ep string) {
				var n VMNIC
				l.object(e, ep, "an object", fields{
					"port": set(&n.Port, l.str),
					"mac": func(x *jsonValue, np string) {
						n.MAC = l.str(x, np)
						if x.Kind == py.JSONString && !macRE.MatchString(n.MAC) {
							l.errorf(np, "expected a MAC address xx:xx:xx:xx:xx:xx, got %q", n.MAC)
						}
					},
				}, l.atValue("allowed: port, mac"))
				if !t.hasResource(n.Port, "port") {
					l.errorf(ep, "the test declares no port resource %q", n.Port)
				}
				s.NICs = append(s.NICs, n)
			})
		},
	}, l.atValue("allowed: "+vmKeys))
	if !isObject {
		return s, false
	}
	if v.Get("name") == nil {
		l.errorf(at, "missing required key \"name\"")
	}
	if s.Kernel == "" && len(s.Disks) == 0 {
		l.errorf(at, "nothing to boot: give a \"kernel\" or at least one disk")
	}
	if _, err := parsePlaceholders(s.Cmdline, func(tag string) bool { return t.hasTag(tag) || tag == s.Name }); err != nil {
		l.errorf(jsonPath(at, "cmdline"), "%v", err)
	}
	return s, len(l.errs) == nerr
}

func (l *specLoader) vmAddress(v *jsonValue, p string, t *Test, s *VMSpec) {
	switch v.Kind {
	case py.JSONString:
		pfx, err := netip.ParsePrefix(v.Str)
		if err != nil || !pfx.Addr().Is4() {
			l.errorf(p, "expected an IPv4 address with prefix (10.0.0.5/24), got %q", v.Str)
			return
		}
		s.Address = v.Str
	case py.JSONObject:
		l.object(v, p, "an object", fields{
			"from": func(x *jsonValue, mp string) {
				s.AddressFrom = l.str(x, mp)
				if !t.hasTag(s.AddressFrom) {
					l.errorf(mp, "unknown node tag %q (%s)", s.AddressFrom, t.nodeList())
				}
			},
			"host": func(x *jsonValue, mp string) { s.AddressHost = l.intIn(x, mp, 1, 254) },
		}, l.atValue("allowed: from, host"))
		if s.AddressFrom == "" || s.AddressHost == 0 {
			l.errorf(p, "give both \"from\" (a node tag) and \"host\" (1-254: the last number of the guest's address in that node's /24)")
		}
	default:
		l.errorf(p, "expected \"A.B.C.D/N\" or {\"from\": TAG, \"host\": N}, got %s", v.Describe())
	}
}

func (l *specLoader) intIn(v *jsonValue, p string, lo, hi int) int {
	if v.Kind != py.JSONNumber {
		l.errorf(p, "expected an integer, got %s", v.Describe())
		return 0
	}
	n, err := strconv.Atoi(v.Num.String())
	if err != nil || n < lo || n > hi {
		l.errorf(p, "expected an integer within %d..%d, got %s", lo, hi, v.Num)
		return 0
	}
	return n
}

func (l *specLoader) eachObject(v *jsonValue, p string, fn func(*jsonValue, string)) {
	if v.Kind != py.JSONArray {
		l.errorf(p, "expected a list of objects, got %s", v.Describe())
		return
	}
	for i, e := range v.Elems {
		ep := jsonPath(p, i)
		if e.Kind != py.JSONObject {
			l.errorf(ep, "expected an object, got %s", e.Describe())
			continue
		}
		fn(e, ep)
	}
}

func (t *Test) hasResource(name, typ string) bool {
	for _, r := range t.Resources {
		if r.Name == name && r.Type == typ {
			return true
		}
	}
	return false
}

func (t *Test) vmSpec(name string) (*VMSpec, bool) {
	for i := range t.VMs {
		if t.VMs[i].Name == name {
			return &t.VMs[i], true
		}
	}
	return nil, false
}

// guestAddress is the VM's address with prefix, "" when it has none.
func (s *VMSpec) guestAddress(p *Partition) (string, error) {
	if s.Address != "" || s.AddressFrom == "" {
		return s.Address, nil
	}
	n, _ := p.Node(s.AddressFrom)
	a, err := netip.ParseAddr(n.Address)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("vm %s: address from %s: node address %q is not IPv4", s.Name, s.AddressFrom, n.Address)
	}
	b := a.As4()
	b[3] = byte(s.AddressHost)
	return netip.AddrFrom4(b).String() + "/24", nil
}

// nicMAC is the address of the VM's nics[i]: the spec's "mac", else the
// one the resource manager chose for the port's tap on the node the VM
// starts on. A VM keeps it wherever it migrates, so the source and the
// destination of a migration always agree, and two VMs never share one
// (each port's tap has its own).
func (s *VMSpec) nicMAC(p *Partition, i int) (string, error) {
	n := s.NICs[i]
	if n.MAC != "" {
		return n.MAC, nil
	}
	home, _ := p.Node(s.On)
	if mac := home.MACs[n.Port]; mac != "" {
		return mac, nil
	}
	return "", fmt.Errorf("vm %s: nics[%d]: port %q has no MAC from the resource manager on %s (add the tag to the resource's \"on\", or give \"mac\")", s.Name, i, n.Port, s.On)
}

// resolve is the agent's vm.Spec for the VM on tag: the volume paths and
// the tap names that node sees, the cmdline with its placeholders filled.
func (s *VMSpec) resolve(p *Partition, tag string) (vm.Spec, error) {
	node, ok := p.Node(tag)
	if !ok {
		return vm.Spec{}, fmt.Errorf("vm %s: the partition has no node %q", s.Name, tag)
	}
	out := vm.Spec{Name: s.Name, Owner: p.ID, MemoryMiB: s.MemoryMiB, VCPUs: s.VCPUs, Machine: s.Machine,
		Accel: s.Accel, Kernel: s.Kernel, Initrd: s.Initrd}
	addr, err := s.guestAddress(p)
	if err != nil {
		return vm.Spec{}, err
	}
	cmd, err := expandVMText(s.Cmdline, p, map[string]string{s.Name: addr})
	if err != nil {
		return vm.Spec{}, err
	}
	out.Cmdline = cmd
	for i, d := range s.Disks {
		path := d.Path
		if d.Resource != "" {
			if path, ok = node.Resources[d.Resource]; !ok {
				return vm.Spec{}, fmt.Errorf("vm %s: disks[%d]: volume %q is not bound to %s (add it to the resource's \"on\")", s.Name, i, d.Resource, tag)
			}
		}
		format := d.Format
		if format == "" {
			format = "raw"
			if strings.HasSuffix(path, ".qcow2") {
				format = "qcow2"
			}
		}
		out.Disks = append(out.Disks, vm.Disk{Path: path, Format: format, Cache: d.Cache})
	}
	for i, n := range s.NICs {
		ifname, ok := node.Resources[n.Port]
		if !ok {
			return vm.Spec{}, fmt.Errorf("vm %s: nics[%d]: port %q has no tap on %s (add the tag to the resource's \"on\")", s.Name, i, n.Port, tag)
		}
		mac, err := s.nicMAC(p, i)
		if err != nil {
			return vm.Spec{}, err
		}
		out.NICs = append(out.NICs, vm.NIC{Ifname: ifname, MAC: mac})
	}
	return out, nil
}

// vmPlaceholders are {VM.address} and {VM.cidr} for the VMs in cidrs
// (name -> address with prefix, "" for a VM without one).
func vmPlaceholders(cidrs map[string]string) *extraNames {
	return &extraNames{
		has: func(name string) bool { _, ok := cidrs[name]; return ok },
		value: func(name, field string) (string, error) {
			return vmField(name, cidrs[name], field)
		},
	}
}

// expandVMText fills the placeholders of a VM's cmdline: node facts as in
// steps, and the VMs' addresses (vmPlaceholders).
func expandVMText(s string, p *Partition, cidrs map[string]string) (string, error) {
	out, err := expandArgvWith([]string{s}, p, vmPlaceholders(cidrs))
	if err != nil {
		return "", err
	}
	return out[0], nil
}

// vmNames are the test's VMs as placeholder names in steps.
func (r *testRun) vmNames(p *Partition) (*extraNames, error) {
	cidrs := map[string]string{}
	for i := range r.test.VMs {
		s := &r.test.VMs[i]
		a, err := s.guestAddress(p)
		if err != nil {
			return nil, err
		}
		cidrs[s.Name] = a
	}
	return vmPlaceholders(cidrs), nil
}

// placeholderName tells the names a step's placeholders may use: node
// tags, the test's VMs ({VM.address}) and "sync" ({sync.KEY}: a message's
// value) unless a node is tagged sync (expandStepArgv resolves them).
func (t *Test) placeholderName(name string) bool {
	_, isVM := t.vmSpec(name)
	return isVM || t.hasTag(name) || name == syncPlaceholder
}

func vmField(name, cidr, field string) (string, error) {
	if cidr == "" {
		return "", fmt.Errorf("runner: placeholder {%s.%s}: VM %s has no \"address\"", name, field, name)
	}
	switch field {
	case "cidr":
		return cidr, nil
	case "address":
		a, _, _ := strings.Cut(cidr, "/")
		return a, nil
	}
	return "", fmt.Errorf("runner: placeholder {%s.%s}: a VM has the fields address and cidr", name, field)
}

// dir is the spec file's absolute directory, against which VM boot files
// are resolved.
func (l *specLoader) dir() string {
	abs, err := filepath.Abs(l.file)
	if err != nil {
		return filepath.Dir(l.file)
	}
	return filepath.Dir(abs)
}
