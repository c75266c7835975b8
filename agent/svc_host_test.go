package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

func hostFixture(name string) string { return filepath.Join("..", "testdata", "host", name) }

func callHost(tb testing.TB, svc Service, method string) (any, error) {
	tb.Helper()
	m, ok := svc.Methods()[method]
	if !ok {
		tb.Fatalf("host has no method %q", method)
	}
	return m(context.Background(), nil)
}

// TestHostService_fixtures reads each testdata/host/<case> tree as a root.
// A string starting with "!" is the exception type the call must raise.
func TestHostService_fixtures(t *testing.T) {
	cases := map[string]map[string]any{
		"x86_intel": {
			"cpu.get_cpu_vendor_id":       "GenuineIntel",
			"cpu.get_cpu_model_name":      "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
			"cpu.get_cpu_count":           2,
			"memory.get_mem_total":        16314788 * 1024, // above int32: travels as <i8>
			"platform.get_kernel_release": "5.14.0-427.13.1.el9_4.x86_64",
			"platform.has_kvm":            true,
		},
		"aarch64_neoverse": {
			"cpu.get_cpu_vendor_id":       "!OSError", // as upstream: ARM has no vendor_id line
			"cpu.get_cpu_model_name":      "Neoverse-N1",
			"cpu.get_cpu_count":           4,
			"memory.get_mem_total":        65536000 * 1024,
			"platform.get_kernel_release": "6.1.0-18-arm64",
			"platform.has_kvm":            false,
		},
		"ppc64le_power9": {
			"cpu.get_cpu_vendor_id":  "!OSError",
			"cpu.get_cpu_model_name": "POWER9 (raw)",
			"cpu.get_cpu_count":      8,
			"platform.has_kvm":       true,
		},
		"s390x": {
			"cpu.get_cpu_vendor_id":  "!OSError", // "IBM/S390" does not match upstream's \w+
			"cpu.get_cpu_model_name": "!OSError",
			"cpu.get_cpu_count":      2,
			"memory.get_mem_total":   4026728 * 1024,
		},
		"online_only": {
			"cpu.get_cpu_vendor_id":  "AuthenticAMD",
			"cpu.get_cpu_model_name": "AMD EPYC 7763 64-Core Processor",
			"cpu.get_cpu_count":      5,
			"memory.get_mem_total":   1024 * 1024,
		},
		"missing": {
			"cpu.get_cpu_vendor_id":       "!FileNotFoundError",
			"cpu.get_cpu_model_name":      "!FileNotFoundError",
			"cpu.get_cpu_count":           "!FileNotFoundError",
			"memory.get_mem_total":        "!FileNotFoundError",
			"platform.get_kernel_release": "!FileNotFoundError",
			"platform.has_kvm":            false,
		},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			svc, err := NewHostService(hostFixture(name), nil)
			if err != nil {
				t.Fatal(err)
			}
			for method, w := range want {
				got, err := callHost(t, svc, method)
				if exc, ok := w.(string); ok && strings.HasPrefix(exc, "!") {
					var f *xmlrpc.Fault
					if !errors.As(err, &f) || f.ExcType != exc[1:] {
						t.Errorf("%s = %v, %v; want a %s fault", method, got, err, exc[1:])
					}
					continue
				}
				if err != nil || got != w {
					t.Errorf("%s = %#v, %v; want %#v", method, got, err, w)
				}
			}
			// Encodable as the wire carries it, big sizes included.
			if v, err := callHost(t, svc, "memory.get_mem_total"); err == nil {
				if _, err := xmlrpc.EncodeResponse(v); err != nil {
					t.Errorf("mem total %v does not encode: %v", v, err)
				}
			}
		})
	}
}

// TestHostService_thisMachine checks the facts of the machine the tests
// run on against the system's own tools.
func TestHostService_thisMachine(t *testing.T) {
	svc, err := NewHostService("/", nil)
	if err != nil {
		t.Fatal(err)
	}
	tool := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Skipf("%s not usable here: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got, _ := callHost(t, svc, "platform.get_arch"); got != tool("uname", "-m") {
		t.Errorf("get_arch = %v, uname -m says %s", got, tool("uname", "-m"))
	}
	if got, _ := callHost(t, svc, "platform.get_kernel_release"); got != tool("uname", "-r") {
		t.Errorf("get_kernel_release = %v, uname -r says %s", got, tool("uname", "-r"))
	}
	host, _ := os.Hostname()
	if got, _ := callHost(t, svc, "platform.get_hostname"); got != host {
		t.Errorf("get_hostname = %v, want %s", got, host)
	}
	if n, err := callHost(t, svc, "cpu.get_cpu_count"); err != nil || n.(int) < 1 {
		t.Errorf("get_cpu_count = %v, %v", n, err)
	}
	if n, err := callHost(t, svc, "memory.get_mem_total"); err != nil || n.(int) < 1<<20 {
		t.Errorf("get_mem_total = %v, %v", n, err)
	}
	_, statErr := os.Stat("/dev/kvm")
	if got, _ := callHost(t, svc, "platform.has_kvm"); got != (statErr == nil) {
		t.Errorf("has_kvm = %v, /dev/kvm stat error %v", got, statErr)
	}
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "Model name:"); ok {
				if got, _ := callHost(t, svc, "cpu.get_cpu_model_name"); got != strings.TrimSpace(v) {
					t.Errorf("get_cpu_model_name = %v, lscpu says %q", got, strings.TrimSpace(v))
				}
				break
			}
		}
	}
}

