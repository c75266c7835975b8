package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtcluster/vtcluster/agent/xmlrpc"
)

// fakeAgent is an in-memory Caller: a method table, for testing how
// replies map to properties. The real agent is tested in agent/.
type fakeAgent struct {
	methods map[string]any // value, or error to return
	mu      sync.Mutex
	calls   []string
}

func (f *fakeAgent) Call(ctx context.Context, method string, args ...any) (any, error) {
	f.mu.Lock()
	f.calls = append(f.calls, method)
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, ok := f.methods[method]
	if !ok {
		return nil, xmlrpc.UnsupportedMethodFault(method)
	}
	if err, ok := v.(error); ok {
		return nil, err
	}
	return v, nil
}

// upstreamMethods is what avocado-vt's Python agent answers.
func upstreamMethods() map[string]any {
	return map[string]any{
		"host.platform.get_hostname":  "host1.example.com",
		"host.cpu.get_cpu_vendor_id":  "AuthenticAMD",
		"host.cpu.get_cpu_model_name": "AMD EPYC 7763 64-Core Processor",
		"host.platform.get_arch":      "x86_64",
	}
}

func allMethods() map[string]any {
	m := upstreamMethods()
	m["host.cpu.get_cpu_count"] = 128            // the codec decodes ints as Go int
	m["host.memory.get_mem_total"] = 16777216000 // 15.625 GiB
	m["host.platform.get_kernel_release"] = "5.14.0-427.el9.x86_64"
	m["host.platform.has_kvm"] = true
	return m
}

func TestCollectProperties_fakeAgent_allMethods(t *testing.T) {
	props, err := CollectProperties(context.Background(), &fakeAgent{methods: allMethods()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"hostname": "host1.example.com", "cpu_vendor_id": "AuthenticAMD",
		"cpu_model_name": "AMD EPYC 7763 64-Core Processor", "arch": "x86_64",
		"cpu_count": int64(128), "mem_total": int64(16777216000), "memory_gb": 15.6,
		"kernel": "5.14.0-427.el9.x86_64", "kvm": true,
	}
	if !reflect.DeepEqual(props, want) {
		t.Errorf("props = %#v\nwant %#v", props, want)
	}
	keys := PropertyKeys()
	if len(keys) != len(want) {
		t.Errorf("PropertyKeys() = %v, but a full agent gives %d properties", keys, len(want))
	}
	for _, k := range keys {
		if _, ok := want[k]; !ok {
			t.Errorf("PropertyKeys() has %q, which is never collected", k)
		}
	}
}

func TestCollectProperties_fakeAgent_upstreamAgentLacksOurMethods(t *testing.T) {
	methods := upstreamMethods()
	// One missing method reported the way a non-XML-RPC Caller might.
	methods["host.platform.has_kvm"] = unsupportedErr{}
	props, err := CollectProperties(context.Background(), &fakeAgent{methods: methods})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"hostname": "host1.example.com", "cpu_vendor_id": "AuthenticAMD",
		"cpu_model_name": "AMD EPYC 7763 64-Core Processor", "arch": "x86_64",
	}
	if !reflect.DeepEqual(props, want) {
		t.Errorf("props = %#v\nwant %#v", props, want)
	}
}

type unsupportedErr struct{}

func (unsupportedErr) Error() string     { return "no such method" }
func (unsupportedErr) Unsupported() bool { return true }

func TestCollectProperties_fakeAgent_errors(t *testing.T) {
	methods := allMethods()
	delete(methods, "host.platform.get_arch") // upstream agents have it: required
	methods["host.cpu.get_cpu_count"] = "8"
	methods["host.platform.has_kvm"] = &xmlrpc.Fault{ExcType: "PermissionError", ExcValue: "/dev/kvm: denied"}
	methods["host.memory.get_mem_total"] = 1.5
	_, err := CollectProperties(context.Background(), &fakeAgent{methods: methods})
	if err == nil {
		t.Fatal("CollectProperties succeeded with broken replies")
	}
	for _, want := range []string{
		`cluster: host.platform.get_arch: Exception: method "host.platform.get_arch" is not supported`,
		`cluster: host.cpu.get_cpu_count returned str '8', want a non-negative integer (for property "cpu_count")`,
		`cluster: host.memory.get_mem_total returned float 1.5, want a non-negative integer (for property "mem_total")`,
		`cluster: host.platform.has_kvm: PermissionError: /dev/kvm: denied`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var f *xmlrpc.Fault
	if !errors.As(err, &f) {
		t.Error("the joined error must still let callers find the agent's fault")
	}
	methods = upstreamMethods()
	methods["host.platform.get_hostname"] = 5
	_, err = CollectProperties(context.Background(), &fakeAgent{methods: methods})
	if want := `cluster: host.platform.get_hostname returned int 5, want a string (for property "hostname")`; err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}

func TestCollectProperties_fakeAgent_canceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := CollectProperties(ctx, &fakeAgent{methods: allMethods()})
	if !errors.Is(err, context.Canceled) || err.Error() != "cluster: collecting node properties: context canceled" {
		t.Errorf("error = %v", err)
	}
}

// barrierAgent answers only once every property call is in flight, so it
// proves the calls run concurrently: sequential calls would wait for the
// context's deadline (a hang guard, not a timing assertion).
type barrierAgent struct {
	mu      sync.Mutex
	waiting int
	all     chan struct{}
}

func (b *barrierAgent) Call(ctx context.Context, method string, args ...any) (any, error) {
	b.mu.Lock()
	b.waiting++
	if b.waiting == len(properties) {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s waited alone: calls are not concurrent", method)
	}
	return allMethods()[method], nil
}

func TestCollectProperties_fakeAgent_callsConcurrently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := CollectProperties(ctx, &barrierAgent{all: make(chan struct{})}); err != nil {
		t.Fatal(err)
	}
}

