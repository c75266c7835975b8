package runner

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRunnableFromArgs_decoding(t *testing.T) {
	uri := "spec.json"
	r, err := runnableFromArgs(commandArgs{
		Kind: "multihost", URI: &uri,
		Config:  `{"run.keep_tmp": true, "core.show": {"__encoded_set__": ["app"]}, "fake.option": null}`,
		Args:    []string{"base64:LWM=", "plain", "-1"},
		KeyVals: []string{"test=t1", "n=json:3", "flag=json:true", "lst=json:[1, \"a\"]", "tags=json:{\"fast\": null}", "output_dir=/r/1", "raw=json", "eq=a=b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Args, []string{"-c", "plain", "-1"}) {
		t.Errorf("args = %q", r.Args)
	}
	wantKw := map[string]any{"test": "t1", "n": int64(3), "flag": true, "lst": []any{int64(1), "a"}, "raw": "json", "eq": "a=b"}
	if !reflect.DeepEqual(r.Kwargs, wantKw) {
		t.Errorf("kwargs = %#v", r.Kwargs)
	}
	if r.OutputDir != "/r/1" || !reflect.DeepEqual(r.Tags, map[string]any{"fast": nil}) {
		t.Errorf("reserved: %q %#v", r.OutputDir, r.Tags)
	}
	if !reflect.DeepEqual(r.Config["core.show"], []any{"app"}) || r.Config["run.keep_tmp"] != true {
		t.Errorf("config = %#v", r.Config)
	}
	if f, n := r.TestName(); f != "spec.json" || n != "t1" {
		t.Errorf("TestName = %q %q", f, n)
	}
}

func TestRunnableFromArgs_errors(t *testing.T) {
	for _, a := range []commandArgs{
		{Config: "{}", Args: []string{"base64:!!"}},
		{Config: "{"},
		{Config: "[]"},
		{Config: "{}", KeyVals: []string{"x=json:{bad"}},
		{Config: "{}", KeyVals: []string{"output_dir=json:3"}},
		{Config: "{}", KeyVals: []string{"config=x"}},
	} {
		_, err := runnableFromArgs(a)
		var re *runtimeError
		if !errors.As(err, &re) || !strings.HasPrefix(err.Error(), "runner: ") {
			t.Errorf("%+v: got %v, want a *RuntimeError", a, err)
		}
	}
}

func TestRunnable_TestName_uriWithName(t *testing.T) {
	r := runnable{URI: "/nonexistent/spec.json:migrate"}
	if f, n := r.TestName(); f != "/nonexistent/spec.json" || n != "migrate" {
		t.Errorf("got %q %q", f, n)
	}
}

func TestLoadRunnableRecipe(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	r, err := loadRunnableRecipe(write("ok.json", `{"kind": "multihost", "uri": "s.json", "args": ["a"], "kwargs": {"test": "t", "output_dir": "/o"}, "config": {"run.keep_tmp": false}, "identifier": "s.json:t"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != "multihost" || r.URI != "s.json" || r.Kwargs["test"] != "t" || r.OutputDir != "/o" || r.Identifier != "s.json:t" || r.Config["run.keep_tmp"] != false {
		t.Errorf("got %+v", r)
	}
	for body, want := range map[string]string{
		`{"uri": "x"}`:                       `missing required key "kind"`,
		`{"kind": "multihost", "tags": {}}`:  "tags: unknown key",
		`{"kind": "multihost", "args": [1]}`: "args[0]: expected a string, got a number",
		`{"kind": 1}`:                        "kind: expected a string",
		`{"kind": "x"`:                       "unexpected end of file",
	} {
		_, err := loadRunnableRecipe(write("bad.json", body))
		if err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", body, err, want)
		}
	}
}

func TestLoadTaskRecipe(t *testing.T) {
	p := filepath.Join(t.TempDir(), "task.json")
	os.WriteFile(p, []byte(`{"id": 2, "job_id": "J", "runnable": {"kind": "multihost", "uri": "s.json:t", "kwargs": {"ignored": 1}}, "status_uris": ["127.0.0.1:9"], "category": "test", "other": 1}`), 0o644)
	task, err := loadTaskRecipe(p)
	if err != nil {
		t.Fatal(err)
	}
	if task.ID != int64(2) || *task.JobID != "J" || task.Runnable.URI != "s.json:t" || len(task.Runnable.Kwargs) != 0 ||
		!reflect.DeepEqual(task.StatusURIs, []string{"127.0.0.1:9"}) {
		t.Errorf("got %+v", task)
	}
}

func TestRunConfigFromSettings(t *testing.T) {
	c, err := runConfigFromSettings(map[string]any{
		"multihost.state_dir": "/s", "multihost.cluster": "lab", "multihost.alloc_timeout": int64(30),
		"multihost.lease": "90.5", "multihost.binary": nil, "run.keep_tmp": true, "runner.identifier_format": "{uri}",
		"multihost.node_lost_after": int64(30),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/s" || c.Cluster != "lab" || c.AllocTimeout != 30*time.Second || c.Lease != 90500*time.Millisecond || !c.KeepTmp || c.Binary != "" || c.NodeLostAfter != 30*time.Second {
		t.Errorf("got %+v", c)
	}
	if d := defaultRunConfig(); d.AllocTimeout <= 0 {
		t.Errorf("default alloc timeout %v", d.AllocTimeout)
	}
	for _, bad := range []map[string]any{
		{"multihost.alloc_timeout": "soon"}, {"multihost.alloc_timeout": int64(0)}, {"multihost.lease": -1.0},
		{"multihost.cluster": int64(1)}, {"run.keep_tmp": "yes"}, {"multihost.node_lost_after": int64(0)},
	} {
		if _, err := runConfigFromSettings(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
