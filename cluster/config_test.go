package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Golden files are rewritten with go test ./cluster -run TestLoadConfig -update
// (the -update flag, updateGolden, is shared by the package's golden tests).

const configTestdata = "../testdata/cluster"

// TestLoadConfig_golden loads every testdata/cluster/<case>.json and
// compares the outcome with <case>.err (error text) or <case>.out (a JSON
// dump of the loaded config).
func TestLoadConfig_golden(t *testing.T) {
	t.Setenv("HOME", "/home/tester") // "~/" expansion must not depend on who runs the test
	absDir, err := filepath.Abs(configTestdata)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := filepath.Glob(filepath.Join(configTestdata, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var good, bad int
	for _, in := range cases {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			cfg, err := LoadConfig(in)
			var got []byte
			ext := ".out"
			if err != nil {
				ext = ".err"
				bad++
				got = []byte(strings.ReplaceAll(err.Error(), configTestdata+"/", "") + "\n")
			} else {
				good++
				got = dumpConfig(t, cfg, absDir)
			}
			golden := strings.TrimSuffix(in, ".json") + ext
			other := strings.TrimSuffix(in, ".json") + map[string]string{".err": ".out", ".out": ".err"}[ext]
			if *updateGolden {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				os.Remove(other)
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("no %s (run with -update to create it); got:\n%s", golden, got)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (run with -update to accept):\n--- got\n%s--- want\n%s", golden, got, want)
			}
			if _, err := os.Stat(other); err == nil {
				t.Errorf("stale %s: the case now produces %s", other, ext)
			}
		})
	}
	if !*updateGolden && (bad < 12 || good < 4) {
		t.Errorf("want at least 12 bad and 4 good cases, have %d bad and %d good", bad, good)
	}
}

// dumpConfig renders a config with machine-specific paths replaced, and
// with passwords shown only as present or not.
func dumpConfig(tb testing.TB, cfg *Config, absDir string) []byte {
	tb.Helper()
	var withPassword []string
	for _, h := range cfg.Hosts {
		if h.Password != "" {
			withPassword = append(withPassword, h.Name)
		}
	}
	out, err := json.MarshalIndent(struct {
		*Config
		WithPassword []string `json:"hosts_with_password,omitempty"`
	}{cfg, withPassword}, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	s := strings.ReplaceAll(string(out), absDir, "$CONFIG_DIR")
	s = strings.ReplaceAll(s, configTestdata+"/", "")
	return []byte(s + "\n")
}

func TestLoadConfig_upstreamDefaults(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configTestdata, "upstream.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("an upstream file should load without warnings, got %q", cfg.Warnings)
	}
	var names []string
	for _, h := range cfg.Hosts {
		names = append(names, h.Name)
	}
	if !slices.Equal(names, []string{"host1", "host2"}) {
		t.Errorf("hosts = %v, want file order [host1 host2]", names)
	}
	h2, ok := cfg.Host("host2")
	if !ok {
		t.Fatal("host2 missing")
	}
	want := DefaultHostConfig("host2")
	want.Hostname, want.Password, want.ProxyPort, want.ShellPort = "host2.example.com", "upstream-example-pw", 8000, 2222
	if h2.Name != want.Name || h2.Host() != want.Hostname || h2.Username != "root" || h2.ShellPort != 2222 ||
		h2.ProxyPort != 8000 || h2.AgentBaseDir != DefaultAgentBaseDir || h2.AgentBind != AgentBindTunnel || h2.Password != want.Password {
		t.Errorf("host2 = %+v, want %+v", *h2, want)
	}
	var pools map[string]map[string]map[string]any
	if err := json.Unmarshal(cfg.Pools, &pools); err != nil {
		t.Fatalf("pools is not the raw object: %v", err)
	}
	if pools["storage"]["nfs_pool"]["server"] != "nfs.example.com" {
		t.Errorf("pools lost content: %s", cfg.Pools)
	}
}