func TestHostService_argsRefused(t *testing.T) {
	svc, err := NewHostService(hostFixture("x86_intel"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Methods()["cpu.get_cpu_count"](context.Background(), Args{1})
	wantExc(t, err, "TypeError")
}

func TestNewHostService_badRoot(t *testing.T) {
	if _, err := NewHostService(filepath.Join(t.TempDir(), "nope"), nil); err == nil {
		t.Error("missing root accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := NewHostService(f, nil); err == nil {
		t.Error("file as root accepted")
	}
}

func TestParseCPUVendorID(t *testing.T) {
	for in, want := range map[string]string{
		"processor\t: 0\nvendor_id\t: GenuineIntel\n": "GenuineIntel",
		"vendor_id : AuthenticAMD":                    "AuthenticAMD",
		"vendor_id\t: HygonGenuine\nvendor_id\t: X\n": "HygonGenuine",
		"vendor_id : IBM/S390\n":                      "",
		"vendor_id :\n":                               "",
		" vendor_id : Indented\n":                     "",
		"":                                            "",
	} {
		got, err := parseCPUVendorID(in)
		if want == "" {
			if !errors.Is(err, errNoData) {
				t.Errorf("parseCPUVendorID(%q) = %q, %v; want errNoData", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseCPUVendorID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseCPUModelName(t *testing.T) {
	for in, want := range map[string]string{
		"model name\t: AMD EPYC\n":                                       "AMD EPYC",
		"model name\t:   spaced out  \n":                                 "spaced out",
		"Processor\t: ARMv7 Processor rev 10 (v7l)\nCPU part\t: 0xc09\n": "ARMv7 Processor rev 10 (v7l)",
		"cpu\t\t: POWER10 (architected), altivec supported\n":            "POWER10 (architected)",
		"CPU implementer\t: 0x41\nCPU part\t: 0xD08\n":                   "Cortex-A72",
		"CPU implementer\t: 0x41\nCPU part\t: 0xfff\n":                   "0xfff",
		"CPU implementer\t: 0x51\nCPU part\t: 0xd0c\n":                   "0xd0c",
		"model name\t:\nCPU implementer : 0x41\nCPU part : 0xd4f\n":      "Neoverse-V2",
		"processor 0: version = FF\n":                                    "",
		"":                                                               "",
	} {
		got, err := parseCPUModelName(in)
		if want == "" {
			if !errors.Is(err, errNoData) {
				t.Errorf("parseCPUModelName(%q) = %q, %v; want errNoData", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseCPUModelName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseCPUCount(t *testing.T) {
	for in, want := range map[string]int{
		"processor\t: 0\n\nprocessor\t: 1\n":                2,
		"processor 0: version = FF\nprocessor 1: version\n": 2,
		"# processors    : 2\nprocessor 0: x\n":             1,
		"Processor\t: ARMv7\nprocessor\t: 0\n":              1,
		"processor junk: 3\n":                               0,
		"":                                                  0,
	} {
		got, err := parseCPUCount(in)
		if want == 0 {
			if !errors.Is(err, errNoData) {
				t.Errorf("parseCPUCount(%q) = %d, %v; want errNoData", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseCPUCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-3": 4, "0-3,6\n": 5, "0,2,4-5": 4, "": -1, "a": -1, "3-1": -1, "0-": -1} {
		got, err := parseCPUList(in)
		if want < 0 {
			if err == nil {
				t.Errorf("parseCPUList(%q) = %d, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	for in, want := range map[string]int{
		"MemTotal:       24684084 kB\nMemFree: 1 kB\n": 24684084 * 1024,
		"MemFree: 1 kB\nMemTotal: 3 kB\n":              3 * 1024,
		"MemTotal: 1048576\n":                          1048576,
		"MemTotal: 2 MB\n":                             2 << 20,
	} {
		if got, err := parseMemTotal(in); err != nil || got != want {
			t.Errorf("parseMemTotal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseMemTotal("MemFree: 1 kB\n"); !errors.Is(err, errNoData) {
		t.Errorf("no MemTotal: %v, want errNoData", err)
	}
	for _, bad := range []string{"MemTotal:\n", "MemTotal: x kB\n", "MemTotal: 1 GB\n", "MemTotal: -1 kB\n"} {
		if _, err := parseMemTotal(bad); err == nil || errors.Is(err, errNoData) {
			t.Errorf("parseMemTotal(%q) = %v, want a parse error", bad, err)
		}
	}
}

func TestExamplesService_ping(t *testing.T) {
	svc, err := NewExamplesService(nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	got, err := svc.Methods()["hello.ping"](context.Background(), nil)
	if err != nil || got != "Pong from "+host {
		t.Fatalf("ping = %v, %v; want Pong from %s", got, err, host)
	}
}