// TestCollectProperties_upstreamLikeAgentOverHTTP goes through the real
// client, transport and XML-RPC codec against a server that, like
// avocado-vt's Python agent, has only the upstream methods and answers the
// rest with its "is not supported" fault.
func TestCollectProperties_upstreamLikeAgentOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		method, _, err := xmlrpc.DecodeCall(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var reply []byte
		if v, ok := upstreamMethods()[method]; ok {
			reply, err = xmlrpc.EncodeResponse(v)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		} else {
			reply = xmlrpc.EncodeFaultResponse(1, xmlrpc.UnsupportedMethodFault(method).FaultString(method))
		}
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write(reply)
	}))
	defer srv.Close()
	host, portText, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	tr := NewDirectTransport(host, port)
	defer tr.Close()
	c := NewClient("n1", tr, "")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	props, err := CollectProperties(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(props, map[string]any(upstreamMethodsAsProps())) {
		t.Errorf("props = %#v", props)
	}
	// Through the same wire, a real failure is still an error.
	_, err = c.Call(ctx, "host.cpu.get_cpu_count")
	if !unsupportedMethod(err) {
		t.Errorf("the unsupported fault over HTTP was not recognised: %v", err)
	}
	if unsupportedMethod(&CallError{Node: "n1", Method: "m", Err: errors.New("connection refused")}) {
		t.Error("a transport error must not count as an unsupported method")
	}
}

func upstreamMethodsAsProps() map[string]any {
	return map[string]any{
		"hostname": "host1.example.com", "cpu_vendor_id": "AuthenticAMD",
		"cpu_model_name": "AMD EPYC 7763 64-Core Processor", "arch": "x86_64",
	}
}

func TestMergeLabels_collisionsAndTypes(t *testing.T) {
	props := upstreamMethodsAsProps()
	got, err := MergeLabels(props, map[string]any{"rack": "r1", "gpus": 2, "sriov": true, "weight": 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if got["rack"] != "r1" || got["gpus"] != int64(2) || got["sriov"] != true || got["weight"] != 0.5 || got["hostname"] != "host1.example.com" {
		t.Errorf("merged = %#v", got)
	}
	if _, ok := props["rack"]; ok {
		t.Error("MergeLabels modified its input")
	}
	cases := []struct {
		labels map[string]any
		want   string
	}{
		{map[string]any{"arch": "x86_64"}, `cluster: label "arch" collides with the collected node property of that name`},
		// kvm is not in props (upstream agent) but is still reserved.
		{map[string]any{"kvm": true}, `cluster: label "kvm" collides with the collected node property of that name`},
		{map[string]any{"memory_gb": 32}, `cluster: label "memory_gb" collides with the collected node property of that name`},
		{map[string]any{"": "x"}, `cluster: a label has an empty name`},
		{map[string]any{"zones": []any{"a"}}, `cluster: label "zones": value must be a string, number or bool, got list`},
		{map[string]any{"cpu_count": 1, "x": nil}, "cluster: label \"cpu_count\" collides with the collected node property of that name\ncluster: label \"x\": value must be a string, number or bool, got NoneType"},
	}
	for _, c := range cases {
		_, err := MergeLabels(props, c.labels)
		if err == nil || err.Error() != c.want {
			t.Errorf("MergeLabels(%v) error:\n got  %v\n want %s", c.labels, err, c.want)
		}
	}
}

// countingCaller tracks how many nodes are being collected at once.
type countingCaller struct {
	fakeAgent
	active, peak *int
	mu           *sync.Mutex
}

func (c *countingCaller) Call(ctx context.Context, method string, args ...any) (any, error) {
	if method == properties[0].method {
		c.mu.Lock()
		*c.active++
		*c.peak = max(*c.peak, *c.active)
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			*c.active--
			c.mu.Unlock()
		}()
	}
	return c.fakeAgent.Call(ctx, method, args...)
}

func TestCollectAll_fakeAgents(t *testing.T) {
	var mu sync.Mutex
	for _, parallelism := range []int{0, 1, 2} {
		active, peak := 0, 0
		broken := upstreamMethods()
		broken["host.platform.get_hostname"] = errors.New("boom")
		callers := map[string]Caller{
			"n1":   &countingCaller{fakeAgent: fakeAgent{methods: allMethods()}, active: &active, peak: &peak, mu: &mu},
			"n2":   &countingCaller{fakeAgent: fakeAgent{methods: upstreamMethods()}, active: &active, peak: &peak, mu: &mu},
			"n3":   &countingCaller{fakeAgent: fakeAgent{methods: broken}, active: &active, peak: &peak, mu: &mu},
			"none": nil,
		}
		props, errs := CollectAll(context.Background(), callers, parallelism)
		if len(props) != 2 || props["n1"]["kvm"] != true || props["n2"]["arch"] != "x86_64" {
			t.Errorf("parallelism %d: props = %v", parallelism, props)
		}
		if len(errs) != 2 || errs["n3"] == nil || errs["n3"].Error() != "cluster: host.platform.get_hostname: boom" ||
			errs["none"] == nil || errs["none"].Error() != `cluster: node "none": no agent client` {
			t.Errorf("parallelism %d: errs = %v", parallelism, errs)
		}
		limit := parallelism
		if limit < 1 {
			limit = DefaultCollectParallelism
		}
		if peak > limit {
			t.Errorf("parallelism %d: %d nodes were collected at once", parallelism, peak)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	props, errs := CollectAll(ctx, map[string]Caller{"n1": &fakeAgent{methods: allMethods()}}, 1)
	if len(props) != 0 || !errors.Is(errs["n1"], context.Canceled) {
		t.Errorf("canceled: props %v, errs %v", props, errs)
	}
}