func TestLoadConfig_errorIsTyped(t *testing.T) {
	path := filepath.Join(configTestdata, "bad_port_string.json")
	_, err := LoadConfig(path)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *ConfigError", err)
	}
	if ce.File != path || ce.Path != "hosts.node1.shell_port" || ce.Line != 3 || ce.Column != 53 {
		t.Errorf("got File=%q Path=%q at %d:%d", ce.File, ce.Path, ce.Line, ce.Column)
	}
	want := path + `:3:53: hosts.node1.shell_port: expected a port number (1-65535) as integer or string, got "abc"`
	if ce.Error() != want {
		t.Errorf("message\n got %s\nwant %s", ce.Error(), want)
	}
}

func TestLoadConfig_collectsAllErrors(t *testing.T) {
	_, err := LoadConfig(filepath.Join(configTestdata, "bad_port_values.json"))
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not a joined error", err)
	}
	var paths []string
	for _, e := range joined.Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *ConfigError", e)
		}
		paths = append(paths, ce.Path)
	}
	want := []string{
		"hosts.a.shell_port", "hosts.a.proxy_port", "hosts.b.shell_port", "hosts.b.proxy_port",
		"hosts.c.shell_port", "hosts.c.proxy_port", "hosts.d.shell_port", "hosts.d.proxy_port",
		"hosts.e.shell_port", "hosts.e.proxy_port",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("error paths\n got %v\nwant %v", paths, want)
	}
}

func TestLoadConfig_missingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.json"))
	var ce *ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a *ConfigError wrapping fs.ErrNotExist", err)
	}
}

func TestLoadConfig_tooDeep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deep.json")
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	if err := os.WriteFile(path, []byte(`{"hosts": {}, "pools": {"g": {"p": {"x": `+deep+`}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Fatalf("got %v, want a nesting error", err)
	}
}

func TestLoadConfig_relativePathsFollowConfigDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "cluster.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	body := `{"hosts": {"n": {"address": "10.0.0.1", "key_file": "k/id", "known_hosts": "../kh", "token_file": "/abs/t"}}}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // the working directory must not matter
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Hosts[0]
	if h.KeyFile != filepath.Join(dir, "sub", "k", "id") || h.KnownHosts != filepath.Join(dir, "kh") || h.TokenFile != "/abs/t" {
		t.Errorf("got key_file=%q known_hosts=%q token_file=%q", h.KeyFile, h.KnownHosts, h.TokenFile)
	}
	if string(cfg.Pools) != "{}" {
		t.Errorf("missing pools should read as {}, got %s", cfg.Pools)
	}
}

func TestHostConfig_Node_dropsPassword(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join(configTestdata, "upstream.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Hosts[0].Node()
	data, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "upstream-example-pw") {
		t.Errorf("node record carries the password: %s", data)
	}
	cdata, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cdata), "upstream-example-pw") {
		t.Errorf("marshalled config carries the password: %s", cdata)
	}
	if n.Host() != "192.168.122.10" || n.User != "root" || n.AgentDir() != "/var/run/vt_agent_server/host1" {
		t.Errorf("node = %+v", n)
	}
}

func TestValidateHost_fieldsAndReservedLabels(t *testing.T) {
	h := DefaultHostConfig("n1")
	h.Address = "10.0.0.1"
	if errs := ValidateHost(h); errs != nil {
		t.Fatalf("defaults refused: %v", errs)
	}
	h.Hostname, h.ProxyPort, h.KeyFile = "-x", 0, "rel/key"
	h.Labels = map[string]any{"rack": "b", "kernel": "6.1"}
	var got []string
	for _, e := range ValidateHost(h) {
		got = append(got, e.Field)
	}
	want := []string{"hostname", "proxy_port", "key_file", "labels.kernel"}
	if !slices.Equal(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	// Every collected property is reserved, memory_gb (derived) included.
	for _, k := range PropertyKeys() {
		h := DefaultHostConfig("n1")
		h.Address, h.Labels = "10.0.0.1", map[string]any{k: 1}
		if errs := ValidateHost(h); len(errs) != 1 || errs[0].Field != "labels."+k {
			t.Errorf("label %q: %v", k, errs)
		}
	}
}
