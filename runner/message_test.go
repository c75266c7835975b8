package runner

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vtcluster/vtcluster/agent/py"
)

func TestEncodeLine_bytesAndOrder(t *testing.T) {
	m := outputMessage("stdout", []byte("hello\n")).With("time", 845.667312717).With("id", "1-x")
	line, err := encodeLine(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type": "stdout", "log": {"__base64_encoded__": "aGVsbG8K"}, "status": "running", "time": 845.667312717, "id": "1-x"}` + "\n"
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
}

func TestEncodeLine_emptyBytes(t *testing.T) {
	line, err := encodeLine(outputMessage("stderr", nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(line), `"log": {"__base64_encoded__": ""}`) {
		t.Errorf("empty bytes not encoded as an empty base64 object: %s", line)
	}
}

func TestEncodeLine_asciiEscapes(t *testing.T) {
	m := message{{Key: "fail_reason", Value: "é \"q\" \x01 \U0001F600 \xff"}}
	line, err := encodeLine(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range line {
		if c >= 0x80 {
			t.Fatalf("non-ASCII byte in %q", line)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatalf("line is not JSON: %v: %s", err, line)
	}
	if got, want := back["fail_reason"], "é \"q\" \x01 \U0001F600 \uFFFD"; got != want {
		t.Errorf("round trip = %q, want %q", got, want)
	}
}

func TestEncodeLine_rejectsNaN(t *testing.T) {
	nan := 0.0
	nan /= nan
	if _, err := encodeLine(message{{Key: "time", Value: nan}}); err == nil {
		t.Fatal("NaN encoded without error")
	}
}

func TestEncodeLine_decodesLikeAvocado(t *testing.T) {
	data := []byte{0, 1, 2, 0xff, '\n'}
	line, err := encodeLine(outputMessage("stdout", data))
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Log struct {
			B64 string `json:"__base64_encoded__"`
		} `json:"log"`
	}
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	got, err := base64.StdEncoding.DecodeString(back.Log.B64)
	if err != nil || string(got) != string(data) {
		t.Errorf("decoded %q (%v), want %q", got, err, data)
	}
}

func TestLogMessage_nameImpliesEncodingAndLevel(t *testing.T) {
	m := logMessage("avocado.service.process", "", "hello")
	want := `{'log_name': 'avocado.service.process', 'log_level': 20, 'log_levelname': 'INFO', 'type': 'log', 'log': b'hello', 'encoding': 'utf-8', 'status': 'running'}`
	if got := py.Repr(m); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	plain := py.Repr(logMessage("", "", "x"))
	if strings.Contains(plain, "log_name") || !strings.Contains(plain, "'encoding': 'utf-8'") {
		t.Errorf("plain log message = %s", plain)
	}
}

func TestFinishedMessage_optionalKeys(t *testing.T) {
	rc := 3
	if got, want := py.Repr(finishedMessage(resultFail, "why", &rc)), `{'result': 'fail', 'fail_reason': 'why', 'returncode': 3, 'status': 'finished'}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := py.Repr(finishedMessage(resultPass, "", nil)), `{'result': 'pass', 'status': 'finished'}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestMonotonic_positiveAndNonDecreasing(t *testing.T) {
	a := monotonic()
	b := monotonic()
	if a <= 0 || b < a {
		t.Fatalf("Monotonic() gave %v then %v", a, b)
	}
}

func TestMessage_With_doesNotAlias(t *testing.T) {
	base := make(message, 1, 4)
	base[0] = field{Key: "status", Value: "running"}
	a := base.With("id", "a")
	b := base.With("id", "b")
	if v, _ := a.Get("id"); v != "a" {
		t.Errorf("a.id = %v, want a (aliased with b)", v)
	}
	if v, _ := b.Get("id"); v != "b" {
		t.Errorf("b.id = %v", v)
	}
}

// The line Avocado's helpers print for a message with every kind of value
// (nrunner-protocol §2.6).
func TestMessage_repr(t *testing.T) {
	m := message{
		{Key: "log", Value: []byte("quote' and \"dq\" \x00\xff\t")},
		{Key: "s", Value: "it's"},
		{Key: "f", Value: 1e-05},
		{Key: "g", Value: 12345678901234.5},
		{Key: "n", Value: nil},
		{Key: "b", Value: true},
	}
	want := `{'log': b'quote\' and "dq" \x00\xff\t', 's': "it's", 'f': 1e-05, 'g': 12345678901234.5, 'n': None, 'b': True}`
	if got := py.Repr(m); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
