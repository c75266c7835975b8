package resmgr

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"20G": 20 << 30, "20g": 20 << 30, "512M": 512 << 20, "1T": 1 << 40, "100K": 100 << 10,
		"1048576": 1 << 20, "4096B": 4096, "1.5G": 3 << 29, "2GiB": 2 << 30, "16T": 16 << 40,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1G", "17T", "1.3B", "20X", "1M; reboot", "99999999999999999999", "1e9", " G"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestPoolConfigShapes: the configs keep upstream's key order, so their
// JSON is what upstream's controller shows.
func TestPoolConfigShapes(t *testing.T) {
	nodes := []string{"node1", "node2"}
	for name, tc := range map[string]struct{ params, want string }{
		"filesystem": {`{"type": "filesystem", "path": "/srv/x", "access": {"nodes": ["node1"]}}`,
			`{"meta":{"name":"p","uuid":"U","type":"filesystem","access":{"nodes":["node1"]}},"spec":{"path":"/srv/x"}}`},
		"filesystem all nodes": {`{"type": "filesystem"}`,
			`{"meta":{"name":"p","uuid":"U","type":"filesystem","access":{"nodes":["node1","node2"]}},"spec":{"path":""}}`},
		"nfs": {`{"type": "nfs", "server": "192.0.2.5", "export": "/exports/vt", "mount_options": {"*": "rw"}}`,
			`{"meta":{"name":"p","uuid":"U","type":"nfs","access":{"nodes":["node1","node2"]}},"spec":{"server":"192.0.2.5","export":"/exports/vt","mount-options":{"*":"rw"},"mount":{}}}`},
		"linux_bridge": {`{"type": "linux_bridge", "switch": {"node1": {"ifname": "br0"}}, "export": {"node1": {"ifname": "eth1"}}}`,
			`{"meta":{"name":"p","uuid":"U","type":"linux_bridge","access":{"nodes":["node1","node2"]}},"spec":{"switch":{"node1":{"ifname":"br0"}},"export":{"node1":{"ifname":"eth1"}}}}`},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := poolFromParams("p", gjson.Parse(tc.params), nodes)
			if err != nil {
				t.Fatal(err)
			}
			c.Meta.UUID = "U"
			got, _ := json.Marshal(c)
			if string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestResourceConfigShapes(t *testing.T) {
	empty := ""
	p := &Pool{Config: PoolConfig{Meta: PoolMeta{UUID: "P", Type: PoolFilesystem}, Spec: PoolSpec{Path: &empty}}}
	c, err := defineResource("img", TypeVolume, p, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	c.Meta.UUID = "U"
	got, _ := json.Marshal(c)
	// upstream's defaults: 20G, image.qcow2.
	if want := `{"meta":{"uuid":"U","name":"img","type":"volume","pool":"P","allocated":false,"volume-type":"file"},"spec":{"size":"21474836480","allocation":null,"filename":"image.qcow2","uri":{}}}`; string(got) != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	c, err = defineResource("img", TypeVolume, p, map[string]string{"image_name": "/var/lib/images/base.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Filename != "base.qcow2" || c.Spec.URI["*"] != "/var/lib/images/base.qcow2" {
		t.Errorf("absolute image_name: %+v", c.Spec)
	}
	for _, params := range []map[string]string{
		{"image_size": "100T"}, {"image_name": "a b"}, {"image_name": "../x"}, {"image_name": "/a/../b"},
		{"image_format": "vmdk"}, {"image_name": "$(reboot)"},
	} {
		if _, err := defineResource("img", TypeVolume, p, params); err == nil {
			t.Errorf("%v accepted", params)
		}
	}
}

func TestValidatePools(t *testing.T) {
	hosts := []string{"node1", "node2"}
	if err := ValidatePools([]byte(`{}`), hosts); err != nil {
		t.Errorf("empty pools: %v", err)
	}
	if err := ValidatePools(nil, hosts); err != nil {
		t.Errorf("no pools: %v", err)
	}
	err := ValidatePools([]byte(`{"g": {"a": {"type": "zfs"}, "b": {"type": "filesystem", "access": {"nodes": ["node9"]}},
		"c": {"type": "nfs", "server": "x;reboot", "export": "/e"}, "d": {"type": "filesystem", "path": "../../etc"}}}`), hosts)
	var upt *UnknownPoolTypeError
	if !errors.As(err, &upt) || upt.Error() != "Unknown pool type zfs" {
		t.Errorf("unknown type: %v", err)
	}
	for _, want := range []string{`b.access.nodes: "node9" is not a host`, `c: server "x;reboot"`, `d: path:`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if err := ValidatePools([]byte(`{"g": []}`), hosts); err == nil || !strings.Contains(err.Error(), "pools: g: expected an object") {
		t.Errorf("bad group: %v", err)
	}
}

func TestSelectPool_upstreamParams(t *testing.T) {
	r := &record{}
	for _, p := range []string{
		`{"type": "nfs", "server": "s", "export": "/e", "access": {"nodes": ["node1", "node2"]}}`,
		`{"type": "filesystem", "access": {"nodes": ["node1"]}}`,
		`{"type": "linux_bridge", "switch": {"node1": {"ifname": "br0"}}}`,
	} {
		c, err := poolFromParams("p"+string(rune('0'+len(r.Pools))), gjson.Parse(p), []string{"node1", "node2"})
		if err != nil {
			t.Fatal(err)
		}
		r.Pools = append(r.Pools, &Pool{Config: c})
	}
	pick := func(typ string, params map[string]string, need ...string) string {
		sels, err := poolSelectors(typ, params)
		if err != nil {
			return err.Error()
		}
		p, err := selectPool(r, typ, sels, need...)
		if err != nil {
			return err.Error()
		}
		return p.Config.Meta.Name
	}
	for _, tc := range []struct {
		typ    string
		params map[string]string
		need   []string
		want   string
	}{
		{TypeVolume, nil, nil, "p0"}, // first in config order
		{TypeVolume, map[string]string{"storage_type": "filesystem"}, nil, "p1"},
		{TypeVolume, map[string]string{"volume_pool_selectors": `[{"key": "nodes", "operator": "contains", "values": "node2"}]`}, nil, "p0"},
		{TypeVolume, map[string]string{"volume_pool_selectors": "[{'key': 'type', 'operator': '==', 'values': 'filesystem'}]"}, []string{"node2"}, "Cannot find available pools for a volume with selectors [type == filesystem] reachable from node2; pools considered: p0 (nfs): does not match the selectors; p1 (filesystem): not reachable from node2; p2 (linux_bridge): holds no volume"},
		{TypePort, nil, nil, "p2"},
		{TypePort, map[string]string{"network_type": "ovs"}, nil, "Cannot find available pools for a port with selectors [type == ovs]; pools considered: p0 (nfs): holds no port; p1 (filesystem): holds no port; p2 (linux_bridge): does not match the selectors"},
		{"gpu", nil, nil, `unknown resource type "gpu" (known: volume, port)`},
	} {
		if got := pick(tc.typ, tc.params, tc.need...); got != tc.want {
			t.Errorf("select %s %v %v = %s, want %s", tc.typ, tc.params, tc.need, got, tc.want)
		}
	}
}

func TestRequestPath(t *testing.T) {
	v := map[string]any{"spec": map[string]any{"size": "1048576", "a*b": 1}, "meta": map[string]any{"name": "x"}}
	for req, want := range map[string]string{"spec.size": `{"size": "1048576"}`, "meta": `{"meta": {"name":"x"}}`, "spec.a*b": `{"a*b": 1}`} {
		if got, err := requestPath(v, req, "Cannot find the requested options "); err != nil || string(got) != want {
			t.Errorf("%s = %s, %v; want %s", req, got, err, want)
		}
	}
	for _, req := range []string{"spec.nope", "spec.#", "spec.size|@reverse", "spec.*"} {
		if _, err := requestPath(v, req, "Cannot find the requested options "); err == nil || !strings.Contains(err.Error(), "Cannot find the requested options "+req) {
			t.Errorf("%s: %v", req, err)
		}
	}
}
